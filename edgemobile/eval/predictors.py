"""Things that classify images — a .tflite file or a float Keras zoo model — behind one
interface, each with the preprocessing spec and class list it needs.

A predictor's ``predict`` takes a batch of inputs already prepared by its own ``spec`` and
returns probabilities over its ``classes`` (background column of 1001-output TF-slim
models dropped, softmax applied if the model emits logits).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from edgemobile.converter_install import require_converter
from edgemobile.data.labels import ClassList, imagenet_classes, read_label_file
from edgemobile.data.preprocessing import DEFAULT_CROP_FRACTION, PreprocessSpec
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import read_metadata
from edgemobile.networks.user import is_model_file, user_variant
from edgemobile.networks.zoo import resolve
from edgemobile.quantization.graph import inference_call
from edgemobile.runtime.interpreter import TFLiteClassifier, to_probabilities


@dataclasses.dataclass(frozen=True)
class PreprocessOverrides:
    """Preprocessing flags for models that carry no edgemobile metadata."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_fraction: float = DEFAULT_CROP_FRACTION
    labels: str | None = None
    background_class: bool | None = None  # None: infer from the output count (1001 → yes)


class TFLitePredictor:
    kind = "tflite"

    def __init__(self, path: str | os.PathLike, overrides: PreprocessOverrides | None = None, num_threads: int | None = 1,
                 name: str | None = None):
        """``path``: a .tflite file or its bytes; ``name`` labels it in results (default: the
        file name; for bytes, the name in its metadata)."""
        overrides = overrides or PreprocessOverrides()
        self.overrides, self.num_threads = overrides, num_threads  # to rebuild it elsewhere (cluster workers)
        in_memory = isinstance(path, (bytes, bytearray))
        self.path = Path("<in-memory model>") if in_memory else Path(path)
        path = bytes(path) if in_memory else self.path
        self.model = TFLiteClassifier(path, num_threads=num_threads)
        self.info = read_metadata(path)
        self.name = name or (f"{self.info.name} (in memory)" if in_memory and self.info and self.info.name
                             else self.path.name)
        self.spec, self.spec_source = self._choose_spec(overrides)
        self.classes, self.offset = self._choose_classes(overrides)
        self.pixel_offset = self.model.raw_pixel_offset(self.spec)

    def _choose_spec(self, o: PreprocessOverrides) -> tuple[PreprocessSpec, str]:
        size = self.model.input_size
        if o.mean is not None or o.std is not None:
            spec = PreprocessSpec.center_crop(
                size, mean=o.mean if o.mean is not None else (0.0,), std=o.std if o.std is not None else (1.0,),
                crop_fraction=o.crop_fraction,
            )
            return spec, "command-line flags"
        made_here = self.info is not None and bool(self.info.extra) and self.info.preprocess is not None
        if made_here:
            if self.info.preprocess.size != size:
                raise EdgeMobileError(
                    f"{self.path}: metadata says input size {self.info.preprocess.size} but the model takes {size}"
                )
            return self.info.preprocess, "model metadata"
        if self.model.input.quantized:
            # TFLite convention for integer image models: raw pixels go straight in, so the
            # input quantization itself defines the normalization.
            zero = self.model.input.zero_point + (128 if self.model.input.dtype == np.int8 else 0)
            spec = PreprocessSpec.center_crop(size, mean=float(zero), std=1.0 / self.model.input.scale,
                                              crop_fraction=o.crop_fraction)
            return spec, "input quantization (raw pixels)"
        if self.info is not None and self.info.normalization is not None:
            mean, std = self.info.normalization
            spec = PreprocessSpec.center_crop(size, mean=mean, std=std, crop_fraction=o.crop_fraction)
            return spec, "TFLite metadata normalization"
        raise EdgeMobileError(
            f"{self.path}: float model without edgemobile metadata; give its normalization with "
            "--mean/--std in 0..255 pixel units (e.g. --mean 127.5 --std 127.5 for inputs in [-1, 1])"
        )

    def _choose_classes(self, o: PreprocessOverrides) -> tuple[ClassList, int]:
        n = self.model.num_outputs
        background = o.background_class if o.background_class is not None else n == 1001
        offset = 1 if background else 0
        if o.labels:
            return read_label_file(o.labels, expected=n - offset), offset
        if self.info is not None and self.info.labels:
            labels = list(self.info.labels)
            if len(labels) == n and background:
                labels = labels[1:]
            if len(labels) != n - offset:
                raise EdgeMobileError(f"{self.path}: metadata has {len(labels)} labels for {n} outputs")
            kind = self.info.extra.get("classes")
            if kind == "imagenet-1k" or (len(labels) == 1000 and kind != "user"):
                return imagenet_classes(), offset  # synset ids match dataset folders
            return ClassList(ids=tuple(labels), names=tuple(labels)), offset
        if n - offset == 1000:
            return imagenet_classes(), offset
        raise EdgeMobileError(
            f"{self.path}: {n} outputs and no labels in the model; pass --labels FILE (one class per line)"
        )

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """Cropped uint8 pixels → exactly what the interpreter is fed (runs on decode threads)."""
        if self.pixel_offset is not None:
            return (pixels.astype(np.int16) + self.pixel_offset).astype(self.model.input.dtype)
        return self.model.encode(self.spec.normalize(pixels))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of :meth:`prepare` outputs."""
        return self.probabilities(self.raw_scores(batch))

    def raw_scores(self, batch: np.ndarray) -> np.ndarray:
        """The output tensors as the interpreter returns them (int8/uint8 for integer models)."""
        return np.stack([self.model.run_raw(x) for x in batch])

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`raw_scores` → probabilities over :attr:`classes`."""
        return scores_to_probabilities(self.model.dequantize(raw), self.model.outputs_probabilities, self.offset)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "input": f"{self.model.input.dtype.name} {list(self.model.input.shape)}",
            "preprocessing": self.spec.to_dict(),
            "preprocessing_source": self.spec_source,
            "outputs": self.model.num_outputs,
            "background_class_dropped": bool(self.offset),
            "input_feeding": "raw pixels" if self.pixel_offset is not None else "quantized normalized input",
            "runtime": self.model.backend,
        }


def scores_to_probabilities(scores: np.ndarray, already_probabilities: bool, offset: int = 0) -> np.ndarray:
    """Dequantized output scores (images, outputs) → probabilities over the classes: softmax
    unless the model ends in one, and the first ``offset`` (background) columns dropped."""
    probs = to_probabilities(scores, already_probabilities)[:, offset:]
    if offset:
        probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    return probs


class KerasPredictor:
    """The float Keras zoo model — the reference int8 is measured against."""

    kind = "keras"

    def __init__(self, variant, weights: str | os.PathLike | None = "imagenet",
                 weights_arg: str | None = "--weights FILE"):
        self.variant = variant
        self.weights = weights
        self.name = f"{variant.name} (Keras float)"
        self.model = variant.build(weights, weights_arg)
        self.call = inference_call(self.model)
        self.spec = variant.preprocess
        self.spec_source = "zoo" if variant.labels is None and not variant.option("user_model") else "user model"
        self.classes = variant.classes

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return self.spec.normalize(pixels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.call(batch), dtype=np.float32)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.variant.name,
            "weights": str(self.weights),
            "preprocessing": self.spec.to_dict(),
        }


def load_predictor(
    ref: str,
    overrides: PreprocessOverrides | None = None,
    alpha: float | None = None,
    resolution: int | None = None,
    weights: str | None = "imagenet",
    num_threads: int | None = 1,
    like=None,
    weights_arg: str | None = "--weights FILE",
):
    """A .tflite path, a saved Keras model file (``.keras``/``.h5``) or a zoo model name
    (float Keras model, needs TensorFlow; ``weights_arg``: how the command takes its weights
    file, see :meth:`~edgemobile.networks.zoo.ModelVariant.weights_path`). A Keras model file
    takes its spec and labels from ``overrides``, else from ``like`` (the converted model it
    is the reference of), else from its own input normalization (:mod:`edgemobile.networks.user`)."""
    if is_model_file(ref):
        _require_tensorflow(ref)
        return KerasPredictor(*user_reference(ref, overrides, like))
    if ref.lower().endswith(".tflite") or Path(ref).is_file():
        return TFLitePredictor(ref, overrides, num_threads=num_threads)
    variant = resolve(ref, alpha, resolution)
    _require_tensorflow(ref)
    return KerasPredictor(variant, weights, weights_arg)


def user_reference(path: str, overrides: PreprocessOverrides | None, like=None):
    """(variant, model file) of a user's Keras model used as a float reference."""
    o = overrides or PreprocessOverrides()
    mean, std, labels = o.mean, o.std, o.labels
    label_names = None
    if like is not None and mean is None and std is None:
        info = getattr(like, "info", None)
        trained = ((info.extra.get("android") or {}).get("preprocess_trained") if info is not None else None)
        spec = PreprocessSpec.from_dict(trained) if trained else like.spec
        mean, std = spec.mean, spec.std
        crop = spec.size / spec.resize_shorter
    else:
        crop = o.crop_fraction
    if like is not None and not labels:
        label_names = like.classes
    user = user_variant(path, mean=mean, std=std, crop_fraction=crop, labels=labels,
                        classes=label_names)
    return user.variant, str(user.path)


def _require_tensorflow(ref: str) -> None:
    require_converter(ref, "running a Keras model")
