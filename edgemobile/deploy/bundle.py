"""Android asset bundles: a folder with ``NAME.tflite`` (standard TFLite Model Metadata:
name, description, version, author, license, RGB image input with NormalizationOptions,
probability output with ``labels.txt`` as TENSOR_AXIS_LABELS) and ``labels.txt`` beside it,
checked to be accepted by MediaPipe Tasks' ImageClassifier before anything is written.

Android's defaults are uint8 in and out: MediaPipe (and Android's TFLite Support library)
feed a uint8 model the raw 0..255 pixels, so its input quantization must *be* the
normalization — ``(q - zero_point) * scale == (pixel - mean) / std``. A per-channel mean/std
(MobileOne, ImageNet mean/std) cannot be expressed that way, nor as MediaPipe's float
NormalizationOptions (one mean/std for every channel), so zoo models with such a spec are
bundled through :func:`edgemobile.networks.zoo.with_raw_pixel_input`: the normalization becomes
the model's first layer and the bundle's spec is mean 0 / std 1.

Bundling an existing .tflite needs no TensorFlow; bundling a zoo model converts it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgemobile.deploy.mediapipe_compat import mediapipe_issues
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import (
    LABELS_FILE,
    ModelInfo,
    embed_metadata,
    read_metadata,
)
from edgemobile.networks.zoo import with_raw_pixel_input
from edgemobile.outputs import check_output_folder, make_parent
from edgemobile.quantization.convert import convert_variant
from edgemobile.runtime.delegation import speed_report
from edgemobile.runtime.interpreter import TFLiteClassifier
from edgemobile.tflite.model import load_model_bytes

ANDROID_PRECISIONS = ("uint8", "float32")
DEFAULT_ANDROID_PRECISION = "uint8"


@dataclasses.dataclass
class Bundle:
    """What a bundle folder holds (before or after it is written)."""

    name: str
    tflite: bytes
    info: ModelInfo
    input_dtype: str
    input_quantization: tuple[float, int] | None  # (scale, zero_point) of a uint8 input
    notes: tuple[str, ...] = ()  # one-line notes: the MobileNetV3 rewrite, int8 slower than float here
    warnings: tuple[str, ...] = ()  # ops XNNPACK leaves to builtin kernels, with the measured cost
    search: Any = None  # with an accuracy target: the candidates (quantization.target.Search)

    @property
    def model_file(self) -> str:
        return f"{self.name}.tflite"

    def labels_text(self) -> str:
        return "".join(f"{label}\n" for label in self.info.labels)

    def describe(self) -> str:
        spec = self.info.preprocess
        if self.input_quantization is not None:
            scale, zero_point = self.input_quantization
            feed = f"raw pixels (input scale {scale:.6g}, zero point {zero_point})"
        else:
            feed = f"(pixel - {_fmt(spec.mean)}) / {_fmt(spec.std)}"
        return (f"{self.input_dtype} input {spec.size}x{spec.size} RGB, {feed}; "
                f"{len(self.info.labels)} labels")


def mediapipe_expressible(spec) -> bool:
    """True when one mean and one std serve every channel (what MediaPipe can apply)."""
    return len(set(spec.mean)) == 1 and len(set(spec.std)) == 1


def android_variant(variant):
    """The zoo variant to bundle: unchanged, or with its per-channel normalization folded
    into the model (raw-pixel input, spec mean 0 / std 1) when MediaPipe cannot express it."""
    return variant if mediapipe_expressible(variant.preprocess) else with_raw_pixel_input(variant)


def android_precision(precision: str | None) -> str:
    """The precision of an Android bundle: uint8 unless asked for float32; never int8."""
    precision = precision or DEFAULT_ANDROID_PRECISION
    if precision == "int8":
        raise EdgeMobileError("Android bundles take uint8 or float32 models, not int8: use --uint8 (the default)")
    if precision not in ANDROID_PRECISIONS:
        raise EdgeMobileError(f"Android bundles are uint8 (default) or --float32, not {precision}")
    return precision


def bundle_from_variant(variant, precision: str, weights, calibration, name: str, progress: bool = True,
                        techniques=None, target=None, keep_float=()) -> Bundle:
    """Convert a zoo model for Android (uint8 in/out by default) and prepare its bundle
    (``target``, ``keep_float``: see :func:`~edgemobile.quantization.convert.convert_variant`)."""
    precision = android_precision(precision)
    result = convert_variant(android_variant(variant), precision, weights, calibration, progress=progress,
                             techniques=techniques, target=target, keep_float=keep_float)
    made = bundle_from_tflite(result.tflite, name, source=f"{variant.name} ({precision})")
    warnings, notes = [], []
    if precision != "float32":
        warnings, notes = speed_report(made.tflite, made.model_file, result.float_tflite)
    return dataclasses.replace(made, notes=tuple(result.notes) + tuple(notes), warnings=tuple(warnings),
                               search=result.search)


def bundle_from_tflite(model: bytes | str | os.PathLike, name: str, source: str | None = None) -> Bundle:
    """Validate an edgemobile-made .tflite for Android, re-embed its metadata, and refuse
    what MediaPipe's ImageClassifier would reject."""
    data, default_source = load_model_bytes(model)
    source = source or default_source
    classifier = TFLiteClassifier(data, source=source)  # a loadable one-input classifier
    info = read_metadata(data)
    if info is None or not info.extra or info.preprocess is None or not info.labels:
        raise EdgeMobileError(
            f"{source}: has no edgemobile metadata (preprocessing + labels); bundle a model made "
            "by 'edgemobile convert', or give a zoo model name to convert it"
        )
    for role, tensor in (("input", classifier.input), ("output", classifier.output)):
        if tensor.dtype.name == "int8":
            raise EdgeMobileError(
                f"{source}: int8 {role}; Android (MediaPipe, TFLite Support) takes uint8 or float32 "
                "models — convert with --uint8 (e.g. edgemobile bundle MODEL_NAME, or "
                "edgemobile convert --uint8 --android)"
            )
        if tensor.dtype.name not in ANDROID_PRECISIONS:
            raise EdgeMobileError(
                f"{source}: {tensor.dtype.name} {role}; Android bundles need uint8 or float32 "
                "(convert with --uint8 or --float32)"
            )
    if not mediapipe_expressible(info.preprocess):  # float: unsupported; uint8: one scale
        raise EdgeMobileError(
            f"{source}: per-channel normalization mean={_fmt(info.preprocess.mean)} "
            f"std={_fmt(info.preprocess.std)} cannot be expressed for MediaPipe; bundle the zoo "
            "model by name instead, which folds the normalization into the model"
        )
    info = dataclasses.replace(info, normalization=None)  # written from info.preprocess
    tflite = embed_metadata(data, info)
    issues = mediapipe_issues(tflite)
    if issues:
        more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
        hint = ""
        if "does not match the normalization" in issues[0]:
            hint = "; calibrate on more varied images (the calibration must contain black and white pixels)"
        raise EdgeMobileError(f"{source}: MediaPipe would reject this bundle: {issues[0]}{more}{hint}")
    quantization = None
    if classifier.input.quantized:
        quantization = (classifier.input.scale, classifier.input.zero_point)
        exact = raw_pixel_spec(info.preprocess, *quantization)
        if exact != info.preprocess:
            # On the device raw pixels go in; describe exactly that, so predict/eval of the
            # bundle feed the very values MediaPipe feeds (see raw_pixel_spec).
            extra = dict(info.extra)
            extra["android"] = {
                "preprocess_trained": info.preprocess.to_dict(),
                "note": "uint8 input fed raw pixels; mean/std = input zero point and 1/scale",
            }
            info = dataclasses.replace(info, preprocess=exact, extra=extra)
            tflite = embed_metadata(data, info)
    return Bundle(name=name, tflite=tflite, info=read_metadata(tflite),
                  input_dtype=classifier.input.dtype.name, input_quantization=quantization)


def raw_pixel_spec(spec, scale: float, zero_point: int):
    """The spec that says what a uint8 input fed raw pixels means: mean = zero point,
    std = 1/scale (7 significant digits), resize and crop unchanged.

    Calibration gives MobileNet's [-1, 1] input scale 1/127.5 but an integer zero point
    (127), half a level from the trained mean 127.5. A device feeds pixel p as q = p, i.e.
    (p - 127) / 127.5; quantizing the trained (p - 127.5) / 127.5 instead lands exactly on
    half steps and rounds to p - 1 below 128 and p above — a 1-level kink no device
    produces. With this spec, host-side eval/predict quantize to exactly q = p."""
    std = float(f"{1.0 / scale:.7g}")
    mean = float(zero_point)
    return dataclasses.replace(spec, mean=(mean, mean, mean), std=(std, std, std))


# -- the folder ----------------------------------------------------------------------------
def check_bundle_folder(folder: str | os.PathLike, force: bool = False) -> Path:
    """Fail early (before converting) if ``folder`` cannot be written."""
    folder = Path(folder)
    if not folder.name or folder.name in (".", ".."):
        raise EdgeMobileError(f"{folder}: give the bundle folder a name, e.g. android_assets/mobilenet")
    if folder.suffix.lower() == ".tflite":
        raise EdgeMobileError(f"{folder}: a bundle is a folder (it will hold NAME.tflite + labels.txt); "
                              "give a folder name without .tflite")
    check_output_folder(folder)
    if folder.exists() and not force:
        raise EdgeMobileError(f"{folder}: already exists; pass --force to replace it")
    return folder


def write_bundle(folder: str | os.PathLike, bundle: Bundle, force: bool = False) -> Path:
    """Write the bundle folder atomically: filled as a temp folder beside it, then renamed
    into place (an existing folder is replaced only with ``force``)."""
    folder = check_bundle_folder(folder, force)
    make_parent(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    old = None
    try:
        (tmp / bundle.model_file).write_bytes(bundle.tflite)
        (tmp / LABELS_FILE).write_text(bundle.labels_text(), encoding="utf-8")
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        os.chmod(tmp, 0o755)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    except BaseException:
        if old is not None and not folder.exists():
            os.replace(old / folder.name, folder)  # put the previous bundle back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _fmt(values) -> str:
    values = list(values)
    if len(set(values)) == 1:
        return f"{values[0]:g}"
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
