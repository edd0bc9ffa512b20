"""MobileOne-S0 (Apple's fused checkpoint, loaded without torch) through the same CLI path
as MobileNet: float TFLite must match Keras float; int8 converts all-integer and evaluates."""

import json
import sys

import pytest

from edgemobile.cli.main import main
from edgemobile.quantization.integer_check import float_tensor_uses
from edgemobile.runtime.interpreter import TFLiteClassifier

pytest.importorskip("tensorflow")

CHECKPOINT = "weights/mobileone/mobileone_s0.pth.tar"


@pytest.fixture(scope="module")
def s0(shared, tmp_path_factory):
    weights = shared / CHECKPOINT
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    tmp = tmp_path_factory.mktemp("mobileone")
    float32, int8 = tmp / "s0_float32.tflite", tmp / "s0_int8.tflite"
    assert main(["convert", "--model", "mobileone_s0", "--weights", str(weights), "-o", str(float32), "--quiet"]) == 0
    assert main(["convert", "--model", "mobileone-s0", "--int8", "--weights", str(weights),
                 "--calibration", str(shared / "imagenet/calib"), "--num-calibration", "100",
                 "-o", str(int8), "--quiet"]) == 0
    assert "torch" not in sys.modules
    return weights, float32, int8


def test_float_tflite_agrees_with_keras(shared, s0, tmp_path, capsys):
    weights, float32, _ = s0
    report = tmp_path / "float.json"
    assert main(["eval", str(float32), "--data", str(shared / "imagenet/val"), "--reference", "mobileone_s0",
                 "--reference-weights", str(weights), "--limit", "200", "--json", str(report), "--quiet"]) == 0
    result = json.loads(report.read_text())
    assert result["comparison"]["top1_agreement"] >= 99.0
    assert result["model"]["top1"] >= 70.0  # best model of the zoo on this set: ~81 on all 700
    assert result["model"]["preprocessing"]["mean"] == [123.675, 116.28, 103.53]


def test_int8_is_all_integer_and_evaluates(shared, s0, tmp_path):
    _, float32, int8 = s0
    assert float_tensor_uses(TFLiteClassifier(int8)) == []
    report = tmp_path / "int8.json"
    assert main(["eval", str(int8), "--data", str(shared / "imagenet/val"), "--reference", str(float32),
                 "--limit", "200", "--json", str(report), "--quiet"]) == 0
    comparison = json.loads(report.read_text())["comparison"]
    # Not a quality bar (the quantization issue owns that): the int8 model must still be a
    # working classifier, far from chance.
    assert comparison["top1_agreement"] >= 50.0
