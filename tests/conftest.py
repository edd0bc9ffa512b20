"""Shared fixtures. Tests that need ../shared (real ImageNet images and weights) skip with a
clear reason when it is absent; EDGEMOBILE_SHARED points elsewhere.

Tests that build Keras models or convert need the converter install: mark them
``@pytest.mark.convert`` (or a module with ``pytestmark = pytest.mark.convert``) and they skip
with the reason under the runtime-only install (``pip install edgemobile[runtime]``, e.g. on a
Raspberry Pi), where the rest of the suite must pass."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("EDGEMOBILE_SHARED", ROOT.parent / "shared"))


CONVERTER_MODULES = ("tensorflow", "keras")


def missing_converter_modules() -> list[str]:
    return [m for m in CONVERTER_MODULES if importlib.util.find_spec(m) is None]


def pytest_configure(config):
    config.addinivalue_line("markers", "convert: needs the converter install (TensorFlow + Keras); "
                            "skipped with the reason under the runtime-only install")


def pytest_collection_modifyitems(config, items):
    missing = missing_converter_modules()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs the converter install ({', '.join(missing)} not installed: "
                            "pip install -e '.[convert]')")
    for item in items:
        if item.get_closest_marker("convert"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_path()
    if not (path / "imagenet").is_dir():
        pytest.skip(f"shared data not found at {path} (set EDGEMOBILE_SHARED to its location)")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.keras or the network from tests."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras_home"))
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")


MOBILENET_UINT8_WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"


@pytest.fixture(scope="session")
def mobilenet_uint8(shared, tmp_path_factory) -> Path:
    """MobileNetV1 α0.25/224 converted to uint8 by ``edgemobile convert`` (default techniques,
    20 calibration images), made once per session for the tests that only read it."""
    pytest.importorskip("tensorflow")
    from edgemobile.cli.main import main

    path = tmp_path_factory.mktemp("mobilenet_uint8") / "mobilenet_uint8.tflite"
    assert main(["convert", "--model", "mobilenet", "--alpha", "0.25", "--uint8",
                 "--weights", str(shared / MOBILENET_UINT8_WEIGHTS), "--calibration", str(shared / "imagenet/calib"),
                 "--num-calibration", "20", "-o", str(path), "--quiet"]) == 0
    return path
