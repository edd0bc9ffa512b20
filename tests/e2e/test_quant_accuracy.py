"""CI guard on real data: MobileNetV1 α0.25/224 (original Keras ImageNet weights) converted
with the default ``--int8`` — the best technique combination — stays within 1.5 top-1 points
of the float model and agrees with it on ≥ 93 % of ImageNet val images, evaluated as the CLI
feeds it (raw pixels through the input quantization, as devices do; the plain converter:
−2.3 points, 84 %). 700 images, 200 calibration images."""

from __future__ import annotations

import json

import pytest

from edgemobile.cli.main import main

pytest.importorskip("tensorflow")

WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"


@pytest.fixture(scope="module")
def int8_model(mobilenet_int8):
    """The session's default ``--int8`` MobileNetV1 α0.25/224, 200 calibration images
    (tests/e2e/conftest.py; test_end_to_end.py reads the same file)."""
    return mobilenet_int8


def test_default_int8_is_close_to_float(shared, int8_model, capsys, tmp_path):
    report = tmp_path / "eval.json"
    code = main(["eval", str(int8_model), "--data", str(shared / "imagenet/val"), "--reference", "mobilenet",
                 "--reference-weights", str(shared / WEIGHTS), "--json", str(report), "--quiet"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(report.read_text())
    assert result["images"] == 700
    comparison = result["comparison"]
    assert comparison["top1_delta"] >= -1.5, comparison
    assert comparison["top1_agreement"] >= 93.0, comparison
    assert result["model"]["input_feeding"] == "raw pixels", result["model"]
    provenance = result["model"]
    assert provenance["preprocessing_source"] == "model metadata"


def test_default_int8_records_its_techniques(int8_model):
    from edgemobile.metadata import read_metadata
    from edgemobile.quantization.techniques.recipe import DEFAULT

    quantization = read_metadata(int8_model).extra["provenance"]["quantization"]
    assert quantization["options"] == DEFAULT.as_dict()
    assert quantization["techniques"] == DEFAULT.label()
