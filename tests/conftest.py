"""Fixtures and markers for the whole suite (plain helpers are in ``tests/support``; fixtures
used by one folder only are in that folder's conftest.py). Tests that need ../shared (real
ImageNet images and weights) skip with a clear reason when it is absent; EDGEMOBILE_SHARED
points elsewhere.

Tests that build Keras models or convert need the converter install: mark them
``@pytest.mark.convert`` (or a module with ``pytestmark = pytest.mark.convert``) and they skip
with the reason under the runtime-only install (``pip install edgemobile[runtime]``, e.g. on a
Raspberry Pi), where the rest of the suite must pass.

Every test under ``tests/e2e/`` is marked ``e2e`` (slow, end to end on ../shared): the default
``python -m pytest`` runs them; ``python -m pytest -m "not e2e"`` is the quick loop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from support.paths import MOBILENET_UINT8_WEIGHTS, ROOT, shared_path

E2E = ROOT / "tests" / "e2e"


CONVERTER_MODULES = ("tensorflow", "keras")


def missing_converter_modules() -> list[str]:
    return [m for m in CONVERTER_MODULES if importlib.util.find_spec(m) is None]


def pytest_configure(config):
    config.addinivalue_line("markers", "convert: needs the converter install (TensorFlow + Keras); "
                            "skipped with the reason under the runtime-only install")
    config.addinivalue_line("markers", "e2e: slow end-to-end test on ../shared (every test under tests/e2e/); "
                            "-m 'not e2e' leaves them out for a quick loop")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
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
