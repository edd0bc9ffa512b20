"""``edgemobile bundle MODEL --out android_assets/NAME``: an Android asset folder
(``NAME.tflite`` with TFLite Metadata + ``labels.txt``) from a zoo model or an
edgemobile-made .tflite; ``edgemobile convert --android`` goes through here too."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgemobile.errors import EdgeMobileError

# Flags that only mean something when MODEL is a zoo name (dest → flag); the technique flags
# join them (cli.main.technique_flags).
_ZOO_FLAGS = {"alpha": "--alpha", "resolution": "--resolution", "weights": "--weights",
              "calibration": "--calibration", "num_calibration": "--num-calibration",
              "precision": "--uint8/--float32", "preprocess": "--preprocess", "mean": "--mean",
              "std": "--std", "crop_fraction": "--crop-fraction", "labels": "--labels"}


def register(sub, prep) -> None:
    from edgemobile.cli.main import add_calibration_flags, add_user_model_flags

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
    add_user_model_flags(p)
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bundle, precision=None)


def cmd_bundle(args: argparse.Namespace) -> int:
    from edgemobile import api
    from edgemobile.cli.main import technique_flags
    from edgemobile.models.user import is_model_file

    ref = args.model
    if (ref.lower().endswith(".tflite") or Path(ref).is_file()) and not is_model_file(ref):
        zoo_flags = {**_ZOO_FLAGS, **technique_flags()}
        given = [flag for dest, flag in zoo_flags.items() if getattr(args, dest) not in (None, False)]
        if given:
            raise EdgeMobileError(f"{', '.join(given)}: only for zoo models; {ref} is already converted")
        return _report(api.bundle(ref, args.out, force=args.force))
    return bundle_zoo_model(args, ref, args.out)


def bundle_zoo_model(args: argparse.Namespace, name: str, out: str | None) -> int:
    """Convert zoo model (or Keras model file) ``name`` per the convert-style flags in ``args``
    and write its bundle to ``out`` (default: ``<model>_<precision>`` in the current folder)."""
    from edgemobile import api
    from edgemobile.cli.main import model_kwargs, options_from_args
    from edgemobile.deploy.bundle import android_precision

    precision = android_precision(args.precision)
    out = out or api.default_output(name, precision, args.alpha, args.resolution).removesuffix(".tflite")
    kwargs = model_kwargs(args)
    return _report(api.bundle(name, out, precision, force=args.force, calibration=args.calibration,
                              num_calibration=args.num_calibration, seed=args.seed,
                              techniques=options_from_args(args), progress=not args.quiet, **kwargs))


def _report(result) -> int:
    bundle = result.bundle
    for note in result.notes:
        print(f"edgemobile: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"edgemobile: warning: {warning}", file=sys.stderr)
    print(f"wrote {result.folder}/ ({bundle.model_file} {len(bundle.tflite) / 1e6:.2f} MB + labels.txt): "
          f"{bundle.describe()}; MediaPipe ImageClassifier checks passed")
    return 0
