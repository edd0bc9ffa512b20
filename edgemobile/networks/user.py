"""A user's own Keras classifier (``--model flowers.keras``) as a :class:`ModelVariant`, so
it converts, evaluates and bundles through exactly the code zoo models use.

What a saved model does not say is made explicit here, once:

- **preprocessing**: a zoo family's spec (``--preprocess mobilenet|mobilenet_v3|mobileone``)
  or explicit ``--mean/--std/--crop-fraction``, at the model's own (fixed) input size. A
  ``Rescaling``/``Normalization`` layer before the model's first conv/dense layer is detected:
  the model then takes raw 0..255 pixels (mean 0, std 1) and flags that would normalize a
  second time are refused;
- **labels**: ``--labels FILE`` (one per line, output order) or the class-name folders of the
  calibration/eval data (sorted, as ``keras.utils.image_dataset_from_directory`` numbers
  them); their count must be the model's output count;
- **provenance**: the model file's sha256 (the variant's "weights" are the model file itself).

TensorFlow is imported only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from edgemobile.data.datasets import folder_classes
from edgemobile.data.labels import ClassList, imagenet_classes, read_label_file
from edgemobile.data.preprocessing import DEFAULT_CROP_FRACTION, PreprocessSpec
from edgemobile.errors import BadModelFileError, EdgeMobileError, first_line
from edgemobile.networks.zoo import MODEL_SUFFIXES, ModelVariant, get_family

# --preprocess NAME → the zoo family whose spec it is.
PRESETS = {"mobilenet": "mobilenet_v1", "mobilenet_v3": "mobilenet_v3_small", "mobileone": "mobileone_s0"}
PREPROCESS_CHOICES = tuple(PRESETS)
_NORMALIZING = ("Rescaling", "Normalization")
_STOP = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "Conv2DTranspose")


def is_model_file(ref: Any) -> bool:
    """True for a path naming a saved Keras model (``.keras`` or full-model ``.h5``)."""
    return isinstance(ref, (str, os.PathLike)) and Path(ref).suffix.lower() in MODEL_SUFFIXES


def load_keras_model(path: str | os.PathLike):
    """Load a saved Keras model (no training state), or raise one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeMobileError(f"{path}: no such Keras model file")
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras, h5py and zipfile raise many types for a wrong file
        first = first_line(exc)
        hint = " (a weights-only .h5 has no model: save the whole model with model.save)" \
            if path.suffix.lower() == ".h5" else ""
        raise BadModelFileError(f"{path}: not a loadable Keras model{hint}: {first[:200]}") from None
    if not isinstance(model, keras.Model):
        raise BadModelFileError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    return model


def input_normalization(model) -> list[str]:
    """The ``Rescaling``/``Normalization`` layers a model applies to its input before its
    first conv/dense layer (nested models such as a ``keras.applications`` backbone
    included), as ``"name (Class)"``."""
    found: list[str] = []

    def walk(layers) -> bool:  # True once the first conv/dense layer is reached
        for layer in layers:
            kind = type(layer).__name__
            if hasattr(layer, "layers") and layer.layers:
                if walk(layer.layers):
                    return True
            elif kind in _NORMALIZING:
                found.append(f"{layer.name} ({kind})")
            elif kind in _STOP:
                return True
        return False

    walk(model.layers)
    return found


def preset_spec(name: str, resolution: int, crop_fraction: float | None = None) -> PreprocessSpec:
    """A zoo family's preprocessing (mean/std and crop) at ``resolution``."""
    if name not in PREPROCESS_CHOICES:
        raise EdgeMobileError(f"--preprocess {name}: unknown; choose from {', '.join(PREPROCESS_CHOICES)}")

    family = get_family(PRESETS[name])
    spec = family.variant().preprocess
    fraction = crop_fraction if crop_fraction is not None else spec.size / spec.resize_shorter
    return PreprocessSpec.center_crop(resolution, spec.mean, spec.std, fraction, spec.interpolation)


def user_spec(model, source: str, preprocess: str | None = None, resolution: int | None = None,
              mean=None, std=None, crop_fraction: float | None = None) -> PreprocessSpec:
    """The one preprocessing spec of a user model (module docstring)."""
    size = model_resolution(model, source)
    if resolution is not None and resolution != size:
        raise EdgeMobileError(f"--resolution {resolution}: {source} takes {size}x{size} inputs")
    if crop_fraction is not None and not 0 < crop_fraction <= 1:
        raise EdgeMobileError(f"--crop-fraction must be in (0, 1], got {crop_fraction}")
    inside = input_normalization(model)
    explicit = mean is not None or std is not None
    if preprocess and explicit:
        raise EdgeMobileError("give either --preprocess or --mean/--std, not both")
    if preprocess:
        spec = preset_spec(preprocess, size, crop_fraction)
        flag = f"--preprocess {preprocess}"
    elif explicit:
        spec = PreprocessSpec.center_crop(size, mean if mean is not None else 0.0, std if std is not None else 1.0,
                                          crop_fraction or DEFAULT_CROP_FRACTION)
        flag = "--mean/--std"
    elif inside:
        return PreprocessSpec.center_crop(size, 0.0, 1.0, crop_fraction or DEFAULT_CROP_FRACTION)
    else:
        raise EdgeMobileError(
            f"{source}: say how its inputs are normalized: --preprocess {'|'.join(PREPROCESS_CHOICES)} "
            "(the zoo families' specs) or --mean/--std in 0..255 pixel units (the model has no "
            "Rescaling/Normalization layer of its own)"
        )
    raw = spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0)
    if inside and not raw:
        raise EdgeMobileError(
            f"{source}: normalizes its input itself ({', '.join(inside)}), so {flag} would normalize twice; "
            "drop it (the model takes raw 0..255 pixels) or give --mean 0 --std 1"
        )
    if raw and not inside and preprocess:
        raise EdgeMobileError(
            f"{source}: {flag} feeds raw 0..255 pixels, but the model has no Rescaling/Normalization layer "
            "before its first conv; use --preprocess mobilenet for [-1, 1] inputs, or --mean 0 --std 1 if "
            "it really was trained on raw pixels"
        )
    return spec


def model_resolution(model, source: str) -> int:
    shape = _single(model.input_shape, "inputs", source)
    if len(shape) != 4 or shape[-1] != 3:
        raise EdgeMobileError(f"{source}: input shape {tuple(shape)} is not an RGB image batch (N, H, W, 3)")
    if shape[1] is None or shape[2] is None:
        raise EdgeMobileError(f"{source}: has a dynamic input size {tuple(shape)}; save it with a fixed "
                              "input_shape (a dynamic shape also breaks XNNPACK)")
    if shape[1] != shape[2]:
        raise EdgeMobileError(f"{source}: input {shape[1]}x{shape[2]} is not square")
    return int(shape[1])


def _single(shape, what: str, source: str):
    """The one input/output shape of a model (Keras gives a list for several)."""
    if isinstance(shape, list):
        if len(shape) != 1:
            raise EdgeMobileError(f"{source}: has {len(shape)} {what}; an image classifier has one")
        shape = shape[0]
    return shape


def num_outputs(model, source: str) -> int:
    shape = _single(model.output_shape, "outputs", source)
    if len(shape) != 2 or not shape[1]:
        raise EdgeMobileError(f"{source}: output shape {tuple(shape)} is not (N, classes)")
    return int(shape[1])


def user_classes(count: int, source: str, labels: str | os.PathLike | None = None,
                 folder: str | os.PathLike | None = None) -> ClassList:
    """The model's classes: ``labels`` file, else the class-name folders of ``folder``; the
    count must be ``count`` (the model's outputs)."""
    if labels:
        return read_label_file(labels, expected=count)
    if folder is not None and Path(folder).is_dir():
        classes = folder_classes(folder)
        if classes is not None:
            if len(classes) != count:
                raise EdgeMobileError(
                    f"{folder}: has {len(classes)} class folders ({', '.join(classes.names[:10])}) but {source} "
                    f"has {count} outputs; pass --labels FILE or calibrate on folders of exactly its classes"
                )
            return classes
    if count == 1000:
        return imagenet_classes()
    raise EdgeMobileError(
        f"{source}: {count} outputs and no labels; pass --labels FILE (one class per line, in output order) "
        "or calibrate on class-name folders (DIR/daisy/*.jpg, …)"
    )


@dataclasses.dataclass(frozen=True)
class UserModel:
    """A user model resolved for conversion: the variant (spec, labels, builder) and the
    file it is loaded from (its sha256 goes into the provenance)."""

    variant: ModelVariant
    path: Path
    input_normalization: tuple[str, ...]


def user_variant(model, preprocess: str | None = None, resolution: int | None = None, mean=None, std=None,
                 crop_fraction: float | None = None, labels: str | os.PathLike | None = None,
                 label_folder: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
                 classes: ClassList | None = None) -> UserModel:
    """Resolve a saved model file (or an in-memory ``keras.Model``, saved to ``workdir`` or a
    temp folder first, so the provenance hash names exactly what was converted). ``classes``
    (e.g. a converted model's labels) stand in for ``labels``/``label_folder``."""
    if is_model_file(model):
        path = Path(model)
        keras_model = load_keras_model(path)
    elif hasattr(model, "layers") and hasattr(model, "save"):
        keras_model = model
        folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edgemobile-model-"))
        path = folder / f"{safe_name(model.name)}.keras"
        model.save(path)
    else:
        raise EdgeMobileError(f"{model}: not a zoo model name, a .keras/.h5 model file or a Keras model")
    source = str(path)
    spec = user_spec(keras_model, source, preprocess, resolution, mean, std, crop_fraction)
    count = num_outputs(keras_model, source)
    if classes is None or labels:
        classes = user_classes(count, source, labels, label_folder)
    elif len(classes) != count:
        raise EdgeMobileError(f"{source}: has {count} outputs but the model it is compared with has "
                              f"{len(classes)} classes")
    inside = tuple(input_normalization(keras_model))
    name = safe_name(path.stem)
    variant = ModelVariant(
        family=name,
        alpha=None,
        resolution=spec.size,
        preprocess=spec,
        weights=None,
        builder=_build_user_model,
        description=f"{name}: user Keras model {path.name} ({len(classes)} classes)",
        license="",
        num_classes=len(classes),
        options=(("user_model", path.name),) + ((("input_normalization", inside),) if inside else ()),
        labels=None if classes is imagenet_classes() else tuple(classes.names),
    )
    return UserModel(variant=variant, path=path, input_normalization=inside)


def _build_user_model(variant: ModelVariant, weights_path: Path | None):
    if weights_path is None:
        raise EdgeMobileError(f"{variant.name}: a user model is built from its file; pass the model file")
    return load_keras_model(weights_path)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"
