"""``edgemobile inspect MODEL``: where int8 loses accuracy, layer by layer — the converted
model against its float twin on calibration images, weight-range statistics per channel,
and (``--sensitivity``) which layers' weights or activations dominate the output error."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub, prep) -> None:
    from edgemobile.cli.arguments import positive_int
    from edgemobile.cli.main import add_calibration_flags, add_user_model_flags, add_zoo_model_flags

    p = sub.add_parser(
        "inspect", help="per-layer int8 quantization error of a model (SQNR, weight ranges, sensitivity)",
        description="Convert a zoo model or your Keras model file to int8 exactly as 'convert --int8' would (same technique flags) and "
        "compare every intermediate tensor with the float model (after the rewrites that keep its function: BatchNorm "
        "folding, equalization, the MobileNetV3 rewrite) on calibration images fed as a device feeds them: cumulative SQNR (all "
        "error up to that tensor), the SQNR its own int8 grid allows, and for conv/dense layers the weight SQNR "
        "and the spread of per-channel weight ranges. --sensitivity adds a simulation quantizing one layer's "
        "weights or one activation tensor at a time, ranking the layers that dominate the output error.",
    )
    p.add_argument("model", help="zoo model name, e.g. mobilenet (see 'edgemobile models'), or your saved Keras "
                   "model (.keras/.h5)")
    add_zoo_model_flags(p)
    add_calibration_flags(p)
    add_user_model_flags(p)
    p.add_argument("--images", type=positive_int, default=32,
                   help="calibration images the float/int8 comparison runs on (default 32)")
    p.add_argument("--sensitivity", action="store_true",
                   help="also rank layers by what quantizing each alone costs (simulation; slower)")
    p.add_argument("--sensitivity-images", type=positive_int, default=64,
                   help="images for --sensitivity (default 64)")
    p.add_argument("--json", help="also write the full diagnosis to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from edgemobile import api
    from edgemobile.cli.main import model_kwargs, options_from_args
    from edgemobile.outputs import check_output, write_atomic
    from edgemobile.quantization.inspect import diagnose, format_diagnosis

    if args.json:
        check_output(args.json, args.force)
    options = options_from_args(args)
    variant, weights, calibration = api.conversion_inputs(
        args.model, "int8", calibration=args.calibration, num_calibration=args.num_calibration, seed=args.seed,
        **model_kwargs(args))
    api.quiet_tensorflow()
    with api.quiet_keras():
        result = diagnose(variant, weights, calibration, options, images=args.images,
                          sensitivity_images=args.sensitivity_images if args.sensitivity else 0,
                          progress=not args.quiet)
    for note in result["notes"]:
        print(f"edgemobile: {note}", file=sys.stderr)
    for note in api.skipped_techniques(result["conversion"]):
        print(f"edgemobile: warning: {note}", file=sys.stderr)
    print(format_diagnosis(result))
    if args.json:
        write_atomic(args.json, json.dumps(result, indent=2) + "\n", force=args.force)
    return 0
