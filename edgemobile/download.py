"""Download-once file cache with integrity checks, shared by weights and calibration data.

Files live where Keras keeps its downloads (``$KERAS_HOME/<subdir>``, default
``~/.keras/<subdir>``), so a weights file Keras already fetched is used offline, and
``keras.utils.get_file`` finds ours. A file already in the cache is never fetched again
(unless its checksum is known and does not match). Downloads go to a temp file in the
cache folder, are hashed while streaming, and are renamed into place only when complete
and verified. ``EDGEMOBILE_OFFLINE=1`` forbids network access altogether.

Concurrency and faults: a download holds an exclusive lock (``.<filename>.lock`` beside it,
``fcntl.flock``; released by the OS when the process dies), so two processes filling the same
cache at once end with one copy — the second waits, then finds it verified. A killed download
leaves only its ``.part`` temp file, which no later run trusts and the next download of the
same file deletes. Every downloaded file gets its sha256 recorded in ``.<filename>.sha256``;
a cache hit is checked against the published checksum, else that record, so a file changed on
disk after it was verified is downloaded again (or, offline, refused in one line). A file
without that record was put there by hand: if it does not match the published checksum it is
someone's own file, which is never replaced — the error says to load it by path instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edgemobile.errors import DownloadError
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
    remember: bool = True,
    by_path: str = "",
) -> Path:
    """Return the cached path of ``filename``, downloading it from ``url`` if needed.

    ``checksum`` (sha256 or md5 hex) is verified on download and on cache hits; without one,
    the sha256 of the download is recorded and checked on cache hits instead (unless
    ``remember`` is False: the caller keeps its own record). ``hint`` is appended to the
    offline error (e.g. "or pass --weights FILE"); ``by_path`` says how to load a file of
    one's own by path (e.g. "--weights FILE"), for a hand-placed file that is not the
    published one.
    """
    target = cache_dir(subdir) / filename
    offline = os.environ.get("EDGEMOBILE_OFFLINE") == "1"
    if _cached(target, checksum, quiet, offline, what, by_path):
        return target
    if offline:
        raise DownloadError(_offline_message(what, filename, url, target, "EDGEMOBILE_OFFLINE=1", hint))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"{target.parent}: cannot create the download cache ({exc.strerror})") from None
    with _locked(target):
        # Another process may have filled the cache while this one waited for the lock.
        if _cached(target, checksum, quiet=True, offline=False, what=what, by_path=by_path):
            return target
        for stale in target.parent.glob(f".{filename}.*.part"):  # left by a killed download
            stale.unlink(missing_ok=True)
        return _download(url, target, checksum, what, hint, quiet, timeout, remember)


def _record_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.sha256")


def _cached(target: Path, checksum: str | None, quiet: bool, offline: bool, what: str,
            by_path: str = "") -> bool:
    """True if ``target`` is in the cache and matches its published checksum (else the sha256
    recorded when it was downloaded); a mismatch is announced (offline: refused in one line),
    and a hand-placed file that is not the published one is refused, never replaced."""
    if not target.is_file():
        return False
    record = None
    with contextlib.suppress(OSError, UnicodeDecodeError):
        record = _record_path(target).read_text("ascii").strip() or None
    expected, kind = (checksum, "its published checksum") if checksum else (record, "the sha256 recorded at download")
    if expected is None or _matches(target, expected):
        return True
    if record is None:  # not downloaded here: someone put their own file in the official one's place
        how = f"load your own file by path ({by_path}) or delete" if by_path else "delete"
        raise DownloadError(f"{target}: not the published {what} (it does not match {kind}); {how} it "
                              "to download the official file")
    if offline:
        raise DownloadError(f"{target}: cached {what} does not match {kind} (changed on disk since it was "
                              "verified) and EDGEMOBILE_OFFLINE=1 forbids downloading it again; delete it or run online")
    if not quiet:
        print(f"edgemobile: {target} does not match {kind}; downloading it again", file=sys.stderr, flush=True)
    return False


@contextlib.contextmanager
def _locked(target: Path):
    """An exclusive lock on ``.<name>.lock`` beside ``target``, removed again when released
    (no-op where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the cache consistent
        yield
        return
    lock_path = target.with_name(f".{target.name}.lock")
    while True:
        try:
            fh = open(lock_path, "a+b")
        except OSError as exc:
            raise DownloadError(f"{lock_path}: cannot create the download lock ({exc.strerror})") from None
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                break  # still the lock file: ours
        except FileNotFoundError:
            pass
        fh.close()  # its holder removed it while this process waited: take the next one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        fh.close()  # releases the lock


def _download(url: str, target: Path, checksum: str | None, what: str, hint: str, quiet: bool, timeout: float,
              remember: bool) -> Path:
    filename = target.name
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
                raise DownloadError(
                    f"{url}: downloaded {what} {filename} has checksum {got}, expected {checksum}; "
                    "the file on the server changed or the download was corrupted — nothing was kept"
                )
        record = _record_path(target)
        if remember:  # also marks the file as downloaded here, not put in place by hand
            record_tmp = record.with_name(record.name + ".tmp")
            record_tmp.write_text(sha256.hexdigest() + "\n", "ascii")
            os.replace(record_tmp, record)
        else:
            record.unlink(missing_ok=True)
        os.replace(tmp, target)
        if checksum is None and not quiet:
            # The publisher gives no checksum (Keras' MobileNetV1 files): say what we got, so
            # it can be compared and pinned; converted models record it in their provenance.
            print(f"edgemobile: downloaded {filename}, sha256 {sha256.hexdigest()} "
                  "(no published checksum to verify against)", file=sys.stderr, flush=True)
        return target
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(_offline_message(what, filename, url, target, str(reason), hint)) from None
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
    _record_path(target).unlink(missing_ok=True)  # a sha256 recorded for an earlier download no longer applies
    os.replace(tmp, target)
    return target
