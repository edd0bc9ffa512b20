"""A zoo or user model variant → a verified TFLite model with metadata and provenance.

The converter call itself is :mod:`edgemobile.quantization.tflite_converter`. Full-integer conversions are calibrated on images prepared by the
model's own ``PreprocessSpec`` (:func:`edgemobile.quantization.pipeline.load_images`) — the same code path eval and predict use — and are
verified to be all-integer before anything is written.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgemobile.data.datasets import find_images, image_labels, stratified_sample
from edgemobile.download import file_hash
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import ModelInfo, embed_metadata
from edgemobile.networks.rewrite import int8_rewrite
from edgemobile.peak_memory import peak_rss_kb
from edgemobile.quantization.finetune import held_apart_count
from edgemobile.quantization.integer_check import require_integer_only
from edgemobile.quantization.keras_layers import float_tensors, model_layers, require_layers, resolve
from edgemobile.quantization.pipeline import convert_full_integer, load_images
from edgemobile.quantization.layer_sensitivity import Conversion
from edgemobile.quantization.target import SENSITIVITY_IMAGES, HeldApart, Target
from edgemobile.quantization.target import search as target_search
from edgemobile.quantization.techniques.recipe import DEFAULT
from edgemobile.quantization.tflite_converter import FULL_INTEGER, convert_keras
from edgemobile.runtime.interpreter import TFLiteClassifier
from edgemobile.version import __version__

DEFAULT_NUM_CALIBRATION = 500
DEFAULT_SEED = 0
MIN_CONVERSION_IMAGES = 64  # calibration images a conversion keeps at least when some are held apart


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """The images a full-integer conversion was calibrated on (and how they were chosen)."""

    root: Path
    paths: tuple[Path, ...]
    seed: int
    source: str

    @classmethod
    def from_folder(cls, root: str | os.PathLike, num: int, seed: int = DEFAULT_SEED, source: str | None = None):
        root = Path(root)
        paths = stratified_sample(find_images(root), root, num, seed)
        return cls(root=root, paths=tuple(paths), seed=seed, source=source or str(root))

    def describe(self) -> dict:
        return {"source": self.source, "images": len(self.paths), "seed": self.seed, "sampling": "stratified by class"}


@dataclasses.dataclass
class ConversionResult:
    tflite: bytes
    provenance: dict
    seconds: float
    quantization: dict | None = None  # full-integer: what each technique did (pipeline report)
    notes: list[str] = dataclasses.field(default_factory=list)  # one line each, e.g. the MobileNetV3 rewrite
    float_tflite: bytes | None = None  # full-integer: the calibrated float model it was quantized from
    search: Any = None  # with an accuracy target: the candidates (quantization.target.Search)


def convert_variant(
    variant,
    precision: str,
    weights: str | os.PathLike | None = "imagenet",
    calibration: CalibrationSet | None = None,
    progress: bool = True,
    techniques=None,
    target: Target | None = None,
    keep_float: Sequence[str] = (),
) -> ConversionResult:
    """Build a zoo model, convert it, verify full-integer models, and embed metadata.

    ``techniques``: a :class:`edgemobile.quantization.techniques.recipe.Recipe` for
    full-integer precisions (default: ``recipe.DEFAULT``, the best combination;
    ``recipe.PLAIN`` is the converter alone). ``target``: convert to an accuracy target
    (:mod:`edgemobile.quantization.target`); ``keep_float``: Keras layers kept float.
    """
    start = time.perf_counter()
    weights_path = variant.weights_path(weights)
    model = variant.builder(variant, weights_path)
    quantization, rewrite, float_tflite, search, kept = None, None, None, None, ()
    if (target is not None or keep_float) and precision not in FULL_INTEGER:
        raise EdgeMobileError("--min-agreement, --max-drop and --keep-float are for --int8/--uint8 conversions")
    if target is not None and keep_float:
        raise EdgeMobileError("give --keep-float or an accuracy target (--min-agreement/--max-drop), not both")
    if precision in FULL_INTEGER:
        if calibration is None:
            raise EdgeMobileError(f"{precision} conversion needs calibration images")
        require_layers(keep_float, _layer_names(model), variant.name)  # before the long work
        images = load_images(calibration.paths, variant.preprocess, progress)
        recipe = techniques or DEFAULT
        held = None
        if target is not None:
            held, images = held_apart(target, calibration, images, variant, progress)
        named = target is not None or bool(keep_float)

        def conversion(finetune: bool) -> Conversion:
            nonlocal model, rewrite
            keras, rewrite = int8_model(variant, model if model is not None else variant.builder(variant, weights_path),
                                        images)
            model = None  # a second conversion starts from a fresh model
            done = convert_full_integer(keras, precision, images, recipe.replace(finetune=True) if finetune else recipe,
                                        progress, variant.preprocess)
            return Conversion(done, model_layers(done.model, done.calibrated, images, keras) if named else [])

        if target is not None:
            search = target_search(conversion, recipe.finetune, target, held, images[:SENSITIVITY_IMAGES],
                                   variant.preprocess, progress)
            chosen = search.require_chosen()
            done = search.conversion(chosen).full
            tflite, kept, float_tflite = chosen.tflite, chosen.kept_float, search.float_model
        else:
            converted_once = conversion(False)
            done = converted_once.full
            tflite = done.tflite
            if keep_float:
                kept = tuple(resolve(keep_float, converted_once.layers, _layer_names(done.model), variant.name))
                tflite = done.keeping_float(float_tensors(kept))
            float_tflite = done.calibrated  # what the int8 model is timed against: the same graph in float
        quantization = done.report
    else:
        tflite = convert_keras(model, precision)
    converted = TFLiteClassifier(tflite, source=f"converted {variant.name} ({precision})")
    if precision in FULL_INTEGER:
        require_integer_only(converted, kept_float=float_tensors(kept))
    provenance = {
        "model": variant.name,
        "family": variant.family,
        "alpha": variant.alpha,
        "resolution": variant.resolution,
        "precision": precision,
        "weights": _describe_weights(weights_path),
        "calibration": _describe_calibration(calibration, search) if calibration and precision in FULL_INTEGER
        else None,
        "quantization": {k: quantization[k] for k in ("techniques", "options", "seconds", "skipped", "finetune")
                         if k in quantization} if quantization else None,
        **({"kept_float": [layer.as_dict() for layer in kept]} if kept else {}),
        **({"accuracy_target": search.as_dict()} if search is not None else {}),
        **({"rewrite": rewrite.as_dict()} if rewrite is not None and rewrite.message() else {}),
        "conversion": conversion_cost(start),
        "converter": _converter_versions(),
        "edgemobile": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tflite = embed_metadata(tflite, model_info(variant, provenance))
    return ConversionResult(tflite=tflite, provenance=provenance, seconds=time.perf_counter() - start,
                            quantization=quantization, notes=[rewrite.message()] if rewrite and rewrite.message()
                            else [], float_tflite=float_tflite, search=search)


def held_apart(target: Target, calibration: CalibrationSet, images: np.ndarray, variant,
               progress: bool) -> tuple[HeldApart, np.ndarray]:
    """(the images candidates are measured on, the calibration images the conversion keeps):
    ``target.validation``'s images, or the last :func:`held_apart_count` calibration images
    (the stratified draw's last rounds, spread over classes)."""
    if target.validation is not None:
        paths = find_images(target.validation)
        if not paths:
            raise EdgeMobileError(f"--validation {target.validation}: no images found")
        labels = _labels_for(target, paths, target.validation, variant)
        x = load_images(paths, variant.preprocess, progress, desc="loading validation images")
        return HeldApart(x, labels, f"images of {target.validation}"), images
    held = require_held_apart(len(images))
    paths = calibration.paths[-held:]
    return HeldApart(images[-held:], _labels_for(target, paths, calibration.root, variant),
                     "held-apart calibration images"), images[:-held]


def _labels_for(target: Target, paths, root, variant) -> list[int] | None:
    """The class indices of the measuring images (None: not all are the model's classes);
    --max-drop needs them."""
    labels = image_labels(paths, root, variant.classes)
    if target.max_drop is not None and labels is None:
        raise EdgeMobileError(f"--max-drop needs labeled images: the classes of {root} are not the model's; give "
                              "--validation DIR with class-named folders, or use --min-agreement")
    return labels


def require_held_apart(count: int, validation: bool = True) -> int:
    """The calibration images an accuracy target holds apart out of ``count``, when enough
    are left for the conversion; ``validation``: the command takes --validation."""
    held = held_apart_count(count)
    if count - held < MIN_CONVERSION_IMAGES:
        raise EdgeMobileError(f"an accuracy target holds {held} of the {count} calibration images apart: give "
                              f"--num-calibration {MIN_CONVERSION_IMAGES + held} or more"
                              + (", or --validation DIR" if validation else ""))
    return held


def _describe_calibration(calibration: CalibrationSet, search) -> dict:
    described = calibration.describe()
    if search is not None and search.target.validation is None:
        described["held_apart"] = search.images  # measured the candidates; the conversion used the rest
    return described


def _layer_names(model) -> list[str]:
    return [op.name for op in model.operations]


def int8_model(variant, model, images):
    """``(model, Rewrite or None)``: the Keras model a full-integer conversion of ``variant``
    starts from — your model's Keras MobileNetV3 backbone rewritten to the zoo's int8-friendly
    graph (:func:`edgemobile.networks.rewrite.int8_rewrite`; zoo models are built that way)."""
    if not variant.option("user_model"):
        return model, None
    return int8_rewrite(model, images)


def conversion_cost(start: float) -> dict:
    """Wall seconds since ``start`` and the process' peak resident memory (MB) so far."""

    peak, method = peak_rss_kb()
    return {"seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(peak / 1024, 1) if peak is not None else None, "peak_rss_method": method}


def model_info(variant, provenance: dict) -> ModelInfo:
    """The metadata a converted model's .tflite carries: its spec, labels and where it came from."""
    classes = variant.classes
    what = "ImageNet classes" if variant.labels is None else "classes"
    precision = provenance["precision"]
    return ModelInfo(
        name=f"{variant.name}_{precision}",
        description=f"{variant.description}; {precision} TFLite model made by edgemobile {__version__}. "
        f"Input: RGB {variant.resolution}x{variant.resolution}, resized so the shorter side is "
        f"{variant.preprocess.resize_shorter} then center-cropped. Output: probabilities over "
        f"{len(classes)} {what}.",
        version=__version__,
        author="edgemobile",
        license=variant.license,
        labels=classes.label_lines(),
        preprocess=variant.preprocess,
        extra={"provenance": provenance, "classes": "imagenet-1k" if variant.labels is None else "user"},
    )


def _describe_weights(path: Path | None) -> dict:
    if path is None:
        return {"source": "random initialization"}
    return {"file": path.name, "sha256": file_hash(path)}


def _converter_versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def default_output_name(variant, precision: str) -> str:
    """``mobilenet_v1_1.0_224_int8.tflite``."""
    return f"{variant.name}_{precision}.tflite"
