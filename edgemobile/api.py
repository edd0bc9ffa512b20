"""The Python API: ``import edgemobile as em``.

::

    result = em.convert("flowers.keras", "int8", calibration="flowers/train", preprocess="mobilenet")
    result.save("flowers_int8.tflite")
    print(em.evaluate(result, "flowers/val", reference="flowers.keras"))
    print(em.predict("flowers_int8.tflite", ["daisy.jpg"]))
    em.bundle("flowers.keras", "android_assets/flowers", calibration="flowers/train", preprocess="mobilenet")
    print(em.info("flowers_int8.tflite"))  # what the file carries
    print(em.models())  # the zoo models, their defaults and weights files

``model`` is a zoo name (``"mobilenet"``), a saved Keras model (``.keras``/``.h5``), a
``keras.Model`` object, a :class:`ModelRequest`, a ``.tflite`` file, its bytes or a
:class:`Converted` result. Every CLI command is a thin layer over one of these functions
(``eval`` over :func:`evaluate`), so both give the same results; each returns a result that
prints as the command's output (:mod:`edgemobile.results`). Functions on ``.tflite`` models
(``evaluate``, ``predict``, ``bench``, ``info``, ``bundle`` of a .tflite) import no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

from edgemobile.converter_install import quiet_keras, quiet_tensorflow, require_converter
from edgemobile.data.calibration_sets import resolve_calibration
from edgemobile.data.datasets import calibration_warning, labeled_images, limit_pairs
from edgemobile.data.preprocessing import DEFAULT_CROP_FRACTION, load_rgb
from edgemobile.deploy.bench import benchmark
from edgemobile.deploy.bundle import android_precision, bundle_from_tflite, bundle_from_variant, check_bundle_folder
from edgemobile.errors import EdgeMobileError, warn
from edgemobile.eval import image_outputs
from edgemobile.eval.cluster import DEFAULT_SHARD_SIZE, RayCluster
from edgemobile.eval.evaluate import evaluate as run
from edgemobile.eval.evaluate import top_k_indices
from edgemobile.eval.predictors import (
    KerasPredictor,
    PreprocessOverrides,
    TFLitePredictor,
    load_predictor,
    user_reference,
)
from edgemobile.eval.report import ModelSpec, common_classes, run_report
from edgemobile.networks.listing import zoo_listing
from edgemobile.networks.request import ModelRequest
from edgemobile.networks.user import is_model_file, safe_name
from edgemobile.networks.zoo import resolve
from edgemobile.outputs import check_output
from edgemobile.quantization.convert import (
    DEFAULT_NUM_CALIBRATION,
    CalibrationSet,
    convert_variant,
    default_output_name,
    require_held_apart,
)
from edgemobile.quantization.diagnosis import diagnose
from edgemobile.quantization.target import Target
from edgemobile.quantization.techniques.recipe import recipe_from
from edgemobile.quantization.tflite_converter import FULL_INTEGER
from edgemobile.results import (
    BenchResult,
    BundleResult,
    Converted,
    Evaluation,
    InspectResult,
    Predictions,
    ReportResult,
    check_report_folder,
    skipped_techniques,
)
from edgemobile.runtime.delegation import speed_report
from edgemobile.runtime.tflite_info import tflite_info

__all__ = ["Converted", "Evaluation", "Predictions", "BundleResult", "InspectResult", "BenchResult", "ReportResult",
           "ModelRequest", "convert", "evaluate", "predict", "bundle", "bench", "inspect", "report", "info", "models"]


# -- models --------------------------------------------------------------------------------
def model_request(model, *, alpha: float | None = None, resolution: int | None = None, weights=None,
                  preprocess: str | None = None, mean=None, std=None, crop_fraction: float | None = None,
                  labels=None) -> ModelRequest:
    """The :class:`~edgemobile.networks.request.ModelRequest` the API's model arguments name
    (``model`` may already be one; then no other setting may be given)."""
    settings = dict(alpha=alpha, resolution=resolution, weights=weights, preprocess=preprocess, mean=mean, std=std,
                    crop_fraction=crop_fraction, labels=labels)
    if isinstance(model, ModelRequest):
        given = [name for name, value in settings.items() if value is not None]
        if given:
            raise EdgeMobileError(f"{', '.join(given)}: already part of the ModelRequest given as the model")
        return model
    return ModelRequest(model, **settings)


def calibration_set(calibration=None, num_calibration: int | None = None, seed: int = 0,
                    precision: str = "int8"):
    """The CalibrationSet a folder/manifest (default: the published ImageNet sample) gives,
    ``num_calibration`` images drawn stratified by class with ``seed``; None unless full-integer."""
    if isinstance(calibration, CalibrationSet):
        return calibration
    if precision not in FULL_INTEGER:
        if calibration or num_calibration:
            raise EdgeMobileError("--calibration/--num-calibration only apply to --int8 or --uint8")
        return None
    calibration = str(calibration) if calibration else None
    folder = resolve_calibration(calibration)
    # A manifest is an explicit selection: use all of it unless told otherwise.
    is_manifest = bool(calibration) and calibration.lower().endswith(".json")
    count = num_calibration or (sys.maxsize if is_manifest else DEFAULT_NUM_CALIBRATION)
    return CalibrationSet.from_folder(folder, count, seed, source=calibration or "imagenet_sample_1000 (default)")


def _prepared(request: ModelRequest, precision: str, calibration, num_calibration, seed):
    """(variant, weights, CalibrationSet, warnings) — labels may come from the calibration
    folders; calibration images of classes the model does not have are used, with a warning."""
    # Before the model is built or anything downloaded: the runtime install stops here.
    require_converter(request.name)
    folder = None
    if isinstance(calibration, CalibrationSet):
        folder = calibration.root
    elif precision in FULL_INTEGER and calibration is not None and not str(calibration).lower().endswith(".json"):
        folder = calibration
    if folder is not None and request.label_folder is None:
        request = dataclasses.replace(request, label_folder=folder)
    variant, weights = request.resolve()
    cal = calibration_set(calibration, num_calibration, seed, precision)
    warnings = []
    if cal is not None and variant.labels is not None:
        warnings += filter(None, [calibration_warning(cal.root, cal.paths, variant.classes)])
    return variant, weights, cal, warnings


# -- the four functions --------------------------------------------------------------------
def convert(model, precision: str = "float32", *, alpha: float | None = None, resolution: int | None = None,
            weights=None, calibration=None, num_calibration: int | None = None, seed: int = 0,
            techniques=None, preprocess: str | None = None, mean=None, std=None,
            crop_fraction: float | None = None, labels=None, output: str | os.PathLike | None = None,
            force: bool = False, min_agreement: float | None = None, max_drop: float | None = None,
            validation=None, all_integer: bool = False, keep_float: Sequence[str] = (),
            progress: bool = True) -> Converted:
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
    with ``force``).

    Accuracy target (full-integer): ``min_agreement`` (fraction of images whose top-1 is the
    float model's) and/or ``max_drop`` (top-1 fraction lost, needs labeled images), measured on
    held-apart calibration images or on ``validation`` (a folder): the fastest of the
    escalating candidates that meets it (``.search`` holds them all), or an error naming the
    closest; ``all_integer`` keeps only all-integer candidates. ``keep_float``: Keras layer
    names kept float instead (see ``inspect``)."""
    if output is not None:
        check_output(output, force)
    target = accuracy_target(min_agreement, max_drop, validation, all_integer)
    request = model_request(model, alpha=alpha, resolution=resolution, weights=weights, preprocess=preprocess,
                            mean=mean, std=std, crop_fraction=crop_fraction, labels=labels)
    variant, weights, cal, warnings = _prepared(request, precision, calibration, num_calibration, seed)
    with quiet_keras():
        result = convert_variant(variant, precision, weights, cal, progress=progress,
                                 techniques=recipe_from(techniques), target=target, keep_float=tuple(keep_float))
    converted = Converted(variant.name, precision, result.tflite, result.provenance, result.seconds,
                          result.quantization, warnings=warnings, notes=list(result.notes), search=result.search)
    converted.warnings += skipped_techniques(result.quantization)
    if cal is not None:  # full-integer: ops XNNPACK leaves to the builtin kernels, or int8 slower than float here
        slow_ops, speed_notes = speed_report(result.tflite, str(output or variant.name), result.float_tflite)
        converted.warnings += slow_ops
        converted.notes += speed_notes
    if output is not None:
        converted.save(output, force=force)
    warn(converted.warnings)
    return converted


def default_output(model, precision: str, alpha: float | None = None, resolution: int | None = None) -> str:
    """``mobilenet_v1_1.0_224_int8.tflite``; ``flowers_int8.tflite`` for ``flowers.keras``."""
    if is_model_file(model):
        return f"{safe_name(Path(model).stem)}_{precision}.tflite"
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

    An undecodable image raises :class:`~edgemobile.errors.BadImageError` unless
    ``skip_bad_images``. ``outputs``: also write each image's raw output there (``.npz``).
    ``cluster``: a Ray address (``"local"``, ``"auto"``, ``"ray://HOST:PORT"``) or a
    :class:`~edgemobile.eval.cluster.RayCluster` to shard the images over."""
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
           min_agreement: float | None = None, max_drop: float | None = None, validation=None,
           all_integer: bool = False, keep_float: Sequence[str] = (), progress: bool = True) -> BundleResult:
    """An Android asset bundle (uint8 unless ``precision="float32"``), MediaPipe-checked;
    written to ``out`` (atomically, replaced only with ``force``) when given. ``model`` is a
    .tflite made by edgemobile (re-embedded and validated) or anything :func:`convert` takes,
    with :func:`convert`'s accuracy target or ``keep_float``."""
    target = accuracy_target(min_agreement, max_drop, validation, all_integer)
    tflite = _tflite_source(model)
    if tflite is not None:
        folder = check_bundle_folder(out, force) if out is not None else None
        made = bundle_from_tflite(tflite, folder.name if folder else _bundle_name(model))
    else:
        precision = android_precision(precision)
        folder = check_bundle_folder(out, force) if out is not None else None  # before the long work
        request = model_request(model, alpha=alpha, resolution=resolution, weights=weights, preprocess=preprocess,
                                mean=mean, std=std, crop_fraction=crop_fraction, labels=labels)
        variant, weights, cal, warnings = _prepared(request, precision, calibration, num_calibration, seed)
        with quiet_keras():
            made = bundle_from_variant(variant, precision, weights, cal, folder.name if folder else
                                       f"{variant.name}_{precision}", progress=progress,
                                       techniques=recipe_from(techniques), target=target,
                                       keep_float=tuple(keep_float))
        made = dataclasses.replace(made, warnings=(*warnings, *made.warnings))
    result = BundleResult(made, None)
    if folder is not None:
        result.write(folder, force=force)
    warn(result.warnings)
    return result


def accuracy_target(min_agreement: float | None = None, max_drop: float | None = None, validation=None,
                    all_integer: bool = False) -> Target | None:
    """The :class:`~edgemobile.quantization.target.Target` these settings ask for (None: no target)."""
    if min_agreement is None and max_drop is None:
        if validation is not None or all_integer:
            raise EdgeMobileError("--validation and --all-integer go with an accuracy target: add --min-agreement A "
                                  "and/or --max-drop D")
        return None
    if validation is not None and not Path(validation).is_dir():
        raise EdgeMobileError(f"--validation {validation}: not a folder of images")
    return Target(min_agreement, max_drop, Path(validation) if validation is not None else None, all_integer)


def info(model):
    """What a .tflite (path, bytes or :class:`Converted`) carries: precision, tensors and their
    quantization, preprocessing, labels, provenance, ops and XNNPACK coverage — a
    :class:`~edgemobile.runtime.tflite_info.TFLiteInfo` that prints as a report. No TensorFlow."""
    return tflite_info(model.tflite if isinstance(model, Converted) else
                       bytes(model) if isinstance(model, (bytes, bytearray)) else model)


def models():
    """The zoo (``edgemobile models``): per family its alphas and resolutions (defaults marked),
    preprocessing and the weights files ``weights="imagenet"`` downloads — a
    :class:`~edgemobile.networks.listing.ZooListing` that prints as a table."""
    return zoo_listing()


def inspect(model, *, alpha: float | None = None, resolution: int | None = None, weights=None, calibration=None,
            num_calibration: int | None = None, seed: int = 0, techniques=None, images: int = 32,
            sensitivity: bool = False, sensitivity_images: int = 64, preprocess: str | None = None, mean=None,
            std=None, crop_fraction: float | None = None, labels=None, progress: bool = True) -> InspectResult:
    """Where int8 loses accuracy, layer by layer: ``model`` (anything :func:`convert` takes) is
    converted to int8 with ``techniques`` as :func:`convert` would, and every intermediate
    tensor is compared with the float model on ``images`` calibration images (cumulative and
    own-grid SQNR, weight SQNR and per-channel weight ranges). ``sensitivity``: also rank the
    layers by what quantizing each alone costs, on ``sensitivity_images`` images (simulation)."""
    request = model_request(model, alpha=alpha, resolution=resolution, weights=weights, preprocess=preprocess,
                            mean=mean, std=std, crop_fraction=crop_fraction, labels=labels)
    variant, weights, cal, warnings = _prepared(request, "int8", calibration, num_calibration, seed)
    with quiet_keras():
        diagnosis = diagnose(variant, weights, cal, recipe_from(techniques), images=images,
                             sensitivity_images=sensitivity_images if sensitivity else 0, progress=progress)
    result = InspectResult(diagnosis, warnings + skipped_techniques(diagnosis["conversion"]),
                           list(diagnosis.get("notes") or ()))
    warn(result.warnings)
    return result


def bench(model, *, threads: Sequence[int] = (1,), xnnpack: Sequence[bool] = (True,), runs: int = 50,
          warmup: int = 5, profile: bool = False, reference=None, progress: bool = True) -> BenchResult:
    """Latency of a .tflite ``model`` (path): median and p90 of ``runs`` invokes after
    ``warmup`` for every ``threads`` × ``xnnpack`` setting, model size, peak resident memory;
    ``profile``: each op of the first setting timed alone; ``reference`` (e.g. the float
    model an int8 one was made from): timed too, right after ``model`` in each setting. No
    TensorFlow."""
    return BenchResult(benchmark(model, threads=list(threads), xnnpack=list(xnnpack), runs=runs, warmup=warmup,
                                 profile=profile, progress=progress, reference=reference))


def report(models: Sequence, data, out: str | os.PathLike | None = None, *, calibration=None,
           num_calibration: int | None = None, seed: int = 0, techniques=None, ablation: bool = False,
           limit: int | None = None, bench_runs: int = 30, preprocess: str | None = None, mean=None, std=None,
           crop_fraction: float | None = None, labels=None, cluster=None, cluster_data: str = "bytes",
           shard_size: int | None = None, runtime_env: dict | None = None,
           conversion_memory_gb: float | None = None, min_agreement: float | None = None,
           max_drop: float | None = None, all_integer: bool = False, force: bool = False,
           progress: bool = True) -> ReportResult:
    """Float vs int8 top-1/top-5 (with intervals), agreement, size and latency of several
    ``models`` on the labeled images in ``data``: each model is a zoo name, a ``report`` spec
    (``"mobilenet:alpha=0.25,weights=FILE,label=TEXT"``, ``"flowers.keras:labels=FILE"``) or a
    :class:`~edgemobile.networks.request.ModelRequest`. ``preprocess``/``mean``/``std``/
    ``crop_fraction``/``labels`` apply to Keras model files that do not set their own.
    ``ablation``: one int8 model per technique configuration. ``bench_runs``: timed one-thread
    invokes per model (0: no latency, no plot). ``cluster``: as for :func:`evaluate`, and each
    conversion becomes a Ray task declaring ``conversion_memory_gb``. Accuracy target
    (``min_agreement``, ``max_drop``, ``all_integer`` as for :func:`convert`): each int8 model is
    the fastest candidate that meets it, measured on held-apart calibration images; every
    model's candidates are in the result (its int8 row's ``candidates``), the Markdown and
    report_candidates.png, and a model that misses it keeps its float row, its int8 row
    carrying the ``error``. Written to ``out`` (report.md, report.json, report.png,
    report_candidates.png) when given, checked before any work."""
    target = accuracy_target(min_agreement, max_drop, None, all_integer)
    if bench_runs < 0:
        raise EdgeMobileError(f"bench runs must be 0 or more, got {bench_runs}")
    if conversion_memory_gb is not None and conversion_memory_gb <= 0:
        raise EdgeMobileError(f"conversion memory must be positive, got {conversion_memory_gb:g}")
    folder = check_report_folder(out, force) if out is not None else None
    if isinstance(models, (str, ModelRequest)):
        models = [models]
    # a user model's labels: ``labels``, else the class-name folders of the calibration images, else of ``data``
    label_folder = calibration if calibration and Path(str(calibration)).is_dir() else data
    flags = dict(preprocess=preprocess, mean=mean, std=std, crop_fraction=crop_fraction, labels=labels)
    specs = [ModelSpec(m) if isinstance(m, ModelRequest) else
             ModelSpec.parse(str(m), **flags, label_folder=label_folder) for m in models]
    given = [k for k, v in flags.items() if v is not None]
    if given and not any(is_model_file(spec.name) for spec in specs):
        raise EdgeMobileError(f"{', '.join(given)}: only for your own Keras model files; zoo models have their own "
                              "preprocessing and labels")
    require_converter(specs[0].name, "report (converting to float32 and int8)")
    with quiet_keras():  # unknown names, bad files and settings, other classes, missing weights: before any work
        common_classes(specs)
        for spec in specs:
            spec.fetch_weights()
    cal = calibration_set(calibration, num_calibration, seed, "int8")
    if target is not None:
        require_held_apart(len(cal.paths), validation=False)  # before any conversion
    with quiet_keras(), cluster_session(cluster, cluster_data, shard_size, runtime_env) as ray_cluster:
        result = ReportResult(run_report(specs, data, cal, recipe_from(techniques), ablation=ablation, limit=limit,
                                         seed=seed, bench_runs=bench_runs, progress=progress, cluster=ray_cluster,
                                         conversion_memory_gb=conversion_memory_gb, target=target))
    if folder is not None:
        result.write(folder, force=force)
    return result


# -- helpers -------------------------------------------------------------------------------
def load(model, overrides=None, alpha=None, resolution=None, weights="imagenet", threads=None, like=None,
         weights_arg: str | None = "--weights FILE"):
    """A predictor for anything the API takes as ``model`` (see module docstring);
    ``weights_arg`` names how the command takes a zoo model's weights file, in errors."""
    tflite = _tflite_source(model)
    if tflite is not None:
        name = f"{model.name}_{model.precision}.tflite (in memory)" if isinstance(model, Converted) else None
        return TFLitePredictor(tflite, overrides, num_threads=threads or 1, name=name)
    if not isinstance(model, (str, os.PathLike)):  # a keras.Model object
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
        if str(model).lower().endswith(".tflite") or (Path(model).exists() and not is_model_file(model)):
            return str(model)
    return None


def _bundle_name(model) -> str:
    return Path(str(model)).stem if isinstance(model, (str, os.PathLike)) else "model"


def _overrides(mean, std, crop_fraction, labels, background_class):
    crop_fraction = DEFAULT_CROP_FRACTION if crop_fraction is None else crop_fraction
    if not 0 < crop_fraction <= 1:
        raise EdgeMobileError(f"--crop-fraction must be in (0, 1], got {crop_fraction}")
    as_tuple = (lambda v: None if v is None else tuple(v) if isinstance(v, (list, tuple)) else (float(v),))
    return PreprocessOverrides(mean=as_tuple(mean), std=as_tuple(std), crop_fraction=crop_fraction,
                               labels=labels, background_class=background_class)
