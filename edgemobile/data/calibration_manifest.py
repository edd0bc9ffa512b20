"""Calibration manifests: the JSON format that lists a calibration set's image files by
relative path with their sha256 and size (described in ``calibration/README.md``), read,
validated and written.

A manifest is either *hosted* (``base_url`` or a per-entry ``url`` says where each file is
downloaded from) or *local* (``root`` says where the files are); entries whose sha256 is not
known yet carry ``"sha256": null`` (trust on first use, :mod:`edgemobile.data.calibration_download`).
The default set's manifest, ``edgemobile/resources/imagenet_sample_1000.json``, ships as
package data (:func:`shipped_manifest`).

Runtime code: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.parse
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from edgemobile.errors import EdgeMobileError
from edgemobile.inputs import reading

FORMAT = "edgemobile-calibration-manifest"
VERSION = 1
SHIPPED_MANIFEST = "imagenet_sample_1000.json"

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_KNOWN_ENTRY_KEYS = ("path", "sha256", "size", "class", "url")




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
        base_url = check_url(base_url, origin, "base_url")
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
            if not isinstance(sha, str) or not SHA256_HEX.match(sha.lower()):
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
            url = check_url(url, origin, f"{where} url")
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
    return parse_manifest(text, str(path))


def parse_manifest(text: str, origin: str) -> CalibrationManifest:
    """Parse and validate manifest JSON ``text``; ``origin`` names it in every message."""
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
    return parse_manifest(ref.read_text(encoding="utf-8"), str(ref))


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


def check_url(url: Any, origin: str, what: str) -> str:
    """``url`` if it is an http(s):// or file:// URL, else a one-line error naming ``origin`` and ``what``."""
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise EdgeMobileError(f"{origin}: {what} must be an http(s):// or file:// URL, got {url!r}")
    return url



__all__ = [
    "FORMAT",
    "SHIPPED_MANIFEST",
    "VERSION",
    "CalibrationManifest",
    "ManifestEntry",
    "check_url",
    "dump_manifest",
    "load_manifest",
    "parse_manifest",
    "shipped_manifest",
    "validate_manifest",
]
