"""The foundation issue's acceptance path on real data: MobileNetV1 α0.25 with the original
Keras ImageNet weights → calibrated all-integer TFLite → eval against float on ImageNet val."""

import json

import numpy as np
import pytest

from edgemobile.cli.main import main
from edgemobile.metadata import read_metadata
from edgemobile.quantization.integer_check import float_tensor_uses, op_histogram
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.cli_run import run_ok as run

pytest.importorskip("tensorflow")

WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"


@pytest.fixture(scope="module")
def models(shared, tmp_path_factory):
    """int8 and float32 conversions, made through the CLI exactly as a user would."""
    tmp = tmp_path_factory.mktemp("models")
    weights = shared / WEIGHTS
    int8, float32 = tmp / "int8.tflite", tmp / "float32.tflite"
    assert main(["convert", "--model", "mobilenet", "--alpha", "0.25", "--int8", "--weights", str(weights),
                 "--calibration", str(shared / "imagenet/calib"), "--num-calibration", "200",
                 "-o", str(int8), "--quiet"]) == 0
    assert main(["convert", "--model", "mobilenet_v1", "--alpha", "0.25", "--weights", str(weights),
                 "-o", str(float32), "--quiet"]) == 0
    return int8, float32


def test_int8_model_is_all_integer_with_metadata(models):
    int8, _ = models
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


def test_float_tflite_matches_keras_float(shared, models, capsys, tmp_path):
    _, float32 = models
    report = tmp_path / "float.json"
    run(capsys, "eval", float32, "--data", shared / "imagenet/val", "--reference", "mobilenet",
        "--reference-weights", shared / WEIGHTS, "--json", report, "--quiet")
    result = json.loads(report.read_text())
    assert result["reference"]["kind"] == "keras" and result["reference"]["model"] == "mobilenet_v1_0.25_224"
    assert result["images"] == 700
    assert result["comparison"]["top1_agreement"] >= 99.0
    assert result["model"]["top1"] > 55.0  # ~65 expected on this set


def test_int8_within_four_points_of_float(shared, models, capsys, tmp_path):
    int8, float32 = models
    report = tmp_path / "int8.json"
    out = run(capsys, "eval", int8, "--data", shared / "imagenet/val", "--reference", float32,
              "--json", report, "--quiet")
    assert "top-1 agreement" in out and "difference" in out
    result = json.loads(report.read_text())
    assert result["model"]["preprocessing_source"] == "model metadata"
    assert abs(result["comparison"]["top1_delta"]) <= 4.0, result["comparison"]
    assert result["comparison"]["top1_agreement"] >= 75.0


def test_inspect_feeds_the_int8_model_as_eval_does(models):
    """Raw pixels in, in eval and in inspect alike: pixel p is the int8 code p − 128 (quantizing
    the normalized value would round p ≤ 127 one code lower: its half step goes the other way)."""
    from edgemobile.eval.predictors import TFLitePredictor

    predictor = TFLitePredictor(models[0])
    pixels = np.arange(256, dtype=np.uint8)[:, None].repeat(3, axis=1)
    device = (pixels.astype(np.int16) - 128).astype(np.int8)
    assert predictor.describe()["input_feeding"] == "raw pixels"
    assert np.array_equal(predictor.prepare(pixels), device)
    normalized = predictor.spec.normalize(pixels)
    assert np.array_equal(predictor.model.encode_as_device(normalized, predictor.spec), device)
    assert not np.array_equal(predictor.model.encode(normalized), device)


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


def test_predict_names_classes(shared, models, capsys, tmp_path):
    int8, _ = models
    image = sorted((shared / "imagenet/val/n01440764").iterdir())[0]
    out_json = tmp_path / "pred.json"
    out = run(capsys, "predict", int8, image, "--top-k", "3", "--json", out_json)
    assert "tench" in out
    top = json.loads(out_json.read_text())["predictions"][0]["top"]
    assert len(top) == 3 and top[0]["id"] == "n01440764"
    assert top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    assert 0.0 < sum(t["probability"] for t in top) <= 1.0 + 1e-6
