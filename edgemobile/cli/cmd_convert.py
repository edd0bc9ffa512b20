"""``edgemobile convert --model NAME|FILE.keras [--int8|--uint8|…]``: a zoo model or your Keras
model to a verified .tflite (``--android``: an Android asset folder, as ``bundle`` makes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemobile import api
from edgemobile.cli.arguments import (
    add_calibration_flags,
    add_user_model_flags,
    add_zoo_model_flags,
    add_target_flags,
    candidates_shown,
    options_from_args,
    request_from_args,
    target_kwargs,
)
from edgemobile.cli.cmd_bundle import bundle_model
from edgemobile.cli.console import print_notes
from edgemobile.deploy.bundle import android_precision

PRECISION_FLAGS = (("float32", "float32 model (default)"), ("float16", "float16 weights"),
                   ("dynamic", "dynamic-range: int8 weights, float activations"),
                   ("int8", "full integer, int8 input and output"),
                   ("uint8", "full integer, uint8 input and output (Android/MediaPipe/Coral)"))


def register(sub, prep) -> None:
    p = sub.add_parser("convert", help="convert a zoo model or your Keras model to .tflite "
                       "(float32/float16/dynamic/int8/uint8)",
                       description="Build a zoo model with its weights (or load your saved Keras model) and convert "
                       "it to TFLite. Full-integer models are calibrated with the model's own preprocessing and "
                       "checked to be all-integer.")
    p.add_argument("--model", required=True, help="zoo model name, e.g. mobilenet (see 'edgemobile models'), "
                   "or a saved Keras model file (.keras, full-model .h5)")
    add_zoo_model_flags(p)
    add_user_model_flags(p)
    precision = p.add_mutually_exclusive_group()
    for name, text in PRECISION_FLAGS:
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name, help=text)
    add_calibration_flags(p)
    add_target_flags(p)
    p.add_argument("-o", "--output", help="output file (default: <model>_<alpha>_<resolution>_<precision>.tflite)")
    p.add_argument("--android", action="store_true", help="write an Android asset bundle folder instead "
                   "(.tflite + labels.txt, MediaPipe-checked; uint8 unless --float32; -o names the folder)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, precision=None)


def run(args: argparse.Namespace) -> int:
    if args.android:
        precision = android_precision(args.precision)
        out = args.output or api.default_output(args.model, precision, args.alpha,
                                                args.resolution).removesuffix(".tflite")
        return bundle_model(args, out)
    precision = args.precision or "float32"
    output = Path(args.output or api.default_output(args.model, precision, args.alpha, args.resolution))
    with candidates_shown():
        result = api.convert(request_from_args(args), precision, calibration=args.calibration,
                             num_calibration=args.num_calibration, seed=args.seed, techniques=options_from_args(args),
                             output=output, force=args.force, progress=not args.quiet, **target_kwargs(args))
    if result.search is not None:
        print(result.search.table())
    print_notes(result.notes, result.warnings)
    print(f"wrote {output} ({result.summary})")
    return 0
