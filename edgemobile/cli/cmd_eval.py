"""``edgemobile eval MODEL --data DIR [--reference OTHER]``: top-1/top-5 with 95 % intervals,
and against a reference the paired difference, agreement and output distance."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.arguments import add_cluster_flags, cluster_kwargs, positive_int, preprocessing_overrides
from edgemobile.cli.console import add_json_flags, check_json, write_json
from edgemobile.errors import BadImageError, EdgeMobileError


def register(sub, prep) -> None:
    p = sub.add_parser("eval", parents=[prep],
                       help="top-1/top-5 on ImageNet-style data, optionally against a reference",
                       description="Evaluate a .tflite model (or a zoo model's float Keras model) on labeled images.")
    p.add_argument("model", help=".tflite file, or a zoo model name for the float Keras model")
    p.add_argument("--data", required=True, help="image folder: synset subfolders, <synset>_*.JPEG files, "
                   "or a flat folder with --ground-truth")
    p.add_argument("--ground-truth", help="labels for a flat folder: 'name index' lines or CSV filename,label")
    p.add_argument("--reference", help="compare with this: a .tflite file, a zoo model name (float Keras model), "
                   "or an --outputs .npz file of another run (image by image: a device against the host)")
    p.add_argument("--outputs", help="also write every image's raw output, with its id, to this .npz file "
                   "(a later eval takes it as --reference)")
    p.add_argument("--reference-weights", default=None,
                   help="weights for a zoo --reference: 'imagenet' (default), 'none' or a file")
    p.add_argument("--alpha", type=float, help="alpha of a zoo model (default: from the model's metadata)")
    p.add_argument("--resolution", type=int, help="resolution of a zoo model (default: from the model's metadata)")
    p.add_argument("--limit", type=positive_int, help="evaluate only N images, drawn stratified across classes")
    p.add_argument("--seed", type=int, default=0, help="seed for --limit (default 0)")
    add_json_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--skip-bad-images", action="store_true", help="leave out images that cannot be decoded "
                   "(counted and listed in --json; metrics over the rest) instead of stopping at the first")
    add_cluster_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_json(args)
    try:
        result = api.evaluate(args.model, args.data, args.reference, ground_truth=args.ground_truth,
                              limit=args.limit, seed=args.seed, alpha=args.alpha, resolution=args.resolution,
                              reference_weights=args.reference_weights, skip_bad_images=args.skip_bad_images,
                              outputs=args.outputs, force=args.force, progress=not args.quiet,
                              **cluster_kwargs(args), **preprocessing_overrides(args))
    except BadImageError as exc:
        raise EdgeMobileError(f"{exc}; stopped there — pass --skip-bad-images to evaluate the other images") from None
    print(result)
    if args.outputs:
        print(f"wrote {args.outputs} ({len(result.outputs.ids)} images' raw outputs)")
    write_json(args, result.as_dict())
    return 0
