"""``edgemobile`` command line: argparse subcommands, one module of glue.

Every user-facing failure is an :class:`EdgeMobileError`, printed as one line
(``edgemobile: error: …``) with exit status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
from pathlib import Path

from edgemobile.version import __version__
from edgemobile.cli.arguments import floats, json_object, positive_int
from edgemobile.errors import EdgeMobileError


# Further subcommands live in their own modules, each with register(subparsers, prep_flags)
# adding its parser and setting ``func``; one line per module.
COMMAND_MODULES: tuple[str, ...] = (
    "edgemobile.cli.bundle",
    "edgemobile.cli.bench",
    "edgemobile.cli.inspect",
    "edgemobile.cli.report",
)


def _preprocessing_flags() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "preprocessing for models without edgemobile metadata (third-party .tflite files)"
    )
    group.add_argument("--mean", type=floats, help="per-channel mean in 0..255 pixel units, 1 or 3 values "
                       "(input = (pixel - mean) / std); e.g. 127.5 for [-1, 1] inputs")
    group.add_argument("--std", type=floats, help="per-channel std in 0..255 pixel units, 1 or 3 values")
    group.add_argument("--crop-fraction", type=float, default=0.875,
                       help="center-crop fraction: the shorter side is resized to size/fraction (default 0.875)")
    group.add_argument("--labels", help="label file, one class per line, in output order")
    bg = group.add_mutually_exclusive_group()
    bg.add_argument("--background-class", dest="background_class", action="store_true", default=None,
                    help="output 0 is a background class (TF-slim 1001-class models; inferred from 1001 outputs)")
    bg.add_argument("--no-background-class", dest="background_class", action="store_false")
    group.add_argument("--threads", type=positive_int, default=None,
                       help="interpreter threads (default: 1 for eval, decoding uses the other cores)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgemobile",
        description="Mobile image classifiers from Keras + ImageNet weights to honest full-integer TFLite models.",
    )
    parser.add_argument("--version", action="version", version=f"edgemobile {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prep = _preprocessing_flags()

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
    for name, text in (("float32", "float32 model (default)"), ("float16", "float16 weights"),
                       ("dynamic", "dynamic-range: int8 weights, float activations"),
                       ("int8", "full integer, int8 input and output"),
                       ("uint8", "full integer, uint8 input and output (Android/MediaPipe/Coral)")):
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name, help=text)
    add_calibration_flags(p)
    p.add_argument("-o", "--output", help="output file (default: <model>_<alpha>_<resolution>_<precision>.tflite)")
    p.add_argument("--android", action="store_true", help="write an Android asset bundle folder instead "
                   "(.tflite + labels.txt, MediaPipe-checked; uint8 unless --float32; -o names the folder)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_convert, precision=None)

    p = sub.add_parser("eval", parents=[prep], help="top-1/top-5 on ImageNet-style data, optionally against a reference",
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
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--skip-bad-images", action="store_true", help="leave out images that cannot be decoded "
                   "(counted and listed in --json; metrics over the rest) instead of stopping at the first")
    add_cluster_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", parents=[prep], help="classify images: top-k classes with probabilities",
                       description="Softmax + top-k with class names for each image.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--json", help="also write the predictions to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the zoo")
    p.set_defaults(func=cmd_models)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub, prep)
    return parser


# -- commands ------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    from edgemobile import api

    precision = args.precision or "float32"
    if args.android:
        from edgemobile.cli.bundle import bundle_zoo_model

        return bundle_zoo_model(args, args.model, args.output)
    output = Path(args.output or api.default_output(args.model, precision, args.alpha, args.resolution))
    result = api.convert(args.model, precision, calibration=args.calibration, num_calibration=args.num_calibration,
                         seed=args.seed, techniques=options_from_args(args), output=output, force=args.force,
                         progress=not args.quiet, **model_kwargs(args))
    for note in result.notes:
        print(f"edgemobile: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"edgemobile: warning: {warning}", file=sys.stderr)
    print(f"wrote {output} ({result.summary})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edgemobile import api
    from edgemobile.eval.evaluate import BadImageError
    from edgemobile.outputs import check_output, write_atomic

    if args.json:
        check_output(args.json, args.force)
    try:
        result = api.evaluate(args.model, args.data, args.reference, ground_truth=args.ground_truth,
                              limit=args.limit, seed=args.seed, alpha=args.alpha, resolution=args.resolution,
                              reference_weights=args.reference_weights, skip_bad_images=args.skip_bad_images,
                              outputs=args.outputs, force=args.force, cluster=args.cluster,
                              cluster_data=args.cluster_data, shard_size=args.shard_size,
                              runtime_env=args.runtime_env, progress=not args.quiet, **_overrides(args))
    except BadImageError as exc:
        raise EdgeMobileError(f"{exc}; stopped there — pass --skip-bad-images to evaluate the other images") from None
    print(result)
    if args.outputs:
        print(f"wrote {args.outputs} ({len(result.outputs.ids)} images' raw outputs)")
    if args.json:
        write_atomic(args.json, json.dumps(result.as_dict(), indent=2) + "\n", force=args.force)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from edgemobile import api
    from edgemobile.outputs import check_output, write_atomic

    if args.json:
        check_output(args.json, args.force)
    result = api.predict(args.model, args.images, args.top_k, **_overrides(args))
    print(result)
    if args.json:
        write_atomic(args.json, json.dumps(dict(result.as_dict(), model=str(args.model)), indent=2) + "\n",
                     force=args.force)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from edgemobile.models.zoo import families

    for family in families().values():
        alphas = ", ".join(str(a) for a in family.alphas if a is not None) or "-"
        aliases = ", ".join(family.aliases)
        print(f"{family.name:<34} alpha {alphas:<22} resolution {', '.join(map(str, family.resolutions))}"
              f"  (aliases: {aliases})")
    return 0


# -- helpers -------------------------------------------------------------------------------
def add_zoo_model_flags(p: argparse.ArgumentParser) -> None:
    """--alpha/--resolution/--weights of a zoo model (convert, inspect)."""
    p.add_argument("--alpha", type=float, help="width multiplier (family default if omitted)")
    p.add_argument("--resolution", type=int, help="input size in pixels (family default if omitted)")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (download once, cached like Keras), 'none' (random init) or a local weights file")


def add_user_model_flags(p: argparse.ArgumentParser) -> None:
    """Preprocessing and labels of a user's Keras model file (see :mod:`edgemobile.models.user`)."""
    from edgemobile.models.user import PREPROCESS_CHOICES

    group = p.add_argument_group("your own Keras model (--model FILE.keras): preprocessing and labels")
    group.add_argument("--preprocess", choices=PREPROCESS_CHOICES,
                       help="the zoo family's preprocessing the model was trained with (not needed when the model "
                       "has its own Rescaling/Normalization layer)")
    group.add_argument("--mean", type=floats, help="or: per-channel mean in 0..255 pixel units, 1 or 3 values")
    group.add_argument("--std", type=floats, help="per-channel std in 0..255 pixel units, 1 or 3 values")
    group.add_argument("--crop-fraction", type=float, default=None,
                       help="center-crop fraction (default: the --preprocess family's, else 0.875)")
    group.add_argument("--labels", help="label file, one class per line, in output order (default: the class-name "
                       "folders of --calibration)")


def model_kwargs(args: argparse.Namespace) -> dict:
    """The model-selecting flags of convert/bundle as :mod:`edgemobile.api` keywords; flags a
    command lacks are None."""
    weights = getattr(args, "weights", None)
    return {"alpha": args.alpha, "resolution": args.resolution, "weights": weights,
            **{k: getattr(args, k, None) for k in ("preprocess", "mean", "std", "crop_fraction", "labels")}}


def add_calibration_flags(p: argparse.ArgumentParser, seed_help: str = "seed for drawing calibration images") -> None:
    """--calibration/--num-calibration/--seed (see :func:`calibration_from_args`) and the int8
    technique flags: every command that makes a full-integer model takes them."""
    p.add_argument("--calibration", help="folder of calibration images (searched recursively) or a calibration "
                   "manifest .json; default: the published 1000-image ImageNet sample, downloaded once")
    p.add_argument("--num-calibration", type=positive_int, default=None,
                   help="calibration images drawn stratified across classes (default 500)")
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default 0)")
    add_technique_flags(p)


def add_technique_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option of every registered technique that has one (``--ranges``,
    ``--equalize``/``--no-equalize``, ...: see :mod:`edgemobile.quantization.techniques`), then
    the engine's ``--plain`` and ``--technique-images``; defaults are the default recipe."""
    from edgemobile.quantization.techniques import registry
    from edgemobile.quantization.techniques.recipe import DEFAULT

    defaults = DEFAULT.as_dict()
    group = parser.add_argument_group("int8 quality techniques (defaults: the best combination)")
    for technique in registry.registered():
        for option in technique.options:
            if option.flag is None:
                continue
            default = defaults[option.field]
            if isinstance(option.off, bool):
                group.add_argument(f"--{option.flag}", dest=option.field, action=argparse.BooleanOptionalAction,
                                   default=None, help=f"{option.help} (default {'on' if default else 'off'})")
            else:
                group.add_argument(f"--{option.flag}", dest=option.field, choices=option.choices,
                                   type=None if option.choices else type(option.default), default=None,
                                   help=f"{option.help} (default {default})")
    group.add_argument("--plain", action="store_true",
                       help="the converter alone (min/max ranges, no technique); other technique flags add to it")
    group.add_argument("--technique-images", type=positive_int, default=None,
                       help=f"calibration images the Keras-side techniques use (default {DEFAULT.technique_images})")


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """--cluster and its settings (eval, report); see :mod:`edgemobile.eval.cluster`."""
    from edgemobile.eval.cluster import DATA_MODES, DEFAULT_SHARD_SIZE  # Ray itself is imported only by --cluster

    group = p.add_argument_group("scaling out on Ray (pip install 'edgemobile[cluster]')")
    group.add_argument("--cluster", metavar="ADDRESS", help="run on Ray: 'local' starts Ray on this machine with "
                       "all its cores; 'auto' or ray://HOST:PORT joins a running cluster")
    group.add_argument("--cluster-data", choices=DATA_MODES, default="bytes",
                       help="how workers get the images: 'bytes' ships each encoded file in its shard (default; "
                       "no shared storage needed), 'paths' sends paths every node reads on a shared mount")
    group.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE,
                       help=f"images per Ray task, rounded up to whole batches of 16 (default {DEFAULT_SHARD_SIZE})")
    group.add_argument("--runtime-env", type=json_object, default=None, metavar="JSON",
                       help='Ray runtime_env for the workers, e.g. \'{"pip": ["edgemobile[runtime]==0.1.0"]}\'')


def cluster_from_args(args: argparse.Namespace):
    """The RayCluster --cluster asks for (None without it), disconnected on exit."""
    from edgemobile.api import cluster_session

    return cluster_session(args.cluster, args.cluster_data, args.shard_size, args.runtime_env)


def technique_flags() -> dict[str, str]:
    """Destination → flag of every technique flag :func:`add_technique_flags` adds."""
    from edgemobile.quantization.techniques import registry
    from edgemobile.quantization.techniques.recipe import TECHNIQUE_IMAGES_FIELD

    flags = {option.field: f"--{option.flag}" for technique in registry.registered()
             for option in technique.options if option.flag}
    return {**flags, "plain": "--plain", TECHNIQUE_IMAGES_FIELD: "--technique-images"}


def options_from_args(args: argparse.Namespace):
    """The recipe the technique flags ask for, starting from the default recipe (or ``--plain``)."""
    from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN

    base = PLAIN if getattr(args, "plain", False) else DEFAULT
    fields = [field for field in technique_flags() if field != "plain"]
    return base.replace(**{k: getattr(args, k) for k in fields if getattr(args, k, None) is not None})


def calibration_from_args(args: argparse.Namespace, precision: str):
    """The CalibrationSet --calibration/--num-calibration/--seed select (None unless full-integer)."""
    from edgemobile.api import calibration_set

    return calibration_set(args.calibration, args.num_calibration, args.seed, precision)


def _overrides(args: argparse.Namespace) -> dict:
    """eval/predict's preprocessing flags as :mod:`edgemobile.api` keywords."""
    return {"mean": args.mean, "std": args.std, "crop_fraction": args.crop_fraction, "labels": args.labels,
            "background_class": args.background_class, "threads": args.threads}


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except EdgeMobileError as exc:
        print(f"edgemobile: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nedgemobile: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except _Terminated:
        print("\nedgemobile: terminated (SIGTERM)", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
