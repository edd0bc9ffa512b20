"""Writing results safely: never a half-written file, never a silent overwrite."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgemobile.errors import EdgeMobileError


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Fail early (before any long work) if ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise EdgeMobileError(f"{path}: is a folder; give a file name")
    if path.exists() and not force:
        raise EdgeMobileError(f"{path}: already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise EdgeMobileError(f"{path}: folder {path.parent} does not exist")
    return path


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Fail early if ``folder`` cannot be an output folder: a file is in its place, or the
    folder it would be created in is missing. Whether an existing folder may be reused, and
    which files in it would be overwritten, is the caller's rule."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EdgeMobileError(f"{folder}: exists and is not a folder")
    if not folder.parent.is_dir():
        raise EdgeMobileError(f"{folder}: folder {folder.parent} does not exist")
    return folder


def write_atomic(path: str | os.PathLike, data: bytes | str, force: bool = False) -> Path:
    """Write ``data`` to a temp file beside ``path``, then rename it into place."""
    path = check_output(path, force)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
