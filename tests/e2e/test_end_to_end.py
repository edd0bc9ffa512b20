"""The acceptance path on real data, for every family with shared weights: MobileNetV1 α0.25
(original Keras ImageNet weights), MobileNetV3-Small (QAT-derived: see ../shared/README.md) and
MobileOne-S0 (Apple's fused checkpoint, loaded without torch) → float32 and calibrated
all-integer TFLite through the CLI, as a user makes them → eval against Keras float and against
the float TFLite on ImageNet val. The checks every family shares are one test parametrized over
the families; what a family adds (V1's metadata, V3's graph-in preprocessing and XNNPACK
coverage, S0's normalization) is in its row's check. Google's third-party uint8 models evaluate
as they are."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgemobile.cli.main import main
from edgemobile.metadata import read_metadata
from edgemobile.quantization.exact_ranges import relu6_range_violations
from edgemobile.quantization.integer_check import float_tensor_uses, op_histogram
from edgemobile.runtime.delegation import fallback_warning, model_delegation
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.cli_run import run_ok as run

pytest.importorskip("tensorflow")

WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"


# -- what each family adds to the shared checks ------------------------------------------------
def _v1_float(result: dict) -> None:
    assert result["reference"]["kind"] == "keras" and result["reference"]["model"] == "mobilenet_v1_0.25_224"
    assert result["images"] == 700
    assert result["model"]["top1"] > 55.0  # ~65 expected on this set


def _v3_float(result: dict) -> None:
    # Raw pixels in: the model rescales inside its graph, so the spec must not normalize again.
    assert result["model"]["preprocessing"]["mean"] == [0.0, 0.0, 0.0]
    assert result["model"]["preprocessing"]["std"] == [1.0, 1.0, 1.0]


def _s0_float(result: dict) -> None:
    assert result["model"]["top1"] >= 70.0  # best model of the zoo on this set: ~81 on all 700
    assert result["model"]["preprocessing"]["mean"] == [123.675, 116.28, 103.53]


def _v3_int8_graph(model: TFLiteClassifier) -> None:
    assert relu6_range_violations(model.model_bytes) == []
    # Realistic BatchNorm statistics: XNNPACK takes every op but the int8 SOFTMAX head, so no warning.
    delegation = model_delegation(model.model_bytes)
    assert [op.name for op in delegation.fallback] == ["SOFTMAX"] and fallback_warning(delegation, "v3") is None


def _v1_int8(out: str, result: dict) -> None:
    assert "top-1 agreement" in out and "difference" in out
    assert result["model"]["preprocessing_source"] == "model metadata"
    assert abs(result["comparison"]["top1_delta"]) <= 4.0, result["comparison"]
    assert result["comparison"]["top1_agreement"] >= 75.0


def _v3_int8(out: str, result: dict) -> None:
    assert abs(result["comparison"]["top1_delta"]) <= 4.0, result["comparison"]
    assert result["model"]["input_feeding"] == "raw pixels"


def _s0_int8(out: str, result: dict) -> None:
    # Not a quality bar (the quantization issue owns that): the int8 model must still be a
    # working classifier, far from chance.
    assert result["comparison"]["top1_agreement"] >= 50.0


@dataclasses.dataclass(frozen=True)
class Family:
    weights: str
    convert_float: tuple[str, ...]  # convert's model arguments (the aliases are part of the test)
    convert_int8: tuple[str, ...]
    num_calibration: int
    reference: str  # eval --reference NAME for the Keras float model
    float_limit: int | None  # eval --limit (None: all 700 images)
    int8_limit: int | None
    check_float: Callable[[dict], None]
    check_int8: Callable[[str, dict], None]
    check_int8_graph: Callable[[TFLiteClassifier], None] = lambda model: None


FAMILIES = {
    "mobilenet_v1": Family(WEIGHTS, ("mobilenet_v1", "--alpha", "0.25"), ("mobilenet", "--alpha", "0.25"), 200,
                           "mobilenet", None, None, _v1_float, _v1_int8),
    "mobilenet_v3_small": Family("weights/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5",
                                 ("mobilenet_v3_small",), ("mobilenet_v3_small",), 100, "mobilenet_v3_small",
                                 200, None, _v3_float, _v3_int8, _v3_int8_graph),
    "mobileone_s0": Family("weights/mobileone/mobileone_s0.pth.tar", ("mobileone_s0",), ("mobileone-s0",), 100,
                           "mobileone_s0", 200, 200, _s0_float, _s0_int8),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, shared, tmp_path_factory):
    """(name, row, weights, float32 .tflite, int8 .tflite), made through the CLI exactly as a
    user would; MobileNetV1's are the session's (tests/e2e/conftest.py, shared with
    test_quant_accuracy.py)."""
    name, row = request.param, FAMILIES[request.param]
    weights = shared / row.weights
    if name == "mobilenet_v1":
        return name, row, weights, request.getfixturevalue("mobilenet_float32"), \
            request.getfixturevalue("mobilenet_int8")
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    tmp = tmp_path_factory.mktemp(name)
    float32, int8 = tmp / f"{name}_float32.tflite", tmp / f"{name}_int8.tflite"
    assert main(["convert", "--model", *row.convert_float, "--weights", str(weights), "-o", str(float32),
                 "--quiet"]) == 0
    assert main(["convert", "--model", *row.convert_int8, "--int8", "--weights", str(weights),
                 "--calibration", str(shared / "imagenet/calib"), "--num-calibration", str(row.num_calibration),
                 "-o", str(int8), "--quiet"]) == 0
    if name == "mobileone_s0":
        assert "torch" not in sys.modules
    return name, row, weights, float32, int8


def _limit(limit: int | None) -> tuple[str, ...]:
    return ("--limit", str(limit)) if limit is not None else ()


def _eval(capsys, report: Path, *argv) -> tuple[str, dict]:
    out = run(capsys, "eval", *argv, "--json", report, "--quiet")
    return out, json.loads(report.read_text())


# -- every family --------------------------------------------------------------------------------
def test_float_tflite_agrees_with_keras(shared, family, capsys, tmp_path):
    _, row, weights, float32, _ = family
    _, result = _eval(capsys, tmp_path / "float.json", float32, "--data", shared / "imagenet/val",
                      "--reference", row.reference, "--reference-weights", weights, *_limit(row.float_limit))
    assert result["comparison"]["top1_agreement"] >= 99.0
    row.check_float(result)


def test_int8_all_integer_and_evaluates_close_to_float(shared, family, capsys, tmp_path):
    _, row, _, float32, int8 = family
    model = TFLiteClassifier(int8)
    assert float_tensor_uses(model) == []
    row.check_int8_graph(model)
    out, result = _eval(capsys, tmp_path / "int8.json", int8, "--data", shared / "imagenet/val",
                        "--reference", float32, *_limit(row.int8_limit))
    row.check_int8(out, result)


# -- MobileNetV1: what the model carries and how it is fed -------------------------------------
def test_int8_model_is_all_integer_with_metadata(mobilenet_int8):
    int8 = mobilenet_int8
    model = TFLiteClassifier(int8)
    assert model.input.dtype == np.int8 and model.output.dtype == np.int8
    assert float_tensor_uses(model) == []
    assert "CONV_2D" in op_histogram(model) and model.outputs_probabilities
    info = read_metadata(int8)
    assert info.preprocess.size == 224 and info.preprocess.resize_shorter == 256
    assert info.preprocess.mean == (127.5,) * 3 and info.preprocess.std == (127.5,) * 3
    assert len(info.labels) == 1000 and info.labels[0] == "tench"
    provenance = info.extra["provenance"]
    assert provenance["model"] == "mobilenet_v1_0.25_224" and provenance["precision"] == "int8"
    assert provenance["calibration"]["images"] == 200 and len(provenance["weights"]["sha256"]) == 64


def test_inspect_feeds_the_int8_model_as_eval_does(mobilenet_int8):
    """Raw pixels in, in eval and in inspect alike: pixel p is the int8 code p − 128 (quantizing
    the normalized value would round p ≤ 127 one code lower: its half step goes the other way)."""
    from edgemobile.eval.predictors import TFLitePredictor

    predictor = TFLitePredictor(mobilenet_int8)
    pixels = np.arange(256, dtype=np.uint8)[:, None].repeat(3, axis=1)
    device = (pixels.astype(np.int16) - 128).astype(np.int8)
    assert predictor.describe()["input_feeding"] == "raw pixels"
    assert np.array_equal(predictor.prepare(pixels), device)
    normalized = predictor.spec.normalize(pixels)
    assert np.array_equal(predictor.model.encode_as_device(normalized, predictor.spec), device)
    assert not np.array_equal(predictor.model.encode(normalized), device)


def test_predict_names_classes(shared, mobilenet_int8, capsys, tmp_path):
    image = sorted((shared / "imagenet/val/n01440764").iterdir())[0]
    out_json = tmp_path / "pred.json"
    out = run(capsys, "predict", mobilenet_int8, image, "--top-k", "3", "--json", out_json)
    assert "tench" in out
    top = json.loads(out_json.read_text())["predictions"][0]["top"]
    assert len(top) == 3 and top[0]["id"] == "n01440764"
    assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    assert 0.0 < sum(t["probability"] for t in top) <= 1.0 + 1e-6


# -- Google's third-party uint8 models -------------------------------------------------------------
def test_google_quant_model_with_1001_outputs(shared, capsys, tmp_path):
    """A third-party uint8 model: raw pixels in (per its input quantization), background
    class dropped, preprocessing from flags — published full-ImageNet top-1 is 57.2."""
    model = shared / "weights/mobilenet_v1/mobilenet_v1_0.5_160_quant.tflite"
    report = tmp_path / "google.json"
    run(capsys, "eval", model, "--data", shared / "imagenet/val", "--json", report, "--quiet")
    result = json.loads(report.read_text())["model"]
    assert result["background_class_dropped"] and result["outputs"] == 1001
    assert result["preprocessing_source"] == "input quantization (raw pixels)"
    assert result["top1"] >= 60.0
    # The same with the normalization spelled out as flags gives the same predictions.
    flagged = tmp_path / "flags.json"
    run(capsys, "eval", model, "--data", shared / "imagenet/val", "--mean", "128", "--std", "128",
        "--background-class", "--limit", "100", "--json", flagged, "--quiet")
    assert json.loads(flagged.read_text())["model"]["preprocessing_source"] == "command-line flags"


def test_google_qat_v3_small_as_third_party(shared, capsys, tmp_path):
    _, result = _eval(capsys, tmp_path / "g.json", shared / "weights/mobilenet_v3/v3-small_224_1.0_uint8.tflite",
                      "--data", shared / "imagenet/val")
    assert result["model"]["background_class_dropped"] and result["model"]["top1"] >= 60.0  # published 64.9
