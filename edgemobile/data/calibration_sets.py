"""The calibration sets ``convert`` uses: ``--calibration`` resolved to a folder of images
(a folder as it is, a manifest's files, or the default set).

The default set (``convert`` without ``--calibration``) is the shipped manifest
``edgemobile/resources/imagenet_sample_1000.json``: one public ImageNet training image per
class, downloaded once (:mod:`edgemobile.data.calibration_download`). The manifest format is
:mod:`edgemobile.data.calibration_manifest`; making one from an ImageNet train folder is
:mod:`edgemobile.data.calibration_builder`; the command line (``python -m
edgemobile.cli.calibration build|fetch|fill-checksums``) is :mod:`edgemobile.cli.calibration`.

Runtime code: no TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgemobile.data.calibration_download import materialize
from edgemobile.data.calibration_manifest import load_manifest, shipped_manifest
from edgemobile.errors import EdgeMobileError


def default_calibration_folder(*, base_url_override: str | None = None, quiet: bool = False) -> Path:
    """The default ImageNet calibration set (1000 images, one per class), downloaded once."""
    return materialize(shipped_manifest(), base_url_override=base_url_override, quiet=quiet)


def resolve_calibration(arg: str | os.PathLike | None) -> Path:
    """``--calibration``: None → the default set; a .json manifest → its files; a folder → itself."""
    if arg is None:
        return default_calibration_folder()
    path = Path(arg)
    if path.is_dir():
        return path
    if path.suffix.lower() == ".json":
        return materialize(load_manifest(path))
    if path.exists():
        raise EdgeMobileError(f"{path}: --calibration takes a folder of images or a .json calibration manifest")
    raise EdgeMobileError(f"{path}: no such calibration folder or manifest")


__all__ = ["default_calibration_folder", "resolve_calibration"]
