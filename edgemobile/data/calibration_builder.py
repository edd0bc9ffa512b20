"""Making a calibration manifest from the user's own ImageNet train folder: K images per class,
sampled reproducibly, with their sha256 and size (what ``convert --calibration m.json`` reads).

Runtime code: no TensorFlow.
"""

from __future__ import annotations

import os
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from edgemobile.data.calibration_manifest import FORMAT, VERSION, validate_manifest
from edgemobile.data.datasets import class_key, find_images
from edgemobile.download import file_hash
from edgemobile.errors import EdgeMobileError
from edgemobile.progress import Progress


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


__all__ = ["build_manifest"]
