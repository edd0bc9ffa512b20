"""Download-once file cache with integrity checks, shared by weights and calibration data.

Files live where Keras keeps its downloads (``$KERAS_HOME/<subdir>``, default
``~/.keras/<subdir>``), so a weights file Keras already fetched is used offline, and
``keras.utils.get_file`` finds ours. A file already in the cache is never fetched again
(unless its checksum is known and does not match). Downloads go to a temp file in the
cache folder, are hashed while streaming, and are renamed into place only when complete
and verified. ``EDGEMOBILE_OFFLINE=1`` forbids network access altogether.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edgemobile.errors import EdgeMobileError
from edgemobile.progress import Progress

_CHUNK = 1 << 16


def cache_dir(subdir: str = "models") -> Path:
    """Keras' cache folder for ``subdir`` (``KERAS_HOME`` or ``~/.keras``, else /tmp/.keras)."""
    base = os.environ.get("KERAS_HOME")
    if not base:
        home = Path(os.path.expanduser("~")) / ".keras"
        base = str(home if os.access(home.parent, os.W_OK) else Path(tempfile.gettempdir()) / ".keras")
    return Path(base) / subdir


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, expected: str) -> bool:
    # Keras publishes md5 (32 hex) for some files and sha256 (64 hex) for others.
    algorithm = "md5" if len(expected) == 32 else "sha256"
    return file_hash(path, algorithm) == expected.lower()


def fetch(
    url: str,
    filename: str,
    *,
    checksum: str | None = None,
    subdir: str = "models",
    what: str = "file",
    hint: str = "",
    quiet: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Return the cached path of ``filename``, downloading it from ``url`` if needed.

    ``checksum`` (sha256 or md5 hex) is verified on download and on cache hits; ``hint``
    is appended to the offline error (e.g. "or pass --weights FILE").
    """
    target = cache_dir(subdir) / filename
    if target.is_file():
        if checksum is None or _matches(target, checksum):
            return target
        if not quiet:
            print(f"edgemobile: {target} fails its checksum; downloading it again", file=sys.stderr, flush=True)
    if os.environ.get("EDGEMOBILE_OFFLINE") == "1":
        raise EdgeMobileError(_offline_message(what, filename, url, target, "EDGEMOBILE_OFFLINE=1", hint))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeMobileError(f"{target.parent}: cannot create the download cache ({exc.strerror})") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        sha256, md5 = hashlib.sha256(), hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            progress = None if quiet else Progress(total, f"downloading {filename}", unit="B", log_every=30)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                sha256.update(chunk)
                md5.update(chunk)
                if progress:
                    progress.update(len(chunk))
            if progress:
                progress.close()
        if checksum is not None:
            got = (md5 if len(checksum) == 32 else sha256).hexdigest()
            if got != checksum.lower():
                raise EdgeMobileError(
                    f"{url}: downloaded {what} {filename} has checksum {got}, expected {checksum}; "
                    "the file on the server changed or the download was corrupted — nothing was kept"
                )
        os.replace(tmp, target)
        if checksum is None and not quiet:
            # The publisher gives no checksum (Keras' MobileNetV1 files): say what we got, so
            # it can be compared and pinned; converted models record it in their provenance.
            print(f"edgemobile: downloaded {filename}, sha256 {sha256.hexdigest()} "
                  "(no published checksum to verify against)", file=sys.stderr, flush=True)
        return target
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise EdgeMobileError(_offline_message(what, filename, url, target, str(reason), hint)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _offline_message(what: str, filename: str, url: str, target: Path, reason: str, hint: str) -> str:
    extra = f", {hint}" if hint else ""
    return (f"cannot download {what} {filename} from {url} ({reason}); "
            f"put the file at {target}{extra}")


def copy_into_cache(src: str | os.PathLike, filename: str, subdir: str = "models") -> Path:
    """Place a local file in the cache the way a download would (used by tools and tests)."""
    target = cache_dir(subdir) / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{filename}.copy")
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    return target
