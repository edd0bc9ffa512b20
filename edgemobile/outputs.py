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
