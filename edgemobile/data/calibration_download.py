"""Getting a calibration set's files onto this machine, every one verified: downloaded once
into ``$KERAS_HOME/datasets/edgemobile-calibration/<name>/`` through
:func:`edgemobile.download.fetch` (hosted manifests), or verified where they are and exposed
through a folder of symbolic links (local manifests, never copied).

Entries without a published sha256 are accepted on first use (they must decode as images)
and their sha256 is recorded in ``tofu-sha256.json`` beside them and checked on every later
run. :func:`fill_checksums` downloads such entries afresh to record their sha256 (maintainers).

Runtime code: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from edgemobile.data.calibration_manifest import (
    SHA256_HEX,
    CalibrationManifest,
    ManifestEntry,
    check_url,
    load_manifest,
    validate_manifest,
)
from edgemobile.download import cache_dir, fetch, file_hash
from edgemobile.errors import EdgeMobileError
from edgemobile.outputs import write_atomic
from edgemobile.progress import Progress

CACHE_SUBDIR = "datasets/edgemobile-calibration"
TOFU_FILE = "tofu-sha256.json"


def materialize(
    manifest: CalibrationManifest | dict[str, Any] | str | os.PathLike,
    *,
    cache_subdir: str = CACHE_SUBDIR,
    base_url_override: str | None = None,
    local_root: str | os.PathLike | None = None,
    quiet: bool = False,
) -> Path:
    """A folder holding exactly the manifest's files, every one verified.

    Where the files come from, in order: ``base_url_override`` (download); ``local_root``
    (read there); the manifest's ``root`` if that folder exists (read there); its
    ``base_url``/per-entry ``url`` (download). Downloads land once in
    ``$KERAS_HOME/<cache_subdir>/<name>/`` (files already there and verified are skipped, so
    an interrupted download resumes). Local files are verified where they are and exposed
    through a folder of symbolic links, so the result holds the chosen files only.
    """
    if not isinstance(manifest, CalibrationManifest):
        manifest = load_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else validate_manifest(manifest)
    if base_url_override is not None:
        base = check_url(base_url_override, "base_url_override", "base_url_override")
        return _materialize_remote(manifest, base if base.endswith("/") else base + "/", cache_subdir, quiet)
    if local_root is not None:
        return _materialize_local(manifest, Path(local_root), cache_subdir, quiet)
    root = manifest.root_path()
    if root is not None and root.is_dir():
        return _materialize_local(manifest, root, cache_subdir, quiet)
    if manifest.base_url is not None or all(e.url for e in manifest.files):
        return _materialize_remote(manifest, manifest.base_url, cache_subdir, quiet)
    if root is not None:
        raise EdgeMobileError(
            f"{manifest.origin}: its images are under {root}, which does not exist here; "
            "rebuild the manifest on this machine or pass --calibration DIR"
        )
    raise EdgeMobileError(f"{manifest.origin}: has neither \"base_url\" nor \"root\"; cannot locate its images")


def _entry_url(entry: ManifestEntry, base_url: str | None, origin: str) -> str:
    if entry.url is not None:
        return entry.url
    if base_url is None:
        raise EdgeMobileError(f"{origin}: {entry.path} has no \"url\" and the manifest has no \"base_url\"")
    return base_url + urllib.parse.quote(entry.path)


def _verified(path: Path, expected: str, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return file_hash(path) == expected


def _read_tofu(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["files"]
        if not isinstance(records, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("sha256"), str) and SHA256_HEX.match(r["sha256"])
            for r in records.values()
        ):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise EdgeMobileError(
            f"{path}: unreadable trust-on-first-use record; delete the folder {path.parent} to download the set again"
        ) from None
    return records


def _write_tofu(path: Path, manifest: CalibrationManifest, records: dict[str, dict[str, Any]]) -> None:
    payload = {
        "about": "sha256 of calibration images accepted on first use (the manifest has no published "
        "checksum for them); edgemobile checks the cached files against these on every run",
        "manifest": manifest.name,
        "files": dict(sorted(records.items())),
    }
    write_atomic(path, json.dumps(payload, indent=1) + "\n", force=True)


def _decodes(path: Path) -> bool:
    """True if Pillow can fully decode ``path`` as an image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError…
        return False


def _materialize_remote(manifest: CalibrationManifest, base_url: str | None, cache_subdir: str, quiet: bool) -> Path:
    subdir = f"{cache_subdir.rstrip('/')}/{manifest.name}"
    folder = cache_dir(subdir)
    tofu_path = folder / TOFU_FILE
    tofu = _read_tofu(tofu_path)
    offline = os.environ.get("EDGEMOBILE_OFFLINE") == "1"
    tofu_changed = False
    accepted = 0
    todo: list[tuple[ManifestEntry, str | None]] = []  # (entry, expected sha256 or None)

    def accept(entry: ManifestEntry, target: Path, url: str, downloaded: bool) -> None:
        nonlocal tofu_changed, accepted
        if not _decodes(target):
            target.unlink(missing_ok=True)
            where = f"{url}: downloaded calibration image {entry.path}" if downloaded else f"{target}: cached file"
            raise EdgeMobileError(f"{where} does not decode as an image; it was deleted")
        tofu[entry.path] = {"sha256": file_hash(target), "size": target.stat().st_size, "url": url}
        tofu_changed = True
        accepted += 1

    try:
        for entry in manifest.files:
            target = folder / entry.path
            expected = entry.sha256 or (tofu.get(entry.path) or {}).get("sha256")
            size = entry.size if entry.sha256 else None
            if not target.is_file():
                todo.append((entry, expected))
                continue
            if expected is None:  # cached but never accepted (an interrupted first run)
                accept(entry, target, _entry_url(entry, base_url, manifest.origin), downloaded=False)
                continue
            if _verified(target, expected, size):
                continue
            kind = "its manifest" if entry.sha256 else f"the sha256 recorded on first use in {tofu_path}"
            if offline:
                raise EdgeMobileError(
                    f"{target}: calibration image does not match {kind} (modified or corrupted) and "
                    "EDGEMOBILE_OFFLINE=1 forbids downloading it again; run again with network access "
                    "to replace it, or pass --calibration DIR"
                )
            print(f"edgemobile: {target} does not match {kind}; downloading it again", file=sys.stderr, flush=True)
            target.unlink()
            todo.append((entry, expected))

        if todo:
            hint = (
                f"or put the {len(todo)} missing files listed in {manifest.origin} into {folder}, "
                "or pass --calibration DIR"
            )
            progress = None if quiet else Progress(
                len(todo), f"downloading calibration set {manifest.name}", unit="file", log_every=30
            )
            try:
                for entry, expected in todo:
                    url = _entry_url(entry, base_url, manifest.origin)
                    parent = PurePosixPath(entry.path).parent
                    fetch(
                        url,
                        PurePosixPath(entry.path).name,
                        checksum=expected,
                        subdir=subdir if str(parent) == "." else f"{subdir}/{parent}",
                        what="calibration image",
                        hint=hint,
                        quiet=True,
                        remember=False,  # the trust-on-first-use record is this module's
                    )
                    if expected is None:
                        accept(entry, folder / entry.path, url, downloaded=True)
                    elif entry.size is not None and entry.sha256 and (folder / entry.path).stat().st_size != entry.size:
                        (folder / entry.path).unlink()  # sha256 matched, so this only flags a bad manifest
                        raise EdgeMobileError(f"{manifest.origin}: {entry.path} has the listed sha256 but not the listed size")
                    if progress:
                        progress.update()
            finally:
                if progress and progress.count:  # no bar at all when the first download fails
                    progress.close()
    finally:
        if tofu_changed:
            _write_tofu(tofu_path, manifest, tofu)
    if accepted:
        print(
            f"edgemobile: calibration set {manifest.name}: accepted {accepted} of {len(manifest.files)} images "
            "on first use (the manifest has no published sha256 for them); they decode as images, and their "
            f"sha256 are recorded in {tofu_path} and checked on every later run",
            file=sys.stderr,
            flush=True,
        )
    return folder


def _materialize_local(manifest: CalibrationManifest, root: Path, cache_subdir: str, quiet: bool) -> Path:
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise EdgeMobileError(f"{root}: calibration image folder for {manifest.origin} does not exist")
    progress = None if quiet else Progress(len(manifest.files), f"verifying calibration set {manifest.name}", unit="file")
    try:
        for entry in manifest.files:
            path = root / entry.path
            if not path.is_file():
                raise EdgeMobileError(f"{path}: listed in {manifest.origin} but missing")
            if entry.sha256 is not None:
                if not _verified(path, entry.sha256, entry.size):
                    raise EdgeMobileError(
                        f"{path}: does not match the sha256 in {manifest.origin}; the file was modified or "
                        "corrupted since the manifest was built"
                    )
            elif not _decodes(path):
                raise EdgeMobileError(f"{path}: listed in {manifest.origin} but does not decode as an image")
            if progress:
                progress.update()
    finally:
        if progress:
            progress.close()
    tag = hashlib.sha256(str(root).encode("utf-8")).hexdigest()[:10]
    view = cache_dir(f"{cache_subdir.rstrip('/')}/local/{manifest.name}-{tag}")
    _link_view(view, root, [entry.path for entry in manifest.files])
    return view


def _link_view(view: Path, root: Path, paths: Iterable[str]) -> None:
    """Make ``view`` hold exactly ``paths``, as symbolic links into ``root`` (no copying)."""
    wanted = set(paths)
    view.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(view, topdown=False):
        for name in filenames:
            link = Path(dirpath) / name
            rel = link.relative_to(view).as_posix()
            if rel not in wanted or not (link.is_symlink() and Path(os.readlink(link)) == root / rel):
                link.unlink()
        for name in dirnames:
            sub = Path(dirpath) / name
            if not any(sub.iterdir()):
                sub.rmdir()
    for rel in sorted(wanted):
        link = view / rel
        if link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(root / rel, link)
        except OSError:  # no symlinks (e.g. Windows without the privilege): hard link, else copy
            try:
                os.link(root / rel, link)
            except OSError:
                shutil.copy2(root / rel, link)


def fill_checksums(
    manifest: CalibrationManifest | str | os.PathLike,
    *,
    base_url_override: str | None = None,
    cache_subdir: str = CACHE_SUBDIR,
    quiet: bool = False,
) -> dict[str, Any]:
    """Download every entry without a sha256 (fresh, from the manifest's URLs) and return the
    manifest data with their sha256 and size filled in. Needs the network; run by maintainers."""
    if not isinstance(manifest, CalibrationManifest):
        manifest = load_manifest(manifest)
    base_url = base_url_override or manifest.base_url
    if base_url is not None and not base_url.endswith("/"):
        base_url += "/"
    missing = [e for e in manifest.files if e.sha256 is None]
    subdir = f"{cache_subdir.rstrip('/')}/{manifest.name}"
    filled: dict[str, tuple[str, int]] = {}
    progress = None if quiet or not missing else Progress(len(missing), "downloading files to checksum", unit="file")
    for entry in missing:
        url = _entry_url(entry, base_url, manifest.origin)
        target = cache_dir(subdir) / entry.path
        target.unlink(missing_ok=True)  # never trust an earlier (first-use) copy here
        parent = PurePosixPath(entry.path).parent
        fetch(url, target.name, subdir=subdir if str(parent) == "." else f"{subdir}/{parent}",
              what="calibration image", quiet=True)
        if not _decodes(target):
            target.unlink()
            raise EdgeMobileError(f"{url}: {entry.path} does not decode as an image; not recording its checksum")
        filled[entry.path] = (file_hash(target), target.stat().st_size)
        if progress:
            progress.update()
    if progress:
        progress.close()
    files = tuple(
        dataclasses.replace(e, sha256=filled[e.path][0], size=filled[e.path][1]) if e.path in filled else e
        for e in manifest.files
    )
    return dataclasses.replace(manifest, files=files).to_dict()



__all__ = ["CACHE_SUBDIR", "TOFU_FILE", "fill_checksums", "materialize"]
