"""The Python API: ``import edgemobile as em``.

::

    result = em.convert("flowers.keras", "int8", calibration="flowers/train", preprocess="mobilenet")
    result.save("flowers_int8.tflite")
    print(em.evaluate(result, "flowers/val", reference="flowers.keras"))
    print(em.predict("flowers_int8.tflite", ["daisy.jpg"]))
    em.bundle("flowers.keras", "android_assets/flowers", calibration="flowers/train", preprocess="mobilenet")
    print(em.info("flowers_int8.tflite"))  # what the file carries
    print(em.zoo())  # the zoo models, their defaults and weights files

``model`` is a zoo name (``"mobilenet"``), a saved Keras model (``.keras``/``.h5``), a
``keras.Model`` object, a ``.tflite`` file, its bytes or a :class:`Converted` result. The CLI
commands ``convert``, ``eval``, ``predict``, ``bundle``, ``info`` and ``models`` are thin
layers over these functions, so both give the same results. Functions on ``.tflite`` models
(``evaluate``, ``predict``, ``info``, ``bundle`` of a .tflite) import no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from edgemobile.converter_install import quiet_keras, quiet_tensorflow, require_converter
from edgemobile.errors import EdgeMobileError, warn

__all__ = ["Converted", "Evaluation", "Predictions", "BundleResult", "convert", "evaluate", "predict", "bundle",
           "info", "zoo"]


# -- results -------------------------------------------------------------------------------
@dataclasses.dataclass
class Converted:
    """A converted model: ``tflite`` bytes (metadata embedded), its provenance and, for
    full-integer models, what each quantization technique did."""

    name: str
    precision: str
    tflite: bytes
    provenance: dict
    seconds: float
    quantization: dict | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. ops XNNPACK leaves to builtin kernels
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. the MobileNetV3 rewrite, int8 slower than float here

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write the .tflite atomically (an existing file only with ``force``)."""
        from edgemobile.outputs import write_atomic

        return write_atomic(path, self.tflite, force=force)

    @property
    def summary(self) -> str:
        cal = self.provenance.get("calibration")
        quant = self.quantization or {}
        how = f", calibrated on {cal['images']} images with {quant.get('techniques', 'the converter')}" if cal else ""
        cost = self.provenance.get("conversion") or {}
        peak = f", peak memory {cost['peak_rss_mb'] / 1024:.2f} GB" if cost.get("peak_rss_mb") is not None else ""
        rewrite = ", MobileNetV3 backbone rewritten int8-friendly" if (self.provenance.get("rewrite") or {}).get(
            "applied") else ""
        return f"{len(self.tflite) / 1e6:.2f} MB, {self.precision}{how}{rewrite}, {self.seconds:.1f} s wall{peak}"

    def __repr__(self) -> str:
        return f"<Converted {self.name} ({self.summary})>"


@dataclasses.dataclass
class Evaluation:
    """Top-1/top-5 of a model (and its comparison with a reference) on labeled images;
    prints as the CLI's table."""

    result: Any  # edgemobile.eval.evaluate.EvalResult
    image_comparison: Any = None  # edgemobile.eval.outputs.ImageComparison, against an outputs file
    outputs: Any = None  # edgemobile.eval.outputs.ImageOutputs, each evaluated image's raw output

    @property
    def top1(self) -> float:
        return self.result.accuracies[0].top1

    @property
    def top5(self) -> float:
        return self.result.accuracies[0].top5

    @property
    def reference_top1(self) -> float | None:
        return self.result.accuracies[1].top1 if len(self.result.accuracies) > 1 else None

    @property
    def agreement(self) -> float | None:
        """Top-1 agreement with the reference, in %."""
        return self.result.comparison.top1_agreement if self.result.comparison else None

    @property
    def images(self) -> int:
        return self.result.accuracies[0].images

    def as_dict(self) -> dict:
        if self.image_comparison is None:
            return self.result.as_dict()
        return {**self.result.as_dict(), "image_comparison": self.image_comparison.as_dict()}

    def __str__(self) -> str:
        from edgemobile.eval.evaluate import format_table

        if self.image_comparison is None:
            return format_table(self.result)
        from edgemobile.eval.image_outputs import format_comparison

        return f"{format_table(self.result)}\n\n{format_comparison(self.image_comparison)}"

    def __repr__(self) -> str:
        ref = f", agreement {self.agreement:.2f} %" if self.agreement is not None else ""
        return f"<Evaluation top-1 {self.top1:.2f} %, top-5 {self.top5:.2f} % on {self.images} images{ref}>"

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython/Jupyter show the table
        printer.text(str(self))


@dataclasses.dataclass
class Predictions:
    """Top-k classes per image: ``items[i] = {"image": path, "top": [{"name", "id", "index",
    "probability"}, …]}``."""

    model: str
    items: list[dict]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def as_dict(self) -> dict:
        return {"model": self.model, "predictions": self.items}

    def __str__(self) -> str:
        lines = []
        for item in self.items:
            lines.append(str(item["image"]))
            for rank, e in enumerate(item["top"], 1):
                synset = f"  ({e['id']})" if e["id"] != e["name"] else ""
                lines.append(f"  {rank}. {e['probability']:7.2%}  {e['name']}{synset}")
        return "\n".join(lines)

    __repr__ = __str__


@dataclasses.dataclass
class BundleResult:
    """An Android bundle (``bundle.tflite`` + labels), and the folder it was written to."""

    bundle: Any  # edgemobile.deploy.bundle.Bundle
    folder: Path | None

    @property
    def tflite(self) -> bytes:
        return self.bundle.tflite

    @property
    def labels(self) -> list[str]:
        return list(self.bundle.info.labels)

    @property
    def notes(self) -> list[str]:
        """What the user should know about the conversion (the MobileNetV3 rewrite, int8 slower than float here)."""
        return list(self.bundle.notes)

    @property
    def warnings(self) -> list[str]:
        """What the int8 techniques skipped when this bundle's model was converted (from its
        provenance), and ops XNNPACK leaves to the builtin kernels."""
        provenance = (self.bundle.info.extra or {}).get("provenance") or {}
        return skipped_techniques(provenance.get("quantization")) + list(self.bundle.warnings)

    def write(self, folder: str | os.PathLike, force: bool = False) -> Path:
        from edgemobile.deploy.bundle import write_bundle

        self.folder = write_bundle(folder, self.bundle, force=force)
        return self.folder

    def __repr__(self) -> str:
        where = f"{self.folder}/ " if self.folder else ""
        return (f"<Bundle {where}({self.bundle.model_file} {len(self.tflite) / 1e6:.2f} MB + labels.txt): "
                f"{self.bundle.describe()}>")


# -- models --------------------------------------------------------------------------------
def resolve_model(model, alpha: float | None = None, resolution: int | None = None, weights=None,
                  preprocess: str | None = None, mean=None, std=None, crop_fraction: float | None = None,
                  labels=None, label_folder=None):
    """(variant, weights) for a zoo name or a user model (file or ``keras.Model``)."""
    from edgemobile.models.user import is_model_file, user_variant

    if isinstance(model, str) and not is_model_file(model):
        given = [flag for flag, value in (("preprocess", preprocess), ("mean", mean), ("std", std),
                                          ("crop_fraction", crop_fraction)) if value is not None]
        if given:
            raise EdgeMobileError(f"{', '.join(given)}: only for your own Keras models; zoo model {model} "
                                  "has its own preprocessing")
        from edgemobile.models.zoo import resolve

        variant = resolve(model, alpha, resolution)
        if labels:
            raise EdgeMobileError(f"labels: zoo model {model} has the 1000 ImageNet classes")
        return variant, weights if weights is not None else "imagenet"
    if alpha is not None:
        raise EdgeMobileError("alpha: only for zoo models; a Keras model file has its own width")
    if weights not in (None, "imagenet"):
        raise EdgeMobileError("weights: only for zoo models; a Keras model file carries its weights")
    user = user_variant(model, preprocess, resolution, mean, std, crop_fraction, labels, label_folder)
    return user.variant, str(user.path)


def calibration_set(calibration=None, num_calibration: int | None = None, seed: int = 0,
                    precision: str = "int8"):
    """The CalibrationSet a folder/manifest (default: the published ImageNet sample) gives,
    ``num_calibration`` images drawn stratified by class with ``seed``; None unless full-integer."""
    from edgemobile.quantization.convert import DEFAULT_NUM_CALIBRATION, CalibrationSet
    from edgemobile.quantization.tflite_converter import FULL_INTEGER

    if isinstance(calibration, CalibrationSet):
        return calibration
    if precision not in FULL_INTEGER:
        if calibration or num_calibration:
            raise EdgeMobileError("--calibration/--num-calibration only apply to --int8 or --uint8")
        return None
    from edgemobile.data.calibration_sets import resolve_calibration

    calibration = str(calibration) if calibration else None
    folder = resolve_calibration(calibration)
    # A manifest is an explicit selection: use all of it unless told otherwise.
    is_manifest = bool(calibration) and calibration.lower().endswith(".json")
    count = num_calibration or (sys.maxsize if is_manifest else DEFAULT_NUM_CALIBRATION)
    return CalibrationSet.from_folder(folder, count, seed, source=calibration or "imagenet_sample_1000 (default)")


def _techniques(techniques):
    from edgemobile.quantization.pipeline import DEFAULT, QuantOptions

    if techniques is None:
        return DEFAULT
    if isinstance(techniques, QuantOptions):
        return techniques
    if techniques == "plain":
        return QuantOptions.plain()
    if isinstance(techniques, dict):
        return dataclasses.replace(DEFAULT, **techniques)
    raise EdgeMobileError(f"techniques: give a QuantOptions, a dict of its fields or 'plain', not {techniques!r}")


def _prepared(model, precision, alpha, resolution, weights, calibration, num_calibration, seed,
              preprocess, mean, std, crop_fraction, labels):
    """(variant, weights, CalibrationSet, warnings) — labels may come from the calibration
    folders; calibration images of classes the model does not have are used, with a warning."""
    # Before the quantization modules, the model and any download: the runtime install stops here.
    require_converter(model if isinstance(model, (str, os.PathLike)) else getattr(model, "name", "model"))
    from edgemobile.quantization.convert import CalibrationSet
    from edgemobile.quantization.tflite_converter import FULL_INTEGER

    folder = None
    if isinstance(calibration, CalibrationSet):
        folder = calibration.root
    elif precision in FULL_INTEGER and calibration is not None and not str(calibration).lower().endswith(".json"):
        folder = calibration
    variant, weights = resolve_model(model, alpha, resolution, weights, preprocess, mean, std, crop_fraction,
                                     labels, folder)
    cal = calibration_set(calibration, num_calibration, seed, precision)
    warnings = []
    if cal is not None and variant.labels is not None:
        from edgemobile.data.datasets import calibration_warning

        warnings += filter(None, [calibration_warning(cal.root, cal.paths, variant.classes)])
    return variant, weights, cal, warnings


def conversion_inputs(model, precision: str = "int8", *, alpha: float | None = None, resolution: int | None = None,
                      weights=None, calibration=None, num_calibration: int | None = None, seed: int = 0,
                      preprocess: str | None = None, mean=None, std=None, crop_fraction: float | None = None,
                      labels=None):
    """(variant, weights, CalibrationSet, warnings) for a zoo name or a user model, resolved and
    checked exactly as :func:`convert` does (for commands that convert on their own, e.g. inspect)."""
    return _prepared(model, precision, alpha, resolution, weights, calibration, num_calibration, seed,
                     preprocess, mean, std, crop_fraction, labels)


# -- the four functions --------------------------------------------------------------------
def convert(model, precision: str = "float32", *, alpha: float | None = None, resolution: int | None = None,
            weights=None, calibration=None, num_calibration: int | None = None, seed: int = 0,
            techniques=None, preprocess: str | None = None, mean=None, std=None,
            crop_fraction: float | None = None, labels=None, output: str | os.PathLike | None = None,
            force: bool = False, progress: bool = True) -> Converted:
    """Convert a zoo model or your Keras model to TFLite at ``precision`` (float32, float16,
    dynamic, int8, uint8); full-integer models are calibrated on ``calibration`` (a folder,
    class-name folders included, or a manifest; images of classes the model does not have
    calibrate too, with a warning) and checked to be all-integer. Warnings are in
    ``.warnings`` and also emitted as :class:`~edgemobile.errors.EdgeMobileWarning`.

    Your model's preprocessing: ``preprocess`` (``"mobilenet"``, ``"mobilenet_v3"``,
    ``"mobileone"``) or ``mean``/``std`` (0..255 pixel units) and ``crop_fraction``; nothing
    when the model has its own Rescaling/Normalization layer. Labels: ``labels`` (a file,
    one per line) or the calibration folder's class-name folders. With ``output`` the .tflite
    is also written there (checked before converting; missing folders made; replaced only
    with ``force``)."""
    from edgemobile.outputs import check_output
    from edgemobile.quantization.convert import convert_variant

    if output is not None:
        check_output(output, force)
    variant, weights, cal, warnings = _prepared(model, precision, alpha, resolution, weights, calibration,
                                                num_calibration, seed, preprocess, mean, std, crop_fraction, labels)
    with quiet_keras():
        result = convert_variant(variant, precision, weights, cal, progress=progress,
                                 techniques=_techniques(techniques))
    converted = Converted(variant.name, precision, result.tflite, result.provenance, result.seconds,
                          result.quantization, warnings=warnings, notes=list(result.notes))
    converted.warnings += skipped_techniques(result.quantization)
    if cal is not None:  # full-integer: ops XNNPACK leaves to the builtin kernels, or int8 slower than float here
        from edgemobile.runtime.delegation import speed_report

        slow_ops, speed_notes = speed_report(result.tflite, str(output or variant.name), result.float_tflite)
        converted.warnings += slow_ops
        converted.notes += speed_notes
    if output is not None:
        converted.save(output, force=force)
    warn(converted.warnings)
    return converted


def skipped_techniques(quantization: dict | None) -> list[str]:
    """One warning per pattern the int8 techniques left alone (see quantization.guards)."""
    return [f"int8 techniques skipped {note}" for note in (quantization or {}).get("skipped", [])]


def default_output(model, precision: str, alpha: float | None = None, resolution: int | None = None) -> str:
    """``mobilenet_v1_1.0_224_int8.tflite``; ``flowers_int8.tflite`` for ``flowers.keras``."""
    from edgemobile.models.user import is_model_file, safe_name

    if is_model_file(model):
        return f"{safe_name(Path(model).stem)}_{precision}.tflite"
    from edgemobile.models.zoo import resolve
    from edgemobile.quantization.convert import default_output_name

    return default_output_name(resolve(model, alpha, resolution), precision)


def evaluate(model, data, reference=None, *, ground_truth=None, limit: int | None = None, seed: int = 0,
             mean=None, std=None, crop_fraction: float | None = None, labels=None,
             background_class: bool | None = None, threads: int | None = None, alpha: float | None = None,
             resolution: int | None = None, reference_weights=None, skip_bad_images: bool = False,
             outputs: str | os.PathLike | None = None, force: bool = False, cluster=None,
             cluster_data: str = "bytes", shard_size: int | None = None, runtime_env: dict | None = None,
             progress: bool = True) -> Evaluation:
    """Top-1/top-5 of ``model`` on the labeled images in ``data`` (synset or class-name
    folders, or ``ground_truth``), and with ``reference`` (a .tflite, a zoo name for its float
    Keras model, your Keras model, or an ``outputs`` file of another run, e.g. on the device)
    the agreement and output distance on the same images.

    An undecodable image raises :class:`~edgemobile.eval.evaluate.BadImageError` unless
    ``skip_bad_images``. ``outputs``: also write each image's raw output there (``.npz``).
    ``cluster``: a Ray address (``"local"``, ``"auto"``, ``"ray://HOST:PORT"``) or a
    :class:`~edgemobile.eval.cluster.RayCluster` to shard the images over."""
    from edgemobile.data.datasets import labeled_images, limit_pairs
    from edgemobile.eval import image_outputs
    from edgemobile.eval.evaluate import evaluate as run

    if outputs is not None:
        image_outputs.check_outputs_name(outputs, force)
    reference_file = None
    if reference is not None and isinstance(reference, (str, os.PathLike)) and image_outputs.is_outputs_file(reference):
        reference_file = image_outputs.read_outputs(reference)
    if cluster is not None and (outputs is not None or reference_file is not None):
        raise EdgeMobileError("--outputs and an outputs-file --reference record raw outputs on this machine "
                              "(the device); run them without --cluster")
    overrides = _overrides(mean, std, crop_fraction, labels, background_class)
    predictor = load(model, overrides, alpha, resolution, "imagenet", threads, weights_arg=None)
    if outputs is not None or reference_file is not None:
        predictor = image_outputs.RecordingPredictor(predictor)
    predictors = [predictor]
    if reference is not None and reference_file is None:
        provenance = (getattr(predictor, "info", None) and predictor.info.extra.get("provenance")) or {}
        alpha = alpha if alpha is not None else provenance.get("alpha")
        resolution = resolution if resolution is not None else provenance.get("resolution")
        predictors.append(load(reference, overrides, alpha, resolution, reference_weights or "imagenet", threads,
                               like=predictor, weights_arg="--reference-weights FILE"))
    pairs = labeled_images(data, predictor.classes, ground_truth)
    pairs = limit_pairs(pairs, data, limit, seed)
    with cluster_session(cluster, cluster_data, shard_size, runtime_env) as ray_cluster:
        result = run(predictors, pairs, data=str(data), progress=progress, skip_bad_images=skip_bad_images,
                     runner=ray_cluster.run_predictors if ray_cluster else None)
    evaluation = Evaluation(result)
    if outputs is not None or reference_file is not None:
        evaluation.outputs = predictor.outputs(image_outputs.image_ids([p for p, _ in result.evaluated], data),
                                               [y for _, y in result.evaluated])
    if reference_file is not None:
        evaluation.image_comparison = image_outputs.with_reference(result, evaluation.outputs, reference_file,
                                                                   str(reference))
    if outputs is not None:
        evaluation.outputs.write(outputs, force=force)
    return evaluation


@contextlib.contextmanager
def cluster_session(cluster, data: str = "bytes", shard_size: int | None = None, runtime_env: dict | None = None):
    """The RayCluster ``cluster`` names (None without one); one this made is disconnected on exit."""
    if cluster is None or not isinstance(cluster, (str, os.PathLike)):
        yield cluster  # None, or a RayCluster the caller owns
        return
    from edgemobile.eval.cluster import DEFAULT_SHARD_SIZE, RayCluster

    ray_cluster = RayCluster(str(cluster), data=data, shard_size=shard_size or DEFAULT_SHARD_SIZE,
                             runtime_env=runtime_env)
    try:
        yield ray_cluster
    finally:
        ray_cluster.close()


def predict(model, images: str | os.PathLike | Sequence, top_k: int = 5, *, mean=None, std=None,
            crop_fraction: float | None = None, labels=None, background_class: bool | None = None,
            threads: int | None = None) -> Predictions:
    """Softmax + the ``top_k`` classes (names from the model's labels) for each image."""
    from edgemobile.data.preprocessing import load_rgb
    from edgemobile.eval.evaluate import top_k_indices

    if isinstance(images, (str, os.PathLike)):
        images = [images]
    predictor = load(model, _overrides(mean, std, crop_fraction, labels, background_class), threads=threads)
    items = []
    for image in images:
        probs = predictor.predict(predictor.prepare(predictor.spec.crop_pixels(load_rgb(image)))[None])[0]
        entries = [{"index": int(i), "id": predictor.classes.ids[i], "name": predictor.classes.short_name(i),
                    "probability": float(probs[i])} for i in top_k_indices(probs, top_k)]
        items.append({"image": str(image), "top": entries})
    return Predictions(str(predictor.name), items)


def bundle(model, out: str | os.PathLike | None = None, precision: str | None = None, *, force: bool = False,
           alpha: float | None = None, resolution: int | None = None, weights=None, calibration=None,
           num_calibration: int | None = None, seed: int = 0, techniques=None, preprocess: str | None = None,
           mean=None, std=None, crop_fraction: float | None = None, labels=None,
           progress: bool = True) -> BundleResult:
    """An Android asset bundle (uint8 unless ``precision="float32"``), MediaPipe-checked;
    written to ``out`` (atomically, replaced only with ``force``) when given. ``model`` is a
    .tflite made by edgemobile (re-embedded and validated) or anything :func:`convert` takes."""
    from edgemobile.deploy.bundle import (
        android_precision,
        bundle_from_tflite,
        bundle_from_variant,
        check_bundle_folder,
    )

    tflite = _tflite_source(model)
    if tflite is not None:
        folder = check_bundle_folder(out, force) if out is not None else None
        made = bundle_from_tflite(tflite, folder.name if folder else _bundle_name(model))
    else:
        precision = android_precision(precision)
        folder = check_bundle_folder(out, force) if out is not None else None  # before the long work
        variant, weights, cal, warnings = _prepared(model, precision, alpha, resolution, weights, calibration,
                                                    num_calibration, seed, preprocess, mean, std, crop_fraction,
                                                    labels)
        with quiet_keras():
            made = bundle_from_variant(variant, precision, weights, cal, folder.name if folder else
                                       f"{variant.name}_{precision}", progress=progress,
                                       techniques=_techniques(techniques))
        made = dataclasses.replace(made, warnings=(*warnings, *made.warnings))
    result = BundleResult(made, None)
    if folder is not None:
        result.write(folder, force=force)
    warn(result.warnings)
    return result


def info(model):
    """What a .tflite (path, bytes or :class:`Converted`) carries: precision, tensors and their
    quantization, preprocessing, labels, provenance, ops and XNNPACK coverage — a
    :class:`~edgemobile.runtime.info.TFLiteInfo` that prints as a report. No TensorFlow."""
    from edgemobile.runtime.info import tflite_info

    return tflite_info(model.tflite if isinstance(model, Converted) else
                       bytes(model) if isinstance(model, (bytes, bytearray)) else model)


def zoo():
    """The zoo (``edgemobile models``): per family its alphas and resolutions (defaults marked),
    preprocessing and the weights files ``weights="imagenet"`` downloads — a
    :class:`~edgemobile.models.listing.ZooListing` that prints as a table. (Not ``em.models``:
    that name is the :mod:`edgemobile.models` package.)"""
    from edgemobile.models.listing import zoo_listing

    return zoo_listing()


# -- helpers -------------------------------------------------------------------------------
def load(model, overrides=None, alpha=None, resolution=None, weights="imagenet", threads=None, like=None,
         weights_arg: str | None = "--weights FILE"):
    """A predictor for anything the API takes as ``model`` (see module docstring);
    ``weights_arg`` names how the command takes a zoo model's weights file, in errors."""
    from edgemobile.eval.predictors import TFLitePredictor, load_predictor

    tflite = _tflite_source(model)
    if tflite is not None:
        name = f"{model.name}_{model.precision}.tflite (in memory)" if isinstance(model, Converted) else None
        return TFLitePredictor(tflite, overrides, num_threads=threads or 1, name=name)
    if not isinstance(model, (str, os.PathLike)):  # a keras.Model object
        from edgemobile.eval.predictors import KerasPredictor, user_reference

        quiet_tensorflow()
        return KerasPredictor(*user_reference(model, overrides, like))
    quiet_tensorflow()  # a zoo name or a Keras model file: a Keras model runs in TensorFlow
    with quiet_keras():
        return load_predictor(str(model), overrides, alpha, resolution, weights, num_threads=threads or 1, like=like,
                              weights_arg=weights_arg)


def _tflite_source(model):
    """The .tflite a ``model`` argument names (path or bytes), or None for a Keras model."""
    if isinstance(model, Converted):
        return model.tflite
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        from edgemobile.models.user import is_model_file

        if str(model).lower().endswith(".tflite") or (Path(model).exists() and not is_model_file(model)):
            return str(model)
    return None


def _bundle_name(model) -> str:
    return Path(str(model)).stem if isinstance(model, (str, os.PathLike)) else "model"


def _overrides(mean, std, crop_fraction, labels, background_class):
    from edgemobile.data.preprocessing import DEFAULT_CROP_FRACTION
    from edgemobile.eval.predictors import PreprocessOverrides

    crop_fraction = DEFAULT_CROP_FRACTION if crop_fraction is None else crop_fraction
    if not 0 < crop_fraction <= 1:
        raise EdgeMobileError(f"--crop-fraction must be in (0, 1], got {crop_fraction}")
    as_tuple = (lambda v: None if v is None else tuple(v) if isinstance(v, (list, tuple)) else (float(v),))
    return PreprocessOverrides(mean=as_tuple(mean), std=as_tuple(std), crop_fraction=crop_fraction,
                               labels=labels, background_class=background_class)
