"""``edgemobile predict MODEL IMAGE…``: softmax and the top-k classes, with names, per image."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.arguments import positive_int, preprocessing_overrides
from edgemobile.cli.console import add_json_flags, check_json, write_json


def register(sub, prep) -> None:
    p = sub.add_parser("predict", parents=[prep], help="classify images: top-k classes with probabilities",
                       description="Softmax + top-k with class names for each image.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to show per image (default 5)")
    add_json_flags(p, "the predictions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_json(args)
    result = api.predict(args.model, args.images, args.top_k, **preprocessing_overrides(args))
    print(result)
    write_json(args, dict(result.as_dict(), model=str(args.model)))
    return 0
