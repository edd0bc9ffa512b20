"""Reading users' files: any OS failure becomes one line naming the file and what it was."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from edgemobile.errors import EdgeMobileError


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """``with reading(path, "model file"): data = open(path, "rb").read()``"""
    try:
        yield
    except FileNotFoundError:
        raise EdgeMobileError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise EdgeMobileError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise EdgeMobileError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
