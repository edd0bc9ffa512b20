"""``edgemobile bundle MODEL --out android_assets/NAME``: an Android asset folder
(``NAME.tflite`` with TFLite Metadata + ``labels.txt``) from a zoo model or an
edgemobile-made .tflite (``edgemobile convert --android`` prints its result the same way)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemobile import api
from edgemobile.cli.arguments import (
    add_calibration_flags,
    add_user_model_flags,
    add_target_flags,
    candidates_shown,
    options_from_args,
    request_from_args,
    target_kwargs,
    technique_flags,
)
from edgemobile.cli.console import print_notes
from edgemobile.errors import EdgeMobileError
from edgemobile.networks.user import is_model_file

# Flags that only mean something when MODEL is a zoo name (dest → flag); the technique flags
# join them (cli.arguments.technique_flags).
_ZOO_FLAGS = {"alpha": "--alpha", "resolution": "--resolution", "weights": "--weights",
              "calibration": "--calibration", "num_calibration": "--num-calibration",
              "precision": "--uint8/--float32", "preprocess": "--preprocess", "mean": "--mean",
              "std": "--std", "crop_fraction": "--crop-fraction", "labels": "--labels",
              "min_agreement": "--min-agreement", "max_drop": "--max-drop", "validation": "--validation",
              "all_integer": "--all-integer", "keep_float": "--keep-float"}


def register(sub, prep) -> None:
    p = sub.add_parser(
        "bundle", help="write an Android asset folder: .tflite with metadata + labels.txt",
        description="Make the folder an Android app ships in app/src/main/assets: NAME.tflite carrying "
        "standard TFLite Metadata (RGB input + normalization, labels, provenance) and labels.txt beside it. "
        "MODEL is a zoo name (converted; uint8 in/out unless --float32) or a .tflite made by edgemobile "
        "(metadata re-embedded and validated). Refuses anything MediaPipe's ImageClassifier would reject.",
    )
    p.add_argument("model", help="zoo model name (e.g. mobilenet), your saved Keras model (.keras/.h5) or a "
                   ".tflite made by edgemobile")
    p.add_argument("--out", required=True, help="bundle folder to create, e.g. android_assets/mobilenet")
    p.add_argument("--alpha", type=float, help="width multiplier of a zoo model (family default if omitted)")
    p.add_argument("--resolution", type=int, help="input size of a zoo model (family default if omitted)")
    p.add_argument("--weights", default=None,
                   help="zoo model weights: 'imagenet' (default; download once), 'none' or a local file")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--uint8", dest="precision", action="store_const", const="uint8",
                           help="full integer, uint8 input and output (default; raw pixels in)")
    precision.add_argument("--float32", dest="precision", action="store_const", const="float32",
                           help="float32 model (MediaPipe normalizes pixels per the metadata)")
    add_calibration_flags(p)
    add_target_flags(p)
    add_user_model_flags(p)
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, precision=None)


def run(args: argparse.Namespace) -> int:
    ref = args.model
    if (ref.lower().endswith(".tflite") or Path(ref).is_file()) and not is_model_file(ref):
        zoo_flags = {**_ZOO_FLAGS, **technique_flags()}
        given = [flag for dest, flag in zoo_flags.items() if getattr(args, dest) not in (None, False, ())]
        if given:
            raise EdgeMobileError(f"{', '.join(given)}: only for zoo models; {ref} is already converted")
        return print_bundle(api.bundle(ref, args.out, force=args.force))
    return bundle_model(args, args.out)


def bundle_model(args: argparse.Namespace, out: str) -> int:
    """Convert the zoo model or Keras model file the convert-style flags name (uint8 unless
    ``--float32``) and write its bundle to ``out`` (``bundle``, ``convert --android``)."""
    with candidates_shown():
        result = api.bundle(request_from_args(args), out, args.precision, force=args.force,
                            calibration=args.calibration, num_calibration=args.num_calibration, seed=args.seed,
                            techniques=options_from_args(args), progress=not args.quiet, **target_kwargs(args))
    return print_bundle(result)


def print_bundle(result) -> int:
    """The bundle's notes and warnings on stderr, then where it was written."""
    bundle = result.bundle
    if bundle.search is not None:
        print(bundle.search.table())
    print_notes(result.notes, result.warnings)
    print(f"wrote {result.folder}/ ({bundle.model_file} {len(bundle.tflite) / 1e6:.2f} MB + labels.txt): "
          f"{bundle.describe()}; MediaPipe ImageClassifier checks passed")
    return 0
