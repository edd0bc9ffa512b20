#!/usr/bin/env python3
"""Build or complete calibration manifests (see calibration/README.md).

Sample your own ImageNet train folder (what ``convert --calibration m.json`` accepts)::

    python calibration/build_manifest.py TRAIN_DIR --per-class 2 --seed 0 -o m.json [--force]

Maintainers, with internet access: record the published sha256 of every entry of the shipped
manifest that has none yet (updates both copies, then commit them)::

    python calibration/build_manifest.py --fill-checksums-from-url [MANIFEST]

Maintainers: regenerate the shipped manifest from a local copy of the public sample in which
some files were downscaled (only files shown to be unmodified get a sha256)::

    python calibration/build_manifest.py --regenerate-shipped-from ../shared/imagenet/calib --force

A thin wrapper over :mod:`edgemobile.cli.calibration`
(``python -m edgemobile.cli.calibration build …`` does the same as the first form).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from edgemobile.cli import calibration as calibration_cli  # noqa: E402
from edgemobile.data import calibration_download, calibration_manifest  # noqa: E402
from edgemobile.data.datasets import class_key, find_images  # noqa: E402
from edgemobile.download import file_hash  # noqa: E402
from edgemobile.errors import EdgeMobileError  # noqa: E402
from edgemobile.outputs import check_output, write_atomic  # noqa: E402

SAMPLE_REPO = "EliSchwartz/imagenet-sample-images"
SAMPLE_COMMIT = "22d0a5c9c5c76d13532da2d29ea7fa2e9e034387"
SAMPLE_BASE_URL = f"https://raw.githubusercontent.com/{SAMPLE_REPO}/{SAMPLE_COMMIT}/"
CANONICAL = HERE.parent / "edgemobile" / "resources" / calibration_manifest.SHIPPED_MANIFEST
CHECKOUT_COPY = HERE / calibration_manifest.SHIPPED_MANIFEST


def shipped_copies(path: Path) -> list[Path]:
    """Both copies of the shipped manifest when ``path`` is one of them, else just ``path``."""
    copies = [CANONICAL, CHECKOUT_COPY]
    if any(path.resolve() == c.resolve() for c in copies if c.exists()):
        return copies
    return [path]


def fill_mode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="build_manifest.py --fill-checksums-from-url")
    parser.add_argument("--fill-checksums-from-url", dest="manifest", nargs="?", const=str(CANONICAL),
                        metavar="MANIFEST", help="manifest to complete (default: the shipped one, both copies)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of updating MANIFEST in place")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    parser.add_argument("--base-url", metavar="URL", help="download from this URL instead of the manifest's base_url")
    args = parser.parse_args(argv)
    source = Path(args.manifest)
    outputs = [Path(args.output)] if args.output else shipped_copies(source)
    for out in outputs:
        check_output(out, force=args.force or out.resolve() == source.resolve() or out in (CANONICAL, CHECKOUT_COPY))
    before = calibration_manifest.load_manifest(source).pinned
    data = calibration_download.fill_checksums(source, base_url_override=args.base_url)
    text = calibration_manifest.dump_manifest(data)
    for out in outputs:
        write_atomic(out, text, force=True)
    pinned = sum(f["sha256"] is not None for f in data["files"])
    print(f"wrote {', '.join(map(str, outputs))}: {pinned} of {len(data['files'])} entries pinned (was {before})")
    return 0


def _pillow_q92_tables() -> dict[str, dict]:
    from PIL import Image

    tables = {}
    for mode in ("RGB", "L"):
        buf = io.BytesIO()
        Image.new(mode, (16, 16)).save(buf, "JPEG", quality=92)
        tables[mode] = Image.open(io.BytesIO(buf.getvalue())).quantization
    return tables


def is_downscaled_copy(path: Path, tables: dict[str, dict], short_side: int = 320) -> bool:
    """True if ``path`` looks like a file the copy's maker re-encoded: shorter side exactly
    ``short_side``, the quantization tables Pillow writes at quality 92, and no density (dpi)
    marker, which Pillow drops on re-save. Files smaller than ``short_side`` were never
    resized, and the few at exactly ``short_side`` that keep their own tables and dpi are
    originals too."""
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "JPEG" or min(image.size) != short_side:
            return False
        return image.quantization == tables.get(image.mode) and "dpi" not in image.info


def regenerate_mode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="build_manifest.py --regenerate-shipped-from")
    parser.add_argument("--regenerate-shipped-from", dest="copy", required=True, metavar="DIR",
                        help="a copy of the public one-image-per-class sample (e.g. ../shared/imagenet/calib)")
    parser.add_argument("--force", action="store_true", help="overwrite the existing shipped manifests")
    args = parser.parse_args(argv)
    from edgemobile.data.labels import imagenet_classes

    root = Path(args.copy).resolve()
    for out in (CANONICAL, CHECKOUT_COPY):
        check_output(out, args.force)
    paths = find_images(root)
    classes = [class_key(p, root) for p in paths]
    if sorted(classes) != sorted(imagenet_classes().ids) or any(p.parent != root for p in paths):
        raise EdgeMobileError(f"{root}: expected 1000 files <synset>_<name>.JPEG, one per ImageNet class")
    tables = _pillow_q92_tables()
    files = []
    for path, key in zip(paths, classes):
        original = not is_downscaled_copy(path, tables)
        files.append({
            "path": path.name,
            "sha256": file_hash(path) if original else None,
            "size": path.stat().st_size if original else None,
            "class": key,
        })
    pinned = sum(f["sha256"] is not None for f in files)
    data = {
        "format": calibration_manifest.FORMAT,
        "version": calibration_manifest.VERSION,
        "name": "imagenet_sample_1000",
        "description": "1000 ImageNet-1k training images, one per class (the public ImageNet sample "
        f"images); {pinned} entries carry the published file's sha256, the other {len(files) - pinned} "
        "are accepted on first use until a maintainer runs build_manifest.py --fill-checksums-from-url",
        "source": f"https://github.com/{SAMPLE_REPO} at commit {SAMPLE_COMMIT} (ILSVRC2012 training "
        "images; ImageNet terms of access: research use)",
        "base_url": SAMPLE_BASE_URL,
        "files": files,
    }
    text = calibration_manifest.dump_manifest(data)
    for out in (CANONICAL, CHECKOUT_COPY):
        write_atomic(out, text, force=args.force)
    print(f"wrote {CANONICAL} and {CHECKOUT_COPY}: {len(files)} entries, {pinned} pinned")
    return 0


def build_mode(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="build_manifest.py",
        description="Sample K images per class from an ImageNet train folder into a calibration manifest.",
        epilog="Other modes: --fill-checksums-from-url [MANIFEST], --regenerate-shipped-from DIR "
        "(see calibration/README.md).",
    )
    calibration_cli.add_build_arguments(parser)
    return calibration_cli.run_build(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--fill-checksums-from-url" or a.startswith("--fill-checksums-from-url=") for a in argv):
        return fill_mode(argv)
    if any(a == "--regenerate-shipped-from" or a.startswith("--regenerate-shipped-from=") for a in argv):
        return regenerate_mode(argv)
    return build_mode(argv)


if __name__ == "__main__":
    sys.exit(calibration_cli.run(main))
