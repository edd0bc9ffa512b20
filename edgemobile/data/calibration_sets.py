"""Calibration image sets: manifests, the default ImageNet sample, and a manifest builder.

A *calibration manifest* (JSON, described in ``calibration/README.md``) lists image files by
relative path with their sha256 and size. It is either

- *hosted*: ``base_url`` (or a per-entry ``url``) says where each file is downloaded from; the
  files are fetched once into ``$KERAS_HOME/datasets/edgemobile-calibration/<name>/`` through
  :func:`edgemobile.download.fetch` and verified, or
- *local*: built by :func:`build_manifest` from the user's own ImageNet train folder; ``root``
  says where the files are, and they are verified there (never copied).

The default set (``convert`` without ``--calibration``) is the shipped manifest
``edgemobile/resources/imagenet_sample_1000.json``: one public ImageNet training image per
class. Entries whose published sha256 is not known yet carry ``"sha256": null``; they are
accepted on first use (they must decode as images) and their sha256 is recorded in
``tofu-sha256.json`` beside them and checked on every later run.

Public API: :func:`load_manifest`, :func:`validate_manifest`, :func:`materialize`,
:func:`default_calibration_folder`, :func:`resolve_calibration`, :func:`build_manifest`,
:func:`fill_checksums`, :func:`dump_manifest`. Command line::

    python -m edgemobile.data.calibration_sets build TRAIN_DIR --per-class 2 --seed 0 -o m.json
    python -m edgemobile.data.calibration_sets fetch [MANIFEST]      # download + verify now
    python -m edgemobile.data.calibration_sets fill-checksums [MANIFEST]

Runtime code: no TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import sys
import urllib.parse
from collections import defaultdict
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from edgemobile.data.datasets import class_key, find_images
from edgemobile.download import cache_dir, fetch, file_hash
from edgemobile.errors import EdgeMobileError
from edgemobile.inputs import reading
from edgemobile.outputs import check_output, write_atomic
from edgemobile.progress import Progress

FORMAT = "edgemobile-calibration-manifest"
VERSION = 1
SHIPPED_MANIFEST = "imagenet_sample_1000.json"
CACHE_SUBDIR = "datasets/edgemobile-calibration"
TOFU_FILE = "tofu-sha256.json"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_KNOWN_ENTRY_KEYS = ("path", "sha256", "size", "class", "url")


# --------------------------------------------------------------------------- manifests


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One file of a calibration set; ``sha256``/``size`` are None when not known yet."""

    path: str
    sha256: str | None
    size: int | None
    cls: str | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.cls is not None:
            out["class"] = self.cls
        if self.url is not None:
            out["url"] = self.url
        return out


@dataclasses.dataclass(frozen=True)
class CalibrationManifest:
    """A validated manifest. ``origin`` names where it came from (used in every message)."""

    name: str
    files: tuple[ManifestEntry, ...]
    description: str = ""
    source: str = ""
    base_url: str | None = None
    root: str | None = None
    origin: str = "<manifest>"
    extra: tuple[tuple[str, Any], ...] = ()  # other top-level keys, kept on rewrite

    @property
    def pinned(self) -> int:
        """How many entries carry a sha256."""
        return sum(entry.sha256 is not None for entry in self.files)

    def root_path(self) -> Path | None:
        """``root`` as a path; relative roots are relative to the manifest file's folder."""
        if self.root is None:
            return None
        root = Path(self.root).expanduser()
        if not root.is_absolute() and self.origin and not self.origin.startswith("<"):
            root = Path(self.origin).resolve().parent / root
        return root

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "base_url": self.base_url,
        }
        if self.root is not None:
            out["root"] = self.root
        out.update(dict(self.extra))
        out["files"] = [entry.to_dict() for entry in self.files]
        return out


def validate_manifest(data: Any, origin: str = "<manifest>") -> CalibrationManifest:
    """Check a parsed manifest; every problem is a one-line error naming ``origin``."""

    def bad(what: str) -> EdgeMobileError:
        return EdgeMobileError(f"{origin}: {what}")

    if not isinstance(data, dict):
        raise bad(f"not a calibration manifest (expected a JSON object with \"format\": \"{FORMAT}\")")
    if data.get("format") != FORMAT:
        raise bad(f"not a calibration manifest (\"format\" is {data.get('format')!r}, expected {FORMAT!r})")
    if data.get("version") != VERSION:
        raise bad(f"unsupported manifest version {data.get('version')!r} (this edgemobile reads version {VERSION})")
    for key in ("name", "files"):
        if key not in data:
            raise bad(f"missing field {key!r}")
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad(f"\"name\" must be 1-100 letters, digits, '.', '_' or '-' (it names the cache folder), got {name!r}")
    for key in ("description", "source"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise bad(f"\"{key}\" must be a string")
    base_url = data.get("base_url")
    if base_url is not None:
        base_url = _check_url(base_url, origin, "base_url")
        if not base_url.endswith("/"):
            base_url += "/"
    root = data.get("root")
    if root is not None and (not isinstance(root, str) or not root):
        raise bad("\"root\" must be a folder path (string) or null")
    files = data["files"]
    if not isinstance(files, list):
        raise bad("\"files\" must be a list")
    if not files:
        raise bad("\"files\" is empty; a calibration set needs at least one image")
    entries = []
    seen: set[str] = set()
    for i, item in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(item, dict):
            raise bad(f"{where} must be an object with \"path\" and \"sha256\"")
        for key in ("path", "sha256"):
            if key not in item:
                raise bad(f"{where} is missing field {key!r}")
        path = _check_relpath(item["path"], origin, where)
        where = f"{where} ({path})"
        if path in seen:
            raise bad(f"duplicate path {path!r}")
        seen.add(path)
        sha = item["sha256"]
        if sha is not None:
            if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
                raise bad(f"{where}: \"sha256\" must be 64 hex digits or null, got {sha!r}")
            sha = sha.lower()
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise bad(f"{where}: \"size\" must be a byte count or null, got {size!r}")
        cls = item.get("class")
        if cls is not None and not isinstance(cls, str):
            raise bad(f"{where}: \"class\" must be a string")
        url = item.get("url")
        if url is not None:
            url = _check_url(url, origin, f"{where} url")
        entries.append(ManifestEntry(path=path, sha256=sha, size=size, cls=cls, url=url))
    known = {"format", "version", "name", "description", "source", "base_url", "root", "files"}
    extra = tuple((k, v) for k, v in data.items() if k not in known)
    return CalibrationManifest(
        name=name,
        files=tuple(entries),
        description=data.get("description") or "",
        source=data.get("source") or "",
        base_url=base_url,
        root=root,
        origin=origin,
        extra=extra,
    )


def load_manifest(path: str | os.PathLike) -> CalibrationManifest:
    """Read and validate a manifest file (one-line errors naming the file)."""
    path = Path(path)
    try:
        with reading(path, "calibration manifest"):
            text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise EdgeMobileError(f"{path}: not a JSON calibration manifest (not UTF-8 text)") from None
    return _parse(text, str(path))


def _parse(text: str, origin: str) -> CalibrationManifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgeMobileError(
            f"{origin}: not a JSON calibration manifest ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    return validate_manifest(data, origin)


def shipped_manifest() -> CalibrationManifest:
    """The default calibration set's manifest, shipped as package data."""
    ref = resources.files("edgemobile.resources").joinpath(SHIPPED_MANIFEST)
    return _parse(ref.read_text(encoding="utf-8"), str(ref))


def dump_manifest(manifest: CalibrationManifest | dict[str, Any]) -> str:
    """Manifest JSON with one file entry per line (diff-friendly), validated first."""
    data = manifest.to_dict() if isinstance(manifest, CalibrationManifest) else manifest
    validate_manifest(data, "<manifest to write>")
    head = {k: v for k, v in data.items() if k != "files"}
    lines = ["{"]
    for key, value in head.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append('  "files": [')
    entries = [json.dumps(e, ensure_ascii=False) for e in data["files"]]
    lines.extend(f"    {e}," for e in entries[:-1])
    lines.append(f"    {entries[-1]}")
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _check_relpath(path: Any, origin: str, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise EdgeMobileError(f"{origin}: {where} \"path\" must be a non-empty string")
    pure = PurePosixPath(path)
    if (
        "\\" in path
        or "\0" in path
        or pure.is_absolute()
        or re.match(r"^[A-Za-z]:", path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise EdgeMobileError(
            f"{origin}: {where} path {path!r} must be relative with '/' separators and no '.', '..' or empty parts"
        )
    if any(len(part.encode("utf-8")) > 255 for part in path.split("/")):
        raise EdgeMobileError(f"{origin}: {where} path {path[:60]!r}… has a part longer than 255 bytes (a file name "
                              "no file system accepts)")
    return path


def _check_url(url: Any, origin: str, what: str) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise EdgeMobileError(f"{origin}: {what} must be an http(s):// or file:// URL, got {url!r}")
    return url


# --------------------------------------------------------------------------- materialize


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
        base = _check_url(base_url_override, "base_url_override", "base_url_override")
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
            isinstance(r, dict) and isinstance(r.get("sha256"), str) and _SHA256.match(r["sha256"])
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


# --------------------------------------------------------------------------- entry points


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


def build_manifest(
    root: str | os.PathLike,
    per_class: int = 1,
    seed: int = 0,
    name: str | None = None,
    *,
    base_url: str | None = None,
    description: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Pick ``per_class`` images of every class under ``root`` and describe them as a manifest.

    ``root`` is an ImageNet train folder (``n01440764/…JPEG`` subfolders) or a flat folder of
    ``<synset>_*.JPEG`` files. Each class is sampled with its own ``random.Random(f"{seed}/{class}")``
    from its sorted file list, so the choice for one class does not depend on the others.
    """
    if per_class <= 0:
        raise EdgeMobileError(f"--per-class must be positive, got {per_class}")
    root = Path(root).expanduser().resolve()
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in find_images(root):
        groups[class_key(path, root)].append(path)
    if set(groups) == {""}:
        raise EdgeMobileError(
            f"{root}: no classes found; expected synset subfolders (n01440764/…) or files named <synset>_*.JPEG"
        )
    chosen: list[tuple[Path, str]] = []
    for key in sorted(groups):
        files = sorted(groups[key])
        rng = random.Random(f"{seed}/{key}")
        chosen.extend((p, key) for p in sorted(rng.sample(files, min(per_class, len(files)))))
    chosen.sort(key=lambda item: item[0].relative_to(root).as_posix())
    progress = None if quiet else Progress(len(chosen), "hashing calibration images", unit="file")
    entries = []
    for path, key in chosen:
        entry: dict[str, Any] = {
            "path": path.relative_to(root).as_posix(),
            "sha256": file_hash(path),
            "size": path.stat().st_size,
        }
        if key:
            entry["class"] = key
        entries.append(entry)
        if progress:
            progress.update()
    if progress:
        progress.close()
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{root.name}-k{per_class}-seed{seed}").lstrip("._-") or "calibration"
    short = sum(len(groups[k]) < per_class for k in groups)
    data = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "description": description
        or f"{len(entries)} images, {per_class} per class from {len(groups)} classes, seed {seed}",
        "source": str(root),
        "base_url": base_url,
        "root": str(root),
        "selection": {"per_class": per_class, "seed": seed, "classes": len(groups), "classes_with_fewer": short},
        "files": entries,
    }
    validate_manifest(data, f"manifest built from {root}")
    return data


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


# --------------------------------------------------------------------------- command line


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("train_dir", metavar="TRAIN_DIR",
                        help="ImageNet train folder (synset subfolders) or a flat folder of <synset>_*.JPEG files")
    parser.add_argument("--per-class", type=int, default=1, metavar="K", help="images per class (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="manifest to write (.json)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--name", help="set name (names its cache folder); default <folder>-k<K>-seed<S>")
    parser.add_argument("--description", help="free text stored in the manifest")
    parser.add_argument("--base-url", metavar="URL",
                        help="where a hosted copy of TRAIN_DIR is served (files at URL + relative path)")


def run_build(args: argparse.Namespace) -> int:
    check_output(args.output, args.force)
    if args.base_url is not None:
        _check_url(args.base_url, "--base-url", "--base-url")
    data = build_manifest(args.train_dir, per_class=args.per_class, seed=args.seed, name=args.name,
                          base_url=args.base_url, description=args.description)
    write_atomic(args.output, dump_manifest(data), force=args.force)
    selection = data["selection"]
    fewer = f"; {selection['classes_with_fewer']} classes had fewer than {args.per_class} images" if selection["classes_with_fewer"] else ""
    print(f"wrote {args.output}: {len(data['files'])} images from {selection['classes']} classes{fewer}")
    return 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgemobile.data.calibration_sets",
                                     description="Calibration image sets for edgemobile convert.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_arguments(sub.add_parser("build", help="sample a manifest from your own ImageNet train folder"))
    fetch_p = sub.add_parser("fetch", help="download and verify a set now (default: the shipped ImageNet sample)")
    fetch_p.add_argument("manifest", nargs="?", help="manifest .json (default: the shipped one)")
    fetch_p.add_argument("--base-url", metavar="URL", help="download from this mirror instead")
    fetch_p.add_argument("--local-root", metavar="DIR", help="verify the files in DIR instead of downloading")
    fill_p = sub.add_parser("fill-checksums", help="download entries with a null sha256 and record their checksums")
    fill_p.add_argument("manifest", help="manifest .json to complete")
    fill_p.add_argument("-o", "--output", metavar="FILE", help="write here instead of updating MANIFEST in place")
    fill_p.add_argument("--force", action="store_true", help="overwrite an existing --output")
    fill_p.add_argument("--base-url", metavar="URL", help="download from this URL instead of the manifest's base_url")
    args = parser.parse_args(argv)
    if args.command == "build":
        return run_build(args)
    if args.command == "fetch":
        manifest = load_manifest(args.manifest) if args.manifest else shipped_manifest()
        print(materialize(manifest, base_url_override=args.base_url, local_root=args.local_root))
        return 0
    out = args.output or args.manifest
    check_output(out, force=args.force or out == args.manifest)
    data = fill_checksums(args.manifest, base_url_override=args.base_url)
    write_atomic(out, dump_manifest(data), force=True)
    pinned = sum(f["sha256"] is not None for f in data["files"])
    print(f"wrote {out}: {pinned} of {len(data['files'])} entries have a sha256")
    return 0


def cli(main, argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` printing EdgeMobileError as one line (exit status 2)."""
    try:
        return main(argv)
    except EdgeMobileError as exc:
        print(f"edgemobile: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli(_main))
