"""Shared fixtures. Tests that need ../shared (real ImageNet images and weights) skip with a
clear reason when it is absent; EDGEMOBILE_SHARED points elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("EDGEMOBILE_SHARED", ROOT.parent / "shared"))


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
