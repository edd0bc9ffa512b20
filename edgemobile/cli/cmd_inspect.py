"""``edgemobile inspect MODEL``: where int8 loses accuracy, layer by layer — the converted
model against its float twin on calibration images, weight-range statistics per channel,
and (``--sensitivity``) which layers' weights or activations dominate the output error."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.arguments import (
    add_calibration_flags,
    add_user_model_flags,
    add_zoo_model_flags,
    options_from_args,
    positive_int,
    request_from_args,
)
from edgemobile.cli.console import add_json_flags, check_json, print_notes, write_json


def register(sub, prep) -> None:
    p = sub.add_parser(
        "inspect", help="per-layer int8 quantization error of a model (SQNR, weight ranges, sensitivity)",
        description="Convert a zoo model or your Keras model file to int8 exactly as 'convert --int8' would (same "
        "technique flags) and compare every intermediate tensor with the float model (after the rewrites that keep "
        "its function: BatchNorm folding, equalization, the MobileNetV3 rewrite) on calibration images fed as a "
        "device feeds them: cumulative SQNR (all error up to that tensor), the SQNR its own int8 grid allows, and for conv/dense layers the weight SQNR "
        "and the spread of per-channel weight ranges. Rows name the Keras layer each TFLite op computes. --sensitivity "
        "adds a simulation quantizing one layer's weights or one activation tensor at a time, and measures on the TFLite "
        "interpreter what each Keras layer costs when only it is int8 (every other layer float): the names "
        "--keep-float takes.",
    )
    p.add_argument("model", help="zoo model name, e.g. mobilenet (see 'edgemobile models'), or your saved Keras "
                   "model (.keras/.h5)")
    add_zoo_model_flags(p)
    add_calibration_flags(p)
    add_user_model_flags(p)
    p.add_argument("--images", type=positive_int, default=32,
                   help="calibration images the float/int8 comparison runs on (default 32)")
    p.add_argument("--sensitivity", action="store_true",
                   help="also rank layers by what quantizing each alone costs (simulation) and by what each costs "
                   "when only it is int8 (TFLite; slower)")
    p.add_argument("--sensitivity-images", type=positive_int, default=64,
                   help="images for --sensitivity (default 64)")
    add_json_flags(p, "the full diagnosis")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_json(args)
    result = api.inspect(request_from_args(args), calibration=args.calibration, num_calibration=args.num_calibration,
                         seed=args.seed, techniques=options_from_args(args), images=args.images,
                         sensitivity=args.sensitivity, sensitivity_images=args.sensitivity_images,
                         progress=not args.quiet)
    print_notes(result.notes, result.warnings)
    print(result)
    write_json(args, result.as_dict())
    return 0
