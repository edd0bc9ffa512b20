"""MobileNetV3-Small with real weights through the CLI: float TFLite matches Keras float, int8
is all-integer, correctly calibrated and within 4 points of float; Google's QAT uint8 V3-Small
evaluates as a third-party model. (The weights are QAT-derived: see ../shared/README.md.)"""

import json

import pytest

from edgemobile.cli.main import main
from edgemobile.quantization.exact_ranges import relu6_range_violations
from edgemobile.quantization.integer_check import float_tensor_uses
from edgemobile.runtime.delegation import fallback_warning, model_delegation
from edgemobile.runtime.interpreter import TFLiteClassifier

pytest.importorskip("tensorflow")

WEIGHTS = "weights/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5"


@pytest.fixture(scope="module")
def v3(shared, tmp_path_factory):
    weights = shared / WEIGHTS
    tmp = tmp_path_factory.mktemp("v3")
    float32, int8 = tmp / "v3s_float32.tflite", tmp / "v3s_int8.tflite"
    assert main(["convert", "--model", "mobilenet_v3_small", "--weights", str(weights), "-o", str(float32), "--quiet"]) == 0
    assert main(["convert", "--model", "mobilenet_v3_small", "--int8", "--weights", str(weights),
                 "--calibration", str(shared / "imagenet/calib"), "--num-calibration", "100",
                 "-o", str(int8), "--quiet"]) == 0
    return weights, float32, int8


def _eval(*argv) -> dict:
    report = argv[-1]
    assert main([str(a) for a in (*argv[:-1], "--json", report, "--quiet")]) == 0
    return json.loads(report.read_text())


def test_float_tflite_agrees_with_keras(shared, v3, tmp_path):
    weights, float32, _ = v3
    result = _eval("eval", float32, "--data", shared / "imagenet/val", "--reference", "mobilenet_v3_small",
                   "--reference-weights", weights, "--limit", "200", tmp_path / "f.json")
    assert result["comparison"]["top1_agreement"] >= 99.0
    # Raw pixels in: the model rescales inside its graph, so the spec must not normalize again.
    assert result["model"]["preprocessing"]["mean"] == [0.0, 0.0, 0.0]
    assert result["model"]["preprocessing"]["std"] == [1.0, 1.0, 1.0]


def test_int8_all_integer_calibrated_and_close_to_float(shared, v3, tmp_path):
    _, float32, int8 = v3
    model = TFLiteClassifier(int8)
    assert float_tensor_uses(model) == []
    assert relu6_range_violations(model.model_bytes) == []
    # Realistic BatchNorm statistics: XNNPACK takes every op but the int8 SOFTMAX head, so no warning.
    delegation = model_delegation(model.model_bytes)
    assert [op.name for op in delegation.fallback] == ["SOFTMAX"] and fallback_warning(delegation, "v3") is None
    result = _eval("eval", int8, "--data", shared / "imagenet/val", "--reference", float32, tmp_path / "q.json")
    assert abs(result["comparison"]["top1_delta"]) <= 4.0, result["comparison"]
    assert result["model"]["input_feeding"] == "raw pixels"


def test_google_qat_v3_small_as_third_party(shared, tmp_path):
    result = _eval("eval", shared / "weights/mobilenet_v3/v3-small_224_1.0_uint8.tflite", "--data",
                   shared / "imagenet/val", tmp_path / "g.json")
    assert result["model"]["background_class_dropped"] and result["model"]["top1"] >= 60.0  # published 64.9
