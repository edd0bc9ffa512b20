"""Fixtures of the end-to-end tests (every test here is marked ``e2e`` by tests/conftest.py):
conversions of real shared weights that several modules read, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

MOBILENET_WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"


@pytest.fixture(scope="session")
def mobilenet_int8(shared, tmp_path_factory) -> Path:
    """MobileNetV1 α0.25/224 (original Keras ImageNet weights) converted with the default
    ``--int8`` on 200 calibration images through the CLI, as a user would: read by
    test_end_to_end.py and test_quant_accuracy.py, which each converted it before."""
    pytest.importorskip("tensorflow")
    from edgemobile.cli.main import main

    path = tmp_path_factory.mktemp("mobilenet_int8") / "mobilenet_0.25_int8.tflite"
    assert main(["convert", "--model", "mobilenet", "--alpha", "0.25", "--int8", "--weights",
                 str(shared / MOBILENET_WEIGHTS), "--calibration", str(shared / "imagenet/calib"),
                 "--num-calibration", "200", "-o", str(path), "--quiet"]) == 0
    return path


@pytest.fixture(scope="session")
def mobilenet_float32(shared, tmp_path_factory) -> Path:
    """The float32 TFLite of the same model (``--model mobilenet_v1``: the alias works too)."""
    pytest.importorskip("tensorflow")
    from edgemobile.cli.main import main

    path = tmp_path_factory.mktemp("mobilenet_float32") / "float32.tflite"
    assert main(["convert", "--model", "mobilenet_v1", "--alpha", "0.25", "--weights", str(shared / MOBILENET_WEIGHTS),
                 "-o", str(path), "--quiet"]) == 0
    return path
