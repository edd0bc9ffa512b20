"""The model zoo: every family edgemobile converts, as data.

A :class:`Family` (MobileNetV1, MobileNetV3-Small, MobileOne-S0, …) knows its alphas and
resolutions; :meth:`Family.variant` gives a :class:`ModelVariant`, which carries everything a
conversion needs: its builder, its one :class:`PreprocessSpec`, its official weights and its
classes. Family modules declare a ``FAMILIES`` tuple; :data:`FAMILY_MODULES` lists them.

Importing this module does not import TensorFlow: builders import it when called, so the
runtime install can still resolve names and specs.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
from pathlib import Path
from typing import Any, Callable

from edgemobile.data.labels import ClassList, imagenet_classes
from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.download import fetch
from edgemobile.errors import EdgeMobileError

MODEL_SUFFIXES = (".keras", ".h5")  # saved Keras model files (full-model .h5)

# Modules that define FAMILIES; one line per family module.
FAMILY_MODULES = (
    "edgemobile.networks.mobilenet_v1",
    "edgemobile.networks.mobileone",
    "edgemobile.networks.mobilenet_v3",
)


@dataclasses.dataclass(frozen=True)
class Weights:
    """An official pretrained-weights file: where the publisher serves it and its checksum.

    ``checksum`` is the publisher's sha256 (or md5, as Keras publishes some); None when the
    publisher gives none — then the first download is trusted and its sha256 printed.
    ``format`` names the container the loader expects ("keras_h5", "pytorch", "safetensors").
    """

    filename: str
    url: str
    checksum: str | None
    format: str = "keras_h5"
    cache_subdir: str = "models"


@dataclasses.dataclass(frozen=True)
class ModelVariant:
    """One buildable model: family + alpha + resolution (+ variant-specific options)."""

    family: str
    alpha: float | None
    resolution: int
    preprocess: PreprocessSpec
    weights: Weights | None
    builder: Callable[..., Any]  # builder(variant, weights_path_or_None) -> keras.Model
    description: str = ""
    license: str = ""
    num_classes: int = 1000
    options: tuple[tuple[str, Any], ...] = ()
    labels: tuple[str, ...] | None = None  # a user model's classes in output order (None: ImageNet-1k)

    @property
    def classes(self):
        """The :class:`~edgemobile.data.labels.ClassList` of the model's outputs."""
        return ClassList.from_names(self.labels) if self.labels is not None else imagenet_classes()

    @property
    def name(self) -> str:
        """File-name-safe id: ``mobilenet_v1_0.25_224``, ``mobileone_s0_224``."""
        alpha = f"_{self.alpha}" if self.alpha is not None else ""
        return f"{self.family}{alpha}_{self.resolution}"

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def weights_path(self, weights: str | os.PathLike | None = "imagenet",
                     weights_arg: str | None = "--weights FILE") -> Path | None:
        """Resolve ``--weights``: "imagenet" (download/cache), "none", or a local file.
        ``weights_arg`` is how the command in use takes a weights file (``--reference-weights
        FILE`` for eval's reference, a report spec's ``NAME:weights=FILE``; None when it takes
        none), named in the errors' fix."""
        if weights is None or str(weights).lower() == "none":
            return None
        if str(weights) == "imagenet":
            if self.weights is None:
                raise EdgeMobileError(f"{self.name}: no published ImageNet weights; "
                                      + (f"pass {weights_arg} or none" if weights_arg else "use a model that has them"))
            return fetch(
                self.weights.url,
                self.weights.filename,
                checksum=self.weights.checksum,
                subdir=self.weights.cache_subdir,
                what=f"{self.name} weights",
                hint=f"or pass {weights_arg}" if weights_arg else "",
                by_path=weights_arg or "",
            )
        path = Path(weights)
        if not path.is_file():
            raise EdgeMobileError(f"{path}: weights file not found")
        return path

    def build(self, weights: str | os.PathLike | None = "imagenet", weights_arg: str | None = "--weights FILE"):
        """The float Keras model with the requested weights (see :meth:`weights_path`)."""
        return self.builder(self, self.weights_path(weights, weights_arg))


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    aliases: tuple[str, ...]
    alphas: tuple[float | None, ...]
    resolutions: tuple[int, ...]
    default_alpha: float | None
    default_resolution: int
    make_variant: Callable[[float | None, int], ModelVariant]
    summary: str = ""

    def variant(self, alpha: float | None = None, resolution: int | None = None) -> ModelVariant:
        alpha = self.default_alpha if alpha is None else alpha
        resolution = self.default_resolution if resolution is None else int(resolution)
        if alpha not in self.alphas:
            choices = ", ".join(str(a) for a in self.alphas if a is not None) or "none (no alpha)"
            raise EdgeMobileError(f"{self.name}: alpha {alpha} is not available; choose from {choices}")
        if resolution not in self.resolutions:
            choices = ", ".join(str(r) for r in self.resolutions)
            raise EdgeMobileError(f"{self.name}: resolution {resolution} is not available; choose from {choices}")
        return self.make_variant(alpha, resolution)


def families() -> dict[str, Family]:
    """All families by canonical name (registration order)."""
    found: dict[str, Family] = {}
    for module_name in FAMILY_MODULES:
        for family in importlib.import_module(module_name).FAMILIES:
            found[family.name] = family
    return found


def get_family(name: str) -> Family:
    key = name.strip().lower().replace("-", "_")
    for family in families().values():
        if key == family.name or key in family.aliases:
            return family
    raise EdgeMobileError(unknown_model_message(name))


def unknown_model_message(name: str) -> str:
    """Why ``name`` is no model: a path-like name with another extension or a missing file
    says exactly that; a zoo-like name gets the closest zoo names (no list of every alias)."""
    accepts = "a model is a zoo model name (see 'edgemobile models') or a saved Keras model file"
    if "/" in name or os.sep in name or re.search(r"\.[A-Za-z][A-Za-z0-9]*$", name):  # a path, not a zoo name
        path = Path(name)
        if path.is_dir():
            return f"{name}: is a folder, not a model; {accepts}"
        if path.suffix.lower() not in MODEL_SUFFIXES:
            return f"{name}: not a Keras model file (.keras or full-model .h5); {accepts}"
        return f"{name}: no such file"
    by_name = {n: f.name for f in families().values() for n in (f.name, *f.aliases)}
    key = name.strip().lower().replace("-", "_")
    longer = sorted((n for n in by_name if n.startswith(key)), key=len)  # "mobilenetv3" → mobilenetv3small
    close = longer + difflib.get_close_matches(key, sorted(by_name), n=6, cutoff=0.6)
    guesses: dict[str, str] = {}
    for n in close:
        guesses.setdefault(by_name[n], n)  # the closest name of each family
    guesses = list(guesses.values())[:2]
    if guesses:
        return f"unknown model {name!r}; did you mean {' or '.join(guesses)}? ({accepts})"
    # nothing close: the family names (not every alias) say what the zoo has
    return f"unknown model {name!r}: the zoo has {', '.join(families())} ({accepts})"


def resolve(name: str, alpha: float | None = None, resolution: int | None = None) -> ModelVariant:
    """``resolve("mobilenet", 0.25)`` → the MobileNetV1 α0.25/224 variant."""
    return get_family(name).variant(alpha, resolution)


def with_raw_pixel_input(variant: ModelVariant) -> ModelVariant:
    """The same model taking raw 0..255 RGB pixels: the spec's per-channel ``(pixel - mean)
    / std`` becomes the Keras model's first layer (a per-channel ``Rescaling``, converted to
    one MUL and one ADD), and the returned variant's spec has mean 0 / std 1 (resize and crop
    unchanged). For consumers that cannot express per-channel normalization (MediaPipe:
    one mean/std for all channels on float inputs, per-tensor quantization on uint8 inputs).
    A variant whose spec already is mean 0 / std 1 is returned unchanged."""
    spec = variant.preprocess
    if spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0):
        return variant
    inner_builder = variant.builder

    def build_raw_pixel_model(_raw_variant: ModelVariant, weights_path: Path | None):
        import keras

        model = inner_builder(variant, weights_path)
        pixels = keras.Input(shape=(variant.resolution, variant.resolution, 3), name="pixels")
        normalized = keras.layers.Rescaling(
            scale=[1.0 / s for s in spec.std],
            offset=[-m / s for m, s in zip(spec.mean, spec.std)],
            name="input_normalization",
        )(pixels)
        return keras.Model(pixels, model(normalized), name=f"{model.name}_raw_pixels")

    return dataclasses.replace(
        variant,
        preprocess=dataclasses.replace(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        builder=build_raw_pixel_model,
        description=f"{variant.description}; takes raw 0..255 pixels (mean {list(spec.mean)}, "
        f"std {list(spec.std)} folded into the model)",
        options=variant.options + (("raw_pixel_input", True),),
    )
