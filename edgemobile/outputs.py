"""Writing results safely: never a half-written file, never a silent overwrite. Missing
parent folders are created when the output is written (as ``keras.Model.save`` does), not
when it is checked, so a run that fails leaves no empty folders behind."""

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
    check_parent(path)
    return path


def check_parent(path: Path) -> None:
    """The folder ``path`` goes in may be missing (it is created on writing), but where it
    would be created must be a folder, not a file."""
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise EdgeMobileError(f"{path}: {ancestor} is a file, not a folder; choose another output path")
            return


def make_parent(path: Path) -> None:
    """Create the missing folders ``path`` goes in (after :func:`check_parent`)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeMobileError(f"{path}: cannot create its folder {path.parent} ({exc.strerror})") from None


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Fail early if ``folder`` cannot be an output folder: a file is in its place, or where
    it would be created is a file (missing folders are created on writing). Whether an
    existing folder may be reused, and which files in it would be overwritten, is the
    caller's rule."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EdgeMobileError(f"{folder}: exists and is not a folder")
    check_parent(folder)
    return folder


def write_atomic(path: str | os.PathLike, data: bytes | str, force: bool = False) -> Path:
    """Write ``data`` to a temp file beside ``path``, then rename it into place."""
    path = check_output(path, force)
    make_parent(path)
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
