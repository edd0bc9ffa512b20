"""``python -m edgemobile.cli.calibration build|fetch|fill-checksums``: calibration manifests
from the command line (see ``calibration/README.md``)::

    python -m edgemobile.cli.calibration build TRAIN_DIR --per-class 2 --seed 0 -o m.json
    python -m edgemobile.cli.calibration fetch [MANIFEST]      # download + verify now
    python -m edgemobile.cli.calibration fill-checksums [MANIFEST]

``calibration/build_manifest.py`` reuses :func:`add_build_arguments` and :func:`run_build`.
"""

from __future__ import annotations

import argparse
import sys

from edgemobile.data.calibration_builder import build_manifest
from edgemobile.data.calibration_download import fill_checksums, materialize
from edgemobile.data.calibration_manifest import (
    check_url,
    dump_manifest,
    load_manifest,
    shipped_manifest,
)
from edgemobile.errors import EdgeMobileError
from edgemobile.outputs import check_output, write_atomic


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build`` arguments (TRAIN_DIR, --per-class, --seed, -o, --force, --name, --description, --base-url)."""
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
    """Build a manifest as ``args`` (from :func:`add_build_arguments`) say and write it; exit status 0."""
    check_output(args.output, args.force)
    if args.base_url is not None:
        check_url(args.base_url, "--base-url", "--base-url")
    data = build_manifest(args.train_dir, per_class=args.per_class, seed=args.seed, name=args.name,
                          base_url=args.base_url, description=args.description)
    write_atomic(args.output, dump_manifest(data), force=args.force)
    selection = data["selection"]
    fewer = f"; {selection['classes_with_fewer']} classes had fewer than {args.per_class} images" if selection["classes_with_fewer"] else ""
    print(f"wrote {args.output}: {len(data['files'])} images from {selection['classes']} classes{fewer}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``build``/``fetch``/``fill-checksums`` command line; raises EdgeMobileError (see :func:`run`)."""
    parser = argparse.ArgumentParser(prog="python -m edgemobile.cli.calibration",
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


def run(main, argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` printing EdgeMobileError as one line (exit status 2)."""
    try:
        return main(argv)
    except EdgeMobileError as exc:
        print(f"edgemobile: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(main))
