"""What the subcommands share of argparse: value types (``type=positive_int``, …), the flag
groups several commands take (a model, calibration and techniques, preprocessing of
third-party models, Ray), and turning parsed flags into the API's arguments."""

from __future__ import annotations

import argparse
import contextlib
import json

from edgemobile.eval.cluster import DATA_MODES, DEFAULT_SHARD_SIZE
from edgemobile.networks.request import ModelRequest
from edgemobile.networks.user import PREPROCESS_CHOICES
from edgemobile.quantization.target import TargetMissed
from edgemobile.quantization.techniques import registry
from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN, TECHNIQUE_IMAGES_FIELD


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def floats(text: str) -> tuple[float, ...]:
    """1 or 3 numbers (a per-channel mean/std), separated by commas or spaces."""
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}")
    return values


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def preprocessing_flags() -> argparse.ArgumentParser:
    """The parent parser of eval and predict: preprocessing of a .tflite without edgemobile metadata."""
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


def add_zoo_model_flags(p: argparse.ArgumentParser) -> None:
    """--alpha/--resolution/--weights of a zoo model (convert, inspect)."""
    p.add_argument("--alpha", type=float, help="width multiplier (family default if omitted)")
    p.add_argument("--resolution", type=int, help="input size in pixels (family default if omitted)")
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (download once, cached like Keras), 'none' (random init) or a local weights file")


def add_user_model_flags(p: argparse.ArgumentParser) -> None:
    """Preprocessing and labels of a user's Keras model file (see :mod:`edgemobile.networks.user`)."""
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


def request_from_args(args: argparse.Namespace) -> ModelRequest:
    """The model the flags of convert, bundle or inspect name; flags a command lacks are None."""
    return ModelRequest(args.model, alpha=args.alpha, resolution=args.resolution,
                        weights=getattr(args, "weights", None),
                        **{k: getattr(args, k, None) for k in ("preprocess", "mean", "std", "crop_fraction", "labels")})


def add_calibration_flags(p: argparse.ArgumentParser, seed_help: str = "seed for drawing calibration images") -> None:
    """--calibration/--num-calibration/--seed (see :func:`calibration_from_args`) and the int8
    technique flags: every command that makes a full-integer model takes them."""
    p.add_argument("--calibration", help="folder of calibration images (searched recursively) or a calibration "
                   "manifest .json; default: the published 1000-image ImageNet sample, downloaded once")
    p.add_argument("--num-calibration", type=positive_int, default=None,
                   help="calibration images drawn stratified across classes (default 500)")
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default 0)")
    add_technique_flags(p)


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.97, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (0.97 for 97 %), got {value}")
    return value


def add_target_flags(p: argparse.ArgumentParser, one_model: bool = True) -> None:
    """The accuracy target (convert, bundle, report): see :mod:`edgemobile.quantization.target`;
    ``one_model``: also --validation and --keep-float (convert, bundle: images and layer names
    of one model)."""
    group = p.add_argument_group("accuracy target (full-integer): the fastest model that meets it")
    group.add_argument("--min-agreement", type=fraction, metavar="A",
                       help="top-1 must agree with the float model on at least this fraction of held-apart images "
                       "(e.g. 0.97); tries post-training, + fine-tuning, then the most sensitive layers kept float")
    group.add_argument("--max-drop", type=fraction, metavar="D",
                       help="top-1 may drop at most this fraction (0.01: one point); needs labeled images")
    if one_model:
        group.add_argument("--validation", metavar="DIR", help="measure candidates on these images instead of a "
                           "held-apart slice of the calibration images")
    group.add_argument("--all-integer", action="store_true",
                       help="only all-integer candidates (NPUs, Edge TPU, microcontrollers): no layer kept float")
    if one_model:
        group.add_argument("--keep-float", nargs="+", metavar="LAYER", default=(),
                           help="instead of a target: keep these Keras layers float ('edgemobile inspect' names them)")


def target_kwargs(args: argparse.Namespace) -> dict:
    """The target flags as the API's keywords (--validation and --keep-float where the command has them)."""
    kwargs = {"min_agreement": args.min_agreement, "max_drop": args.max_drop, "all_integer": args.all_integer}
    if hasattr(args, "keep_float"):
        kwargs.update(validation=args.validation, keep_float=tuple(args.keep_float))
    return kwargs


@contextlib.contextmanager
def candidates_shown():
    """Print the candidates table of a missed accuracy target before its one-line error."""
    try:
        yield
    except TargetMissed as missed:
        print(missed.search.table())
        raise


def add_technique_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option of every registered technique that has one (``--ranges``,
    ``--equalize``/``--no-equalize``, ...: see :mod:`edgemobile.quantization.techniques`), then
    the engine's ``--plain`` and ``--technique-images``; defaults are the default recipe."""
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


def technique_flags() -> dict[str, str]:
    """Destination → flag of every technique flag :func:`add_technique_flags` adds."""
    flags = {option.field: f"--{option.flag}" for technique in registry.registered()
             for option in technique.options if option.flag}
    return {**flags, "plain": "--plain", TECHNIQUE_IMAGES_FIELD: "--technique-images"}


def options_from_args(args: argparse.Namespace):
    """The recipe the technique flags ask for, starting from the default recipe (or ``--plain``)."""
    base = PLAIN if getattr(args, "plain", False) else DEFAULT
    fields = [field for field in technique_flags() if field != "plain"]
    return base.replace(**{k: getattr(args, k) for k in fields if getattr(args, k, None) is not None})


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """--cluster and its settings (eval, report); see :mod:`edgemobile.eval.cluster`."""
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


def cluster_kwargs(args: argparse.Namespace) -> dict:
    """--cluster and its settings as the API's keywords (Ray itself is imported only with --cluster)."""
    return {"cluster": args.cluster, "cluster_data": args.cluster_data, "shard_size": args.shard_size,
            "runtime_env": args.runtime_env}


def preprocessing_overrides(args: argparse.Namespace) -> dict:
    """eval/predict's preprocessing flags as :mod:`edgemobile.api` keywords."""
    return {"mean": args.mean, "std": args.std, "crop_fraction": args.crop_fraction, "labels": args.labels,
            "background_class": args.background_class, "threads": args.threads}
