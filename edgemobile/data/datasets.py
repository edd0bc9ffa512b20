"""Finding images and their labels on disk.

Layouts understood (the ones ImageNet users have):
- synset subfolders, any depth: ``val/n01440764/ILSVRC2012_val_00000293.JPEG`` (the folder
  name is the label) — also how an ImageNet *train* folder looks;
- class-name subfolders (``flowers/train/daisy/*.jpg``) for models with their own labels:
  the folder name is the label, matched case- and whitespace-insensitively; a folder naming
  one of the model's classes beats a synset file-name prefix (``daisy/n01440764_x.JPEG``);
- one flat folder of files named ``<synset>_<anything>.JPEG`` (the label is the prefix,
  e.g. the public one-image-per-class sample ``n01440764_tench.JPEG``);
- a flat folder plus a ground-truth file: caffe-style ``name index`` lines
  (``val.txt``) or CSV ``filename,label`` (label = class index or synset id).

Evaluation needs labels that name the model's classes; calibration needs none (they only
stratify the draw), so calibration images of other classes get a warning, not an error.

Runtime code: no TensorFlow.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections import defaultdict
from pathlib import Path

from edgemobile.data.labels import ClassList, label_key
from edgemobile.errors import EdgeMobileError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm"})
_SYNSET = re.compile(r"^(n\d{8})(?:_|$)")


def find_images(root: str | os.PathLike) -> list[Path]:
    """Every image file below ``root`` (recursive, hidden entries skipped), sorted."""
    root = Path(root)
    if not root.exists():
        raise EdgeMobileError(f"{root}: no such folder")
    if not root.is_dir():
        raise EdgeMobileError(f"{root}: is not a folder of images")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        )
    if not found:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise EdgeMobileError(f"{root}: no images found (searched recursively for {exts})")
    return sorted(found)


def class_key(path: Path, root: Path, classes: ClassList | None = None) -> str:
    """The class an image belongs to: its synset folder, else its synset file-name prefix,
    else its parent folder relative to ``root`` ("" for a flat folder of unlabeled files).
    With the model's ``classes``, a parent folder naming one of them beats a file-name prefix
    (``daisy/n01440764_x.JPEG`` is a daisy: the user sorted it there)."""
    for part in reversed(path.relative_to(root).parts[:-1]):
        if _SYNSET.match(part):
            return part
    parent = path.parent.relative_to(root)
    parent = "" if str(parent) == "." else str(parent)
    if classes is not None and class_index(parent, classes) is not None:
        return parent
    match = _SYNSET.match(path.name)
    return match.group(1) if match else parent


def stratified_sample(paths: list[Path], root: str | os.PathLike, n: int, seed: int = 0) -> list[Path]:
    """``n`` images spread evenly over classes: shuffle each class and the class order with
    ``seed``, then take one image per class per round until ``n`` are drawn."""
    if n <= 0:
        raise EdgeMobileError(f"the number of calibration images must be positive, got {n}")
    root = Path(root)
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        groups[class_key(path, root)].append(path)
    rng = random.Random(seed)
    classes = sorted(groups)
    rng.shuffle(classes)
    for key in classes:
        rng.shuffle(groups[key])
    chosen: list[Path] = []
    depth = 0
    while len(chosen) < min(n, len(paths)):
        for key in classes:
            if depth < len(groups[key]):
                chosen.append(groups[key][depth])
                if len(chosen) == n:
                    break
        depth += 1
    return chosen


def limit_pairs(pairs: list[tuple[Path, int]], root: str | os.PathLike, limit: int | None,
                seed: int = 0) -> list[tuple[Path, int]]:
    """``pairs`` cut to ``limit`` images drawn by :func:`stratified_sample` (all of them when
    ``limit`` is None or not smaller), in their original order — eval's and report's ``--limit``."""
    if not limit or limit >= len(pairs):
        return pairs
    chosen = set(stratified_sample([p for p, _ in pairs], root, limit, seed))
    return [pair for pair in pairs if pair[0] in chosen]


def labeled_images(
    root: str | os.PathLike, classes: ClassList, ground_truth: str | os.PathLike | None = None
) -> list[tuple[Path, int]]:
    """(image path, class index) pairs for an evaluation folder; see the module docstring."""
    root = Path(root)
    if ground_truth is not None:
        return _from_ground_truth(root, Path(ground_truth), classes)
    pairs = []
    unknown: set[str] = set()
    for path in find_images(root):
        key = class_key(path, root, classes)
        index = class_index(key, classes)
        if index is None:
            unknown.add(key or path.name)
        else:
            pairs.append((path, index))
    if unknown:
        raise EdgeMobileError(_unknown_classes_message(root, unknown, classes) +
                              "; use folders named by class (or synset) or pass --ground-truth FILE")
    return pairs


def image_labels(paths, root: str | os.PathLike, classes: ClassList) -> list[int] | None:
    """Class indices of ``paths`` (named or foldered by class under ``root``, as
    :func:`labeled_images` reads them), or None when any image's class is not one of ``classes``."""
    indices = [class_index(class_key(Path(p), Path(root), classes), classes) for p in paths]
    return None if any(i is None for i in indices) else indices


def class_index(key: str, classes: ClassList) -> int | None:
    """The output index :func:`class_key` ``key`` names: the synset or the whole relative
    folder, else its last folder (``train/Daisy`` → ``daisy``), matched case- and
    whitespace-insensitively (:meth:`ClassList.index_of`)."""
    if not key:
        return None
    index = classes.index_of(key)
    return index if index is not None else classes.index_of(Path(key).name)


def folder_classes(root: str | os.PathLike) -> ClassList | None:
    """The classes of a class-name folder layout (``flowers/train/daisy/*.jpg``): the image
    folders' names, sorted as ``keras.utils.image_dataset_from_directory`` orders them
    (its integer labels are then the model's output indices). None when the images are
    not in class folders (flat folder, or synset-labelled)."""
    root = Path(root)
    keys = {class_key(path, root) for path in find_images(root)}
    if "" in keys or any(_SYNSET.match(Path(k).name) or _SYNSET.match(k) for k in keys):
        return None
    names = sorted({Path(k).name for k in keys})
    clashes = _clashes(names)
    if clashes:
        raise EdgeMobileError(f"{root}: class folders {', '.join(clashes)} differ only in case or spacing; "
                              "rename one so every class has one folder name")
    return ClassList.from_names(names)


def calibration_warning(root: str | os.PathLike, paths, classes: ClassList) -> str | None:
    """One line when calibration images (``paths`` below ``root``) are labelled as classes
    the model does not have, else None. Not an error: calibration needs no labels (they only
    stratify the draw), and images of other classes calibrate the ranges too."""
    root = Path(root)
    keys = [class_key(Path(p), root, classes) for p in paths]
    unknown = [k for k in keys if k and class_index(k, classes) is None]
    if not unknown:
        return None
    names = sorted(set(unknown))
    if all(_SYNSET.match(Path(k).name) for k in names):
        what = "ImageNet synsets"
    else:
        what = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
    return (f"calibration: {len(unknown)} of the {len(keys)} images in {root} name no class of the model ({what}); "
            "they calibrate ranges too, but images of your classes calibrate better")


def _clashes(names: list[str]) -> list[str]:
    seen: dict[str, list[str]] = defaultdict(list)
    for name in names:
        seen[label_key(name)].append(name)
    return [name for group in seen.values() if len(group) > 1 for name in group]


def _unknown_classes_message(root: Path, unknown: set[str], classes: ClassList) -> str:
    shown = sorted(unknown)
    listed = ", ".join(shown[:10]) + (f" (+{len(shown) - 10} more)" if len(shown) > 10 else "")
    known = ""
    if len(classes) <= 20:
        known = f"; the model's classes are {', '.join(classes.label_lines())}"
    return (f"{root}: {len(unknown)} image folder(s)/file(s) do not name a class of the model: "
            f"{listed}{known}")


def _from_ground_truth(root: Path, gt_file: Path, classes: ClassList) -> list[tuple[Path, int]]:
    if not gt_file.is_file():
        raise EdgeMobileError(f"{gt_file}: ground-truth file not found")
    try:
        text = gt_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise EdgeMobileError(f"{gt_file}: not a text file (expected 'name index' lines or CSV filename,label)") from None
    rows: list[tuple[str, str]] = []
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and "," in lines[0]:
        reader = csv.reader(lines)
        for lineno, row in enumerate(reader, 1):
            if lineno == 1 and row and row[0].strip().lower() in ("filename", "file", "image", "path", "name"):
                continue  # header
            if len(row) < 2:
                raise EdgeMobileError(f"{gt_file}:{lineno}: expected 'filename,label', got {','.join(row)!r}")
            rows.append((row[0].strip(), row[1].strip()))
    else:
        for lineno, line in enumerate(lines, 1):
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise EdgeMobileError(f"{gt_file}:{lineno}: expected 'name index', got {line!r}")
            rows.append((parts[0], parts[1]))
    if not rows:
        raise EdgeMobileError(f"{gt_file}: no ground-truth entries")
    pairs = []
    for lineno, (name, label) in enumerate(rows, 1):
        if label.lstrip("-").isdigit():
            index = int(label)
            if not 0 <= index < len(classes):
                raise EdgeMobileError(f"{gt_file}: label {index} for {name} is outside 0..{len(classes) - 1}")
        else:
            found = classes.index_of(label)
            if found is None:
                raise EdgeMobileError(f"{gt_file}: label {label!r} for {name} is not a class of the model")
            index = found
        path = root / name
        if not path.is_file():
            raise EdgeMobileError(f"{gt_file}: {name} is listed but {path} does not exist")
        pairs.append((path, index))
    return pairs
