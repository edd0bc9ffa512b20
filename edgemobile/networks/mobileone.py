"""MobileOne S0–S4 (Vasu et al. 2023, "MobileOne: An Improved One millisecond Mobile
Backbone") in the zoo: the Keras-applications-style builder (:func:`MobileOne`,
:func:`MobileOneS0` … :func:`MobileOneS4`), the models in either form from any weights file,
the publishers' weights (Apple's and timm's) and the zoo families.

The parts live beside this module: the architecture in both forms in
:mod:`edgemobile.networks.mobileone_architecture`, the folding of the train-time form into the
inference-time one in :mod:`edgemobile.networks.mobileone_reparam` (:func:`reparameterize`,
importable from here), and the PyTorch/timm name mapping and weight-file loading in
:mod:`edgemobile.networks.mobileone_weights`.

Preprocessing contract (Apple's ImageNet evaluation, the timm model card's mean/std): RGB,
resize the shorter side to 256 (bilinear), center-crop 224, then ``(pixel - mean) / std``
per channel with mean ``(123.675, 116.28, 103.53)`` and std ``(58.395, 57.12, 57.375)`` in
0..255 units (ImageNet mean/std). Output: softmax over the 1000 ImageNet classes in the
standard sorted-synset order (``classifier_activation=None`` gives logits).

Weights: Apple's ``mobileone_sX.pth.tar`` (inference-time) and ``mobileone_sX_unfused.pth.tar``
(train-time) checkpoints and timm's ``mobileone_sX.apple_in1k`` safetensors (train-time,
timm key names).
"""

from __future__ import annotations

from pathlib import Path

from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.download import fetch
from edgemobile.errors import EdgeMobileError
from edgemobile.networks.checkpoints import detect_format, read_state_dict
from edgemobile.networks.mobileone_architecture import (
    RESOLUTION,
    VARIANTS,
    mobileone_graph,
    require_variant_key,
    variant_key,
)
from edgemobile.networks.mobileone_reparam import reparameterize
from edgemobile.networks.mobileone_weights import (
    checkpoint_form,
    load_keras_weights,
    load_weights,
    set_state_dict,
    to_apple_names,
)
from edgemobile.networks.zoo import Family, ModelVariant, Weights

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# -- builder -------------------------------------------------------------------------------


def MobileOne(
    variant: str = "s0",
    *,
    inference_mode: bool = True,
    include_top: bool = True,
    weights: str | Path | None = None,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
):
    """Instantiate MobileOne ``variant`` ("s0" … "s4") as a functional Keras model.

    Args:
        variant: "s0", "s1", "s2", "s3" or "s4" (also "mobileone_s0", "MobileOne-S0").
        inference_mode: True for the fused form (one conv per block), False for the
            train-time multi-branch form (see :func:`reparameterize`).
        include_top: whether to include global pooling + the ``linear`` classifier.
        weights: None (random initialization), "imagenet" (Apple's published checkpoint of
            the matching form, downloaded and cached), or the path of a PyTorch
            (.pth/.pth.tar), safetensors or Keras weights file.
        input_shape: (height, width, 3), each side >= 32; default (224, 224, 3).
        pooling: without the top, None (4-D feature map), "avg" or "max".
        classes: number of classes; must be 1000 with pretrained weights and the top.
        classifier_activation: activation of the classifier ("softmax", or None for logits).
        name: model name; default ``mobileone_<variant>`` (``..._train`` for the train form).

    Input: float32 (batch, H, W, 3) already normalized as the module docstring says.
    """
    key = variant_key(variant)
    if key is None:
        raise ValueError(f"unknown MobileOne variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if not (weights is None or weights == "imagenet" or Path(str(weights)).is_file()):
        raise ValueError(f"weights must be None, 'imagenet' or the path of an existing file; got {weights!r}")
    if weights is not None and include_top and classes != 1000:
        raise ValueError(f"pretrained weights have 1000 classes; got classes={classes}")
    if weights == "imagenet" and include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(
            f"with weights='imagenet' classifier_activation must be None or 'softmax'; got {classifier_activation!r}"
        )
    model = mobileone_graph(key, inference_mode=inference_mode, include_top=include_top, input_shape=input_shape,
                            pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name)
    if weights == "imagenet":
        weights = fetch_weights(key, "apple" if inference_mode else "apple_unfused")
    if weights is not None:
        load_weights(model, weights)
    return model


def _make_wrapper(key: str):
    def wrapper(*, inference_mode: bool = True, include_top: bool = True, weights=None, input_shape=None,
                pooling=None, classes: int = 1000, classifier_activation="softmax", name=None):
        return MobileOne(key, inference_mode=inference_mode, include_top=include_top, weights=weights,
                         input_shape=input_shape, pooling=pooling, classes=classes,
                         classifier_activation=classifier_activation, name=name)

    wrapper.__name__ = wrapper.__qualname__ = f"MobileOne{key.upper()}"
    wrapper.__doc__ = f"MobileOne-{key.upper()}: ``MobileOne('{key}', ...)``; see :func:`MobileOne` for the arguments."
    return wrapper


MobileOneS0 = _make_wrapper("s0")
MobileOneS1 = _make_wrapper("s1")
MobileOneS2 = _make_wrapper("s2")
MobileOneS3 = _make_wrapper("s3")
MobileOneS4 = _make_wrapper("s4")


# -- either form from any weights file ---------------------------------------------------


def build_train_model(variant: str | ModelVariant = "s0", weights: str | Path | None = None, **kwargs):
    """The train-time (multi-branch) model; ``weights`` as in :func:`MobileOne` (unfused only)."""
    return MobileOne(require_variant_key(variant), inference_mode=False, weights=weights, **kwargs)


def build_inference_model(variant: str | ModelVariant = "s0", weights: str | Path | None = None, **kwargs):
    """The inference-time (fused) model from any checkpoint: unfused ones are loaded into the
    train-time model and reparameterized, fused ones are loaded directly."""
    key = require_variant_key(variant)
    if weights is None or weights == "imagenet":
        return MobileOne(key, inference_mode=True, weights=weights, **kwargs)
    path = Path(weights)
    if not path.is_file():
        raise EdgeMobileError(f"{path}: weights file not found")
    fmt = detect_format(path)
    if fmt in ("keras_h5", "keras_zip"):
        fused = MobileOne(key, inference_mode=True, **kwargs)
        try:
            load_keras_weights(fused, path)
            return fused
        except EdgeMobileError as fused_error:
            train = MobileOne(key, inference_mode=False, **kwargs)
            try:
                load_keras_weights(train, path)
            except EdgeMobileError:
                raise fused_error from None
            return reparameterize(train)
    state = to_apple_names(read_state_dict(path))
    if checkpoint_form(state, path) == "train":
        train = MobileOne(key, inference_mode=False, **kwargs)
        set_state_dict(train, state, source=path)
        return reparameterize(train)
    fused = MobileOne(key, inference_mode=True, **kwargs)
    set_state_dict(fused, state, source=path)
    return fused


# -- official weights ---------------------------------------------------------------------

APPLE_URL = "https://docs-assets.developer.apple.com/ml-research/datasets/mobileone/"
TIMM_URL = "https://huggingface.co/timm/mobileone_{v}.apple_in1k/resolve/main/model.safetensors"

# Apple publishes no checksum for its checkpoints (the ml-mobileone README links the files
# only), so none is pinned: the first download is trusted and its sha256 printed. Loading
# is safe regardless: the restricted unpickler runs no code from the file.
# timm's files: the sha256 Hugging Face shows for model.safetensors (Git LFS object id) of
# each timm/mobileone_sX.apple_in1k repository. For s4 no published value could be found,
# so it stays None rather than a guess.
_TIMM_SHA256 = {
    "s0": "b624d5ab2a210791dff05fd4ec734b3ad271a47c2b053db625c5a5783eacb8bf",
    "s1": "5d6c420683128b11cc5ea28fa9b7ce7857eaf579af9bf0dd38d6295af24c703a",
    "s2": "21d333af83f23dfd7d4f71648b50bbaf785cde48fb48181eb928c9da3179ae7a",
    "s3": "9340b9e332591b2c83579ce71d9f149eb7e7bec4a520ed60a26d52819f9f55bd",
    "s4": None,
}

WEIGHT_SOURCES = ("apple", "apple_unfused", "timm")


def official_weights(variant: str, source: str = "apple") -> Weights:
    """Where a publisher serves MobileOne ``variant`` weights.

    ``source``: "apple" (inference-time ``mobileone_sX.pth.tar``), "apple_unfused"
    (train-time ``mobileone_sX_unfused.pth.tar``) or "timm" (train-time safetensors, timm names).
    """
    key = require_variant_key(variant)
    if source == "apple":
        filename = f"mobileone_{key}.pth.tar"
        return Weights(filename, APPLE_URL + filename, checksum=None, format="pytorch")
    if source == "apple_unfused":
        filename = f"mobileone_{key}_unfused.pth.tar"
        return Weights(filename, APPLE_URL + filename, checksum=None, format="pytorch")
    if source == "timm":
        return Weights(f"mobileone_{key}.apple_in1k.safetensors", TIMM_URL.format(v=key),
                       checksum=_TIMM_SHA256[key], format="safetensors")
    raise ValueError(f"unknown weights source {source!r}; choose from {', '.join(WEIGHT_SOURCES)}")


def fetch_weights(variant: str, source: str = "apple") -> Path:
    """Download (once, cached, checksum-verified where published) an official weights file."""
    weights = official_weights(variant, source)
    return fetch(weights.url, weights.filename, checksum=weights.checksum, subdir=weights.cache_subdir,
                 what=f"MobileOne-{require_variant_key(variant).upper()} weights ({source})",
                 hint="or pass --weights FILE")


# -- zoo ----------------------------------------------------------------------------------


def build(variant: ModelVariant, weights_path: Path | None):
    """Zoo builder: always the inference-time (fused) model, from any supported weights file."""
    return build_inference_model(variant.family, weights_path, input_shape=(variant.resolution, variant.resolution, 3),
                                 classes=variant.num_classes)


def make_variant(key: str, alpha: float | None, resolution: int) -> ModelVariant:
    return ModelVariant(
        family=f"mobileone_{key}",
        alpha=alpha,
        resolution=resolution,
        preprocess=PreprocessSpec.center_crop(resolution, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        weights=official_weights(key, "apple"),
        builder=build,
        description=f"MobileOne-{key.upper()}, {resolution}x{resolution}, ImageNet-1k, inference-time (reparameterized)",
        license="Apple ml-mobileone sample code license (weights); see github.com/apple/ml-mobileone",
        options=(("form", "inference"),),
    )


def _family(key: str) -> Family:
    aliases = (f"mobileone{key}",) + (("mobileone",) if key == "s0" else ())
    return Family(
        name=f"mobileone_{key}",
        aliases=aliases,
        alphas=(None,),
        resolutions=(RESOLUTION,),
        default_alpha=None,
        default_resolution=RESOLUTION,
        make_variant=lambda alpha, resolution, _key=key: make_variant(_key, alpha, resolution),
        summary=f"MobileOne-{key.upper()} (Apple), reparameterized for inference, 224 px",
    )


FAMILIES = tuple(_family(key) for key in VARIANTS)

__all__ = [
    "FAMILIES",
    "MobileOne",
    "MobileOneS0",
    "MobileOneS1",
    "MobileOneS2",
    "MobileOneS3",
    "MobileOneS4",
    "build",
    "build_inference_model",
    "build_train_model",
    "fetch_weights",
    "official_weights",
    "reparameterize",
]
