"""``edgemobile`` command line: argparse subcommands, one module of glue.

Every user-facing failure is an :class:`EdgeMobileError`, printed as one line
(``edgemobile: error: …``) with exit status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import json
import os
import signal
import sys
from pathlib import Path

from edgemobile import __version__
from edgemobile.errors import EdgeMobileError


# Further subcommands live in their own modules, each with register(subparsers, prep_flags)
# adding its parser and setting ``func``; one line per module.
COMMAND_MODULES: tuple[str, ...] = (
    "edgemobile.cli.bundle",
    "edgemobile.cli.bench",
    "edgemobile.cli.inspect",
    "edgemobile.cli.report",
)


def _quiet_tensorflow() -> None:
    """Import TensorFlow (if installed) with its C++ start-up chatter silenced: absl logs CUDA
    and oneDNN notices to stderr before any setting can stop them, and they hide the output
    users came for. Later imports are free; errors after start-up still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "tensorflow" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers, got {text!r}")
    return values


def _preprocessing_flags() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "preprocessing for models without edgemobile metadata (third-party .tflite files)"
    )
    group.add_argument("--mean", type=_floats, help="per-channel mean in 0..255 pixel units, 1 or 3 values "
                       "(input = (pixel - mean) / std); e.g. 127.5 for [-1, 1] inputs")
    group.add_argument("--std", type=_floats, help="per-channel std in 0..255 pixel units, 1 or 3 values")
    group.add_argument("--crop-fraction", type=float, default=0.875,
                       help="center-crop fraction: the shorter side is resized to size/fraction (default 0.875)")
    group.add_argument("--labels", help="label file, one class per line, in output order")
    bg = group.add_mutually_exclusive_group()
    bg.add_argument("--background-class", dest="background_class", action="store_true", default=None,
                    help="output 0 is a background class (TF-slim 1001-class models; inferred from 1001 outputs)")
    bg.add_argument("--no-background-class", dest="background_class", action="store_false")
    group.add_argument("--threads", type=_positive_int, default=None,
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

    p = sub.add_parser("convert", help="convert a zoo model to .tflite (float32/float16/dynamic/int8/uint8)",
                       description="Build a zoo model with its weights and convert it to TFLite. Full-integer "
                       "models are calibrated with the model's own preprocessing and checked to be all-integer.")
    p.add_argument("--model", required=True, help="zoo model name, e.g. mobilenet (see 'edgemobile models')")
    add_zoo_model_flags(p)
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
    p.add_argument("--limit", type=_positive_int, help="evaluate only N images, drawn stratified across classes")
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
    p.add_argument("--top-k", type=_positive_int, default=5, help="classes to show per image (default 5)")
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
    if args.android:
        from edgemobile.cli.bundle import bundle_zoo_model

        return bundle_zoo_model(args, args.model, args.output)
    from edgemobile.models.zoo import resolve
    from edgemobile.outputs import check_output, write_atomic

    variant = resolve(args.model, args.alpha, args.resolution)
    precision = args.precision or "float32"
    from edgemobile.quantization.convert import convert_variant, default_output_name

    output = Path(args.output or default_output_name(variant, precision))
    check_output(output, args.force)
    calibration = calibration_from_args(args, precision)
    techniques = options_from_args(args)
    _quiet_tensorflow()
    with _silence_stdout():
        result = convert_variant(variant, precision, args.weights, calibration, progress=not args.quiet,
                                 techniques=techniques)
    data = result.tflite
    write_atomic(output, data, force=args.force)
    cal = f", calibrated on {len(calibration.paths)} images with {techniques.label()}" if calibration else ""
    cost = result.provenance["conversion"]
    peak = f", peak memory {cost['peak_rss_mb'] / 1024:.2f} GB" if cost["peak_rss_mb"] is not None else ""
    if calibration:  # full-integer: say so when XNNPACK leaves ops to the slow builtin kernels
        from edgemobile.runtime.delegation import fallback_warning, model_delegation

        warning = fallback_warning(model_delegation(data), str(output))
        if warning:
            print(f"edgemobile: warning: {warning}", file=sys.stderr)
    print(f"wrote {output} ({len(data) / 1e6:.2f} MB, {precision}{cal}, {result.seconds:.1f} s wall{peak})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edgemobile.data.datasets import labeled_images, stratified_sample
    from edgemobile.eval.evaluate import BadImageError, evaluate, format_table
    from edgemobile.outputs import check_output, write_atomic

    from edgemobile.eval import outputs as image_outputs

    if args.json:
        check_output(args.json, args.force)
    if args.outputs:
        image_outputs.check_outputs_name(args.outputs, args.force)
    reference_file = None
    if args.reference and image_outputs.is_outputs_file(args.reference):
        reference_file = image_outputs.read_outputs(args.reference)
    overrides = _overrides(args)
    model = _load(args.model, overrides, args, args.alpha, args.resolution, "imagenet")
    if args.outputs or reference_file:
        model = image_outputs.RecordingPredictor(model)
    predictors = [model]
    if args.reference and not reference_file:
        alpha, resolution = args.alpha, args.resolution
        provenance = (getattr(model, "info", None) and model.info.extra.get("provenance")) or {}
        alpha = alpha if alpha is not None else provenance.get("alpha")
        resolution = resolution if resolution is not None else provenance.get("resolution")
        predictors.append(_load(args.reference, overrides, args, alpha, resolution, args.reference_weights or "imagenet"))
    pairs = labeled_images(args.data, model.classes, args.ground_truth)
    if args.limit and args.limit < len(pairs):
        chosen = set(stratified_sample([p for p, _ in pairs], Path(args.data), args.limit, args.seed))
        pairs = [pair for pair in pairs if pair[0] in chosen]
    if getattr(args, "cluster", None) and (args.outputs or reference_file):
        raise EdgeMobileError("--outputs and an outputs-file --reference record raw outputs on this machine "
                              "(the device); run them without --cluster")
    try:
        with cluster_from_args(args) as cluster:
            result = evaluate(predictors, pairs, data=str(args.data), progress=not args.quiet,
                              skip_bad_images=args.skip_bad_images, runner=cluster.run_predictors if cluster else None)
    except BadImageError as exc:
        raise EdgeMobileError(f"{exc}; stopped there — pass --skip-bad-images to evaluate the other images") from None
    summary = result.as_dict()
    tables = []
    if args.outputs or reference_file:
        left_out = {item["image"] for item in result.skipped}
        evaluated = [(p, y) for p, y in pairs if str(p) not in left_out]
        recorded = model.outputs(image_outputs.image_ids([p for p, _ in evaluated], args.data), [y for _, y in evaluated])
    if reference_file:
        by_image = image_outputs.with_reference(result, recorded, reference_file, args.reference)
        summary = {**result.as_dict(), "image_comparison": by_image.as_dict()}
        tables.append(image_outputs.format_comparison(by_image))
    print("\n\n".join([format_table(result), *tables]))
    if args.outputs:
        recorded.write(args.outputs, force=args.force)
        print(f"wrote {args.outputs} ({len(recorded.ids)} images' raw outputs)")
    if args.json:
        write_atomic(args.json, json.dumps(summary, indent=2) + "\n", force=args.force)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from edgemobile.data.preprocessing import load_rgb
    from edgemobile.eval.evaluate import top_k_indices
    from edgemobile.eval.predictors import TFLitePredictor
    from edgemobile.outputs import check_output, write_atomic

    if args.json:
        check_output(args.json, args.force)
    predictor = TFLitePredictor(args.model, _overrides(args), num_threads=args.threads)
    results = []
    for image in args.images:
        probs = predictor.predict(predictor.prepare(predictor.spec.crop_pixels(load_rgb(image)))[None])[0]
        top = top_k_indices(probs, args.top_k)
        entries = [{"index": int(i), "id": predictor.classes.ids[i], "name": predictor.classes.short_name(i),
                    "probability": float(probs[i])} for i in top]
        results.append({"image": str(image), "top": entries})
        print(image)
        for rank, e in enumerate(entries, 1):
            synset = f"  ({e['id']})" if e["id"] != e["name"] else ""
            print(f"  {rank}. {e['probability']:7.2%}  {e['name']}{synset}")
    if args.json:
        write_atomic(args.json, json.dumps({"model": str(args.model), "predictions": results}, indent=2) + "\n",
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


def add_calibration_flags(p: argparse.ArgumentParser, seed_help: str = "seed for drawing calibration images") -> None:
    """--calibration/--num-calibration/--seed (see :func:`calibration_from_args`) and the int8
    technique flags: every command that makes a full-integer model takes them."""
    p.add_argument("--calibration", help="folder of calibration images (searched recursively) or a calibration "
                   "manifest .json; default: the published 1000-image ImageNet sample, downloaded once")
    p.add_argument("--num-calibration", type=_positive_int, default=None,
                   help="calibration images drawn stratified across classes (default 500)")
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default 0)")
    add_technique_flags(p)


def add_technique_flags(parser: argparse.ArgumentParser) -> None:
    """``--ranges``, ``--equalize``, ``--bias-correction``, ``--adaround`` (each with ``--no-``),
    ``--plain`` and ``--technique-images`` (see :mod:`edgemobile.quantization.pipeline`);
    defaults are ``pipeline.DEFAULT``."""
    from edgemobile.quantization.pipeline import DEFAULT, RANGE_CHOICES

    group = parser.add_argument_group("int8 quality techniques (defaults: the best combination)")
    group.add_argument("--ranges", choices=RANGE_CHOICES, default=None,
                       help="activation ranges: converter min/max, 99.99th percentile, or MSE-optimal clipping "
                       f"(default {DEFAULT.ranges})")
    for flag, field, text in (("equalize", "equalize", "cross-layer equalization"),
                              ("bias-correction", "bias_correction", "empirical bias correction"),
                              ("adaround", "adaround", "AdaRound: learned weight rounding")):
        group.add_argument(f"--{flag}", dest=field, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text} (default {'on' if getattr(DEFAULT, field) else 'off'})")
    group.add_argument("--plain", action="store_true",
                       help="the converter alone (min/max ranges, no technique); other technique flags add to it")
    group.add_argument("--technique-images", type=_positive_int, default=None,
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
    group.add_argument("--shard-size", type=_positive_int, default=DEFAULT_SHARD_SIZE,
                       help=f"images per Ray task, rounded up to whole batches of 16 (default {DEFAULT_SHARD_SIZE})")
    group.add_argument("--runtime-env", type=_json_object, default=None, metavar="JSON",
                       help='Ray runtime_env for the workers, e.g. \'{"pip": ["edgemobile[runtime]==0.1.0"]}\'')


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


@contextlib.contextmanager
def cluster_from_args(args: argparse.Namespace):
    """The RayCluster --cluster asks for (None without it), disconnected on exit."""
    if not getattr(args, "cluster", None):
        yield None
        return
    from edgemobile.eval.cluster import RayCluster

    cluster = RayCluster(args.cluster, data=args.cluster_data, shard_size=args.shard_size,
                         runtime_env=args.runtime_env)
    try:
        yield cluster
    finally:
        cluster.close()


def options_from_args(args: argparse.Namespace):
    """The ``QuantOptions`` the technique flags ask for, starting from ``pipeline.DEFAULT`` (or ``--plain``)."""
    from edgemobile.quantization.pipeline import DEFAULT, QuantOptions

    base = QuantOptions.plain() if getattr(args, "plain", False) else DEFAULT
    changes = {k: getattr(args, k) for k in ("ranges", "equalize", "bias_correction", "adaround", "technique_images")
               if getattr(args, k, None) is not None}
    return dataclasses.replace(base, **changes)


def calibration_from_args(args: argparse.Namespace, precision: str):
    """The CalibrationSet --calibration/--num-calibration/--seed select (None unless full-integer)."""
    from edgemobile.quantization.convert import DEFAULT_NUM_CALIBRATION, FULL_INTEGER, CalibrationSet

    if precision not in FULL_INTEGER:
        if args.calibration or args.num_calibration:
            raise EdgeMobileError("--calibration/--num-calibration only apply to --int8 or --uint8")
        return None
    from edgemobile.data.calibration_sets import resolve_calibration

    folder = resolve_calibration(args.calibration)
    # A manifest is an explicit selection: use all of it unless told otherwise.
    is_manifest = bool(args.calibration) and args.calibration.lower().endswith(".json")
    count = args.num_calibration or (sys.maxsize if is_manifest else DEFAULT_NUM_CALIBRATION)
    return CalibrationSet.from_folder(
        folder, count, args.seed, source=args.calibration or "imagenet_sample_1000 (default)",
    )


def _overrides(args: argparse.Namespace):
    from edgemobile.eval.predictors import PreprocessOverrides

    if not 0 < args.crop_fraction <= 1:
        raise EdgeMobileError(f"--crop-fraction must be in (0, 1], got {args.crop_fraction}")
    return PreprocessOverrides(mean=args.mean, std=args.std, crop_fraction=args.crop_fraction,
                               labels=args.labels, background_class=args.background_class)


def _load(ref: str, overrides, args, alpha, resolution, weights):
    from edgemobile.eval.predictors import load_predictor

    if not (ref.lower().endswith(".tflite") or Path(ref).is_file()):
        _quiet_tensorflow()  # a zoo model: the float Keras model runs in TensorFlow
    with _silence_stdout():
        return load_predictor(ref, overrides, alpha, resolution, weights, num_threads=args.threads or 1)


@contextlib.contextmanager
def _silence_stdout():
    """Keras' exporter prints every traced tensor to stdout during conversion."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


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
