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

from edgemobile.data.datasets import find_images, stratified_sample
from edgemobile.download import file_hash
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import ModelInfo, embed_metadata
from edgemobile.networks.rewrite import int8_rewrite
from edgemobile.peak_memory import peak_rss_kb
from edgemobile.quantization.integer_check import require_integer_only
from edgemobile.quantization.pipeline import convert_full_integer, load_images
from edgemobile.quantization.techniques.recipe import DEFAULT
from edgemobile.quantization.tflite_converter import FULL_INTEGER, convert_keras
from edgemobile.runtime.interpreter import TFLiteClassifier
from edgemobile.version import __version__

DEFAULT_NUM_CALIBRATION = 500
DEFAULT_SEED = 0


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


def convert_variant(
    variant,
    precision: str,
    weights: str | os.PathLike | None = "imagenet",
    calibration: CalibrationSet | None = None,
    progress: bool = True,
    techniques=None,
) -> ConversionResult:
    """Build a zoo model, convert it, verify full-integer models, and embed metadata.

    ``techniques``: a :class:`edgemobile.quantization.techniques.recipe.Recipe` for
    full-integer precisions (default: ``recipe.DEFAULT``, the best combination;
    ``recipe.PLAIN`` is the converter alone).
    """
    start = time.perf_counter()
    weights_path = variant.weights_path(weights)
    model = variant.builder(variant, weights_path)
    quantization, rewrite, float_tflite = None, None, None
    if precision in FULL_INTEGER:
        if calibration is None:
            raise EdgeMobileError(f"{precision} conversion needs calibration images")
        images = load_images(calibration.paths, variant.preprocess, progress)
        model, rewrite = int8_model(variant, model, images)
        done = convert_full_integer(model, precision, images, techniques or DEFAULT, progress, variant.preprocess)
        tflite, quantization, float_tflite = done.tflite, done.report, done.calibrated
    else:
        tflite = convert_keras(model, precision)
    converted = TFLiteClassifier(tflite, source=f"converted {variant.name} ({precision})")
    if precision in FULL_INTEGER:
        require_integer_only(converted)
    provenance = {
        "model": variant.name,
        "family": variant.family,
        "alpha": variant.alpha,
        "resolution": variant.resolution,
        "precision": precision,
        "weights": _describe_weights(weights_path),
        "calibration": calibration.describe() if calibration and precision in FULL_INTEGER else None,
        "quantization": {k: quantization[k] for k in ("techniques", "options", "seconds", "skipped", "finetune")
                         if k in quantization} if quantization else None,
        **({"rewrite": rewrite.as_dict()} if rewrite is not None and rewrite.message() else {}),
        "conversion": conversion_cost(start),
        "converter": _converter_versions(),
        "edgemobile": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tflite = embed_metadata(tflite, model_info(variant, provenance))
    return ConversionResult(tflite=tflite, provenance=provenance, seconds=time.perf_counter() - start,
                            quantization=quantization, notes=[rewrite.message()] if rewrite and rewrite.message()
                            else [], float_tflite=float_tflite)


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
