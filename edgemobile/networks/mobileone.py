"""MobileOne S0–S4 (Vasu et al. 2023, "MobileOne: An Improved One millisecond Mobile
Backbone") in Keras, in both of its forms, with Apple's and timm's pretrained weights.

Architecture (as published in apple/ml-mobileone): a stem MobileOneBlock (3×3, stride 2),
then four stages of [2, 8, 10, 1] blocks; each block is a depthwise 3×3 MobileOneBlock (the
first block of every stage has stride 2) followed by a pointwise 1×1 MobileOneBlock; ReLU
after every MobileOneBlock; global average pooling; a 1000-way dense classifier. Widths are
``int(64·w₁), int(128·w₂), int(256·w₃), int(512·w₄)`` for the variant's width multipliers
(:data:`VARIANTS`); the stem has ``min(64, int(64·w₁))`` channels. S0 trains with k=4
over-parameterized conv branches, S1–S4 with k=1; S4 adds squeeze-excite (reduction 1/16,
global average, ReLU, sigmoid, applied before the block's ReLU) to the last 5 blocks of
stage 3 and the block of stage 4.

Two forms of the same function:

* train-time (``inference_mode=False``): every MobileOneBlock is the sum of k conv+BN
  branches, a 1×1 conv+BN "scale" branch (3×3 blocks only; depthwise 1×1 in depthwise
  blocks) and a BN-only identity branch when input and output shapes agree;
* inference-time (``inference_mode=True``): one conv with bias per MobileOneBlock — a plain
  chain of Conv2D/DepthwiseConv2D/ReLU that TFLite converts to CONV_2D/DEPTHWISE_CONV_2D ops.

:func:`reparameterize` folds a train-time model into the inference-time one exactly (BN folded
into each branch, 1×1 kernels padded to 3×3, identity as a centred one-hot kernel, branches
summed). Both forms are plain functional Keras models — no custom layers — so they save,
reload and convert like keras.applications models.

Padding follows PyTorch exactly: 3×3 convs pad 1 on every side. Keras' ``"same"`` does that
for stride 1 but pads only bottom/right for stride 2, so stride-2 3×3 convs use an explicit
``ZeroPadding2D(1)`` followed by a ``"valid"`` conv; the stride-2 1×1 scale branch reads the
unpadded input, as PyTorch's ``padding=0`` does.

Layer names spell the PyTorch module path with ``_`` for ``.`` (``stage2.3.rbr_conv.1.bn`` →
``stage2_3_rbr_conv_1_bn``; ``stage0.reparam_conv`` → ``stage0_reparam_conv``; the
classifier is ``linear``), so a state_dict maps onto the model by name.

Preprocessing contract (Apple's ImageNet evaluation, the timm model card's mean/std): RGB,
resize the shorter side to 256 (bilinear), center-crop 224, then ``(pixel - mean) / std``
per channel with mean ``(123.675, 116.28, 103.53)`` and std ``(58.395, 57.12, 57.375)`` in
0..255 units (ImageNet mean/std). Output: softmax over the 1000 ImageNet classes in the
standard sorted-synset order (``classifier_activation=None`` gives logits).

Weights: Apple's ``mobileone_sX.pth.tar`` (inference-time) and ``mobileone_sX_unfused.pth.tar``
(train-time) checkpoints and timm's ``mobileone_sX.apple_in1k`` safetensors (train-time,
timm key names), read by :mod:`edgemobile.networks.checkpoints` without torch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.errors import EdgeMobileError
from edgemobile.networks.zoo import Family, ModelVariant, Weights

# -- configuration -------------------------------------------------------------------------

NUM_BLOCKS = (2, 8, 10, 1)  # depthwise+pointwise blocks per stage, all variants
BASE_WIDTHS = (64, 128, 256, 512)
BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default (Keras' default is 1e-3)
SE_RATIO = 0.0625


@dataclasses.dataclass(frozen=True)
class MobileOneConfig:
    """One published variant: width multipliers per stage, conv branches k, SE blocks per stage."""

    width_multipliers: tuple[float, float, float, float]
    num_conv_branches: int = 1
    se_blocks: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def stem_channels(self) -> int:
        return min(64, int(64 * self.width_multipliers[0]))

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(int(base * w) for base, w in zip(BASE_WIDTHS, self.width_multipliers))


VARIANTS: dict[str, MobileOneConfig] = {
    "s0": MobileOneConfig((0.75, 1.0, 1.0, 2.0), num_conv_branches=4),
    "s1": MobileOneConfig((1.5, 1.5, 2.0, 2.5)),
    "s2": MobileOneConfig((1.5, 2.0, 2.5, 4.0)),
    "s3": MobileOneConfig((2.0, 2.5, 3.0, 4.0)),
    "s4": MobileOneConfig((3.0, 3.5, 3.5, 4.0), se_blocks=(0, 0, 5, 1)),
}

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
RESOLUTION = 224


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One MobileOneBlock; ``prefix`` is its PyTorch module path ("stage0", "stage2.3")."""

    prefix: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    depthwise: bool
    num_conv_branches: int
    use_se: bool

    @property
    def name(self) -> str:
        return self.prefix.replace(".", "_")

    @property
    def has_identity(self) -> bool:
        return self.in_channels == self.out_channels and self.stride == 1

    @property
    def has_scale(self) -> bool:
        return self.kernel_size > 1


def block_specs(variant: str) -> list[BlockSpec]:
    """The MobileOneBlocks of a variant in order (stem, then depthwise/pointwise pairs)."""
    config = _config(variant)
    blocks = [BlockSpec("stage0", 3, config.stem_channels, 3, 2, False, 1, False)]
    channels = config.stem_channels
    for stage, (n_blocks, width, n_se) in enumerate(zip(NUM_BLOCKS, config.stage_channels, config.se_blocks), 1):
        for i in range(n_blocks):
            use_se = i >= n_blocks - n_se
            k = config.num_conv_branches
            blocks.append(BlockSpec(f"stage{stage}.{2 * i}", channels, channels, 3, 2 if i == 0 else 1, True, k, use_se))
            blocks.append(BlockSpec(f"stage{stage}.{2 * i + 1}", channels, width, 1, 1, False, k, use_se))
            channels = width
    return blocks


def _config(variant: str) -> MobileOneConfig:
    key = _variant_key(variant)
    if key is None:
        raise ValueError(f"unknown MobileOne variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[key]


def _variant_key(variant: Any) -> str | None:
    if isinstance(variant, ModelVariant):
        variant = variant.family
    text = str(variant).strip().lower().replace("-", "_")
    match = re.fullmatch(r"(?:mobileone_?)?(s[0-4])", text)
    return match.group(1) if match else None


# -- Keras graph ---------------------------------------------------------------------------


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
    import keras

    key = _variant_key(variant)
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
    if not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer; got {classes!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}")
    if input_shape is None:
        input_shape = (RESOLUTION, RESOLUTION, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3); got {input_shape}")
    if any(side is not None and side < 32 for side in input_shape[:2]):
        raise ValueError(f"input_shape sides must be at least 32 (five stride-2 stages); got {input_shape}")

    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for block in block_specs(key):
        x = _fused_block(x, block) if inference_mode else _train_block(x, block)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="linear")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if name is None:
        name = f"mobileone_{key}" if inference_mode else f"mobileone_{key}_train"
    model = keras.Model(inputs, x, name=name)

    if weights == "imagenet":
        weights = fetch_weights(key, "apple" if inference_mode else "apple_unfused")
    if weights is not None:
        load_weights(model, weights)
    return model


def _conv(block: BlockSpec, kernel_size: int, stride: int, padding: str, use_bias: bool, name: str):
    import keras

    if block.depthwise:
        return keras.layers.DepthwiseConv2D(
            kernel_size, strides=stride, padding=padding, depth_multiplier=1, use_bias=use_bias, name=name
        )
    return keras.layers.Conv2D(
        block.out_channels, kernel_size, strides=stride, padding=padding, use_bias=use_bias, name=name
    )


def _bn(name: str):
    import keras

    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=name)


def _padded(x, block: BlockSpec):
    """Input and padding mode giving PyTorch's symmetric padding=k//2 for the k×k conv."""
    import keras

    if block.kernel_size == 1:
        return x, "valid"
    if block.stride == 1:
        return x, "same"  # symmetric for odd k at stride 1
    return keras.layers.ZeroPadding2D(block.kernel_size // 2, name=f"{block.name}_pad")(x), "valid"


def _train_block(x, block: BlockSpec):
    import keras

    name = block.name
    padded, padding = _padded(x, block)
    branches = []
    if block.has_scale:
        scale = _conv(block, 1, block.stride, "valid", False, f"{name}_rbr_scale_conv")(x)
        branches.append(_bn(f"{name}_rbr_scale_bn")(scale))
    if block.has_identity:
        branches.append(_bn(f"{name}_rbr_skip")(x))
    for i in range(block.num_conv_branches):
        y = _conv(block, block.kernel_size, block.stride, padding, False, f"{name}_rbr_conv_{i}_conv")(padded)
        branches.append(_bn(f"{name}_rbr_conv_{i}_bn")(y))
    out = keras.layers.Add(name=f"{name}_add")(branches) if len(branches) > 1 else branches[0]
    if block.use_se:
        out = _squeeze_excite(out, block)
    return keras.layers.ReLU(name=f"{name}_relu")(out)


def _fused_block(x, block: BlockSpec):
    import keras

    padded, padding = _padded(x, block)
    out = _conv(block, block.kernel_size, block.stride, padding, True, f"{block.name}_reparam_conv")(padded)
    if block.use_se:
        out = _squeeze_excite(out, block)
    return keras.layers.ReLU(name=f"{block.name}_relu")(out)


def _squeeze_excite(x, block: BlockSpec):
    """SE as in ml-mobileone: mean over the whole H×W, 1×1 reduce, ReLU, 1×1 expand, sigmoid."""
    import keras

    name, channels = block.name, block.out_channels
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = keras.layers.Conv2D(int(channels * SE_RATIO), 1, name=f"{name}_se_reduce")(s)
    s = keras.layers.ReLU(name=f"{name}_se_relu")(s)
    s = keras.layers.Conv2D(channels, 1, name=f"{name}_se_expand")(s)
    s = keras.layers.Activation("sigmoid", name=f"{name}_se_sigmoid")(s)
    return keras.layers.Multiply(name=f"{name}_se_scale")([x, s])


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


# -- model introspection --------------------------------------------------------------------


def model_variant_key(model) -> str:
    """"s0" … "s4" of a MobileOne model built here, recognized from its layers' widths."""
    layers = {layer.name: layer for layer in model.layers}

    def out_channels(block: BlockSpec) -> int | None:
        for suffix in ("reparam_conv", "rbr_conv_0_conv"):
            layer = layers.get(f"{block.name}_{suffix}")
            if layer is not None:
                return int(layer.get_weights()[0].shape[-1 if not block.depthwise else -2])
        return None

    for key in VARIANTS:
        specs = block_specs(key)
        probes = [specs[0], specs[2], specs[6], specs[22], specs[-1]]  # stem, first pw of each stage
        if all(out_channels(b) == b.out_channels for b in probes) and \
                (f"{specs[-1].name}_se_reduce" in layers) == specs[-1].use_se and \
                (f"{specs[1].name}_rbr_conv_{specs[1].num_conv_branches - 1}_conv" in layers
                 or f"{specs[1].name}_reparam_conv" in layers) and \
                f"{specs[1].name}_rbr_conv_{specs[1].num_conv_branches}_conv" not in layers:
            return key
    raise ValueError(f"model {model.name!r} is not a MobileOne S0-S4 model built by edgemobile.networks.mobileone")


def model_form(model) -> str:
    """"inference" for the fused form, "train" for the multi-branch form."""
    names = {layer.name for layer in model.layers}
    if "stage0_reparam_conv" in names:
        return "inference"
    if "stage0_rbr_conv_0_conv" in names:
        return "train"
    raise ValueError(f"model {model.name!r} is not a MobileOne model built by edgemobile")


def _head_kwargs(model) -> dict[str, Any]:
    names = {layer.name for layer in model.layers}
    kwargs: dict[str, Any] = {"input_shape": tuple(model.input_shape[1:]), "name": None}
    if "linear" in names:
        dense = model.get_layer("linear")
        kwargs.update(include_top=True, classes=int(dense.units), classifier_activation=dense.get_config()["activation"])
        if kwargs["classifier_activation"] == "linear":
            kwargs["classifier_activation"] = None
    else:
        kwargs.update(include_top=False, pooling="avg" if "avg_pool" in names else "max" if "max_pool" in names else None)
    return kwargs


# -- reparameterization --------------------------------------------------------------------


def build_train_model(variant: str | ModelVariant = "s0", weights: str | Path | None = None, **kwargs):
    """The train-time (multi-branch) model; ``weights`` as in :func:`MobileOne` (unfused only)."""
    return MobileOne(_require_key(variant), inference_mode=False, weights=weights, **kwargs)


def build_inference_model(variant: str | ModelVariant = "s0", weights: str | Path | None = None, **kwargs):
    """The inference-time (fused) model from any checkpoint: unfused ones are loaded into the
    train-time model and reparameterized, fused ones are loaded directly."""
    key = _require_key(variant)
    if weights is None or weights == "imagenet":
        return MobileOne(key, inference_mode=True, weights=weights, **kwargs)
    path = Path(weights)
    if not path.is_file():
        raise EdgeMobileError(f"{path}: weights file not found")
    from edgemobile.networks.checkpoints import detect_format

    fmt = detect_format(path)
    if fmt in ("keras_h5", "keras_zip"):
        fused = MobileOne(key, inference_mode=True, **kwargs)
        try:
            _load_keras(fused, path)
            return fused
        except EdgeMobileError as fused_error:
            train = MobileOne(key, inference_mode=False, **kwargs)
            try:
                _load_keras(train, path)
            except EdgeMobileError:
                raise fused_error from None
            return reparameterize(train)
    state = to_apple_names(_read_state(path))
    if checkpoint_form(state, path) == "train":
        train = MobileOne(key, inference_mode=False, **kwargs)
        set_state_dict(train, state, source=path)
        return reparameterize(train)
    fused = MobileOne(key, inference_mode=True, **kwargs)
    set_state_dict(fused, state, source=path)
    return fused


def _require_key(variant) -> str:
    key = _variant_key(variant)
    if key is None:
        raise ValueError(f"unknown MobileOne variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return key


def reparameterize(model):
    """The inference-time model computing exactly what train-time ``model`` computes in
    inference mode (BatchNorm with its moving statistics).

    Each MobileOneBlock's branches are folded into one kernel and bias (in float64, stored
    as float32): every conv+BN becomes ``W·γ/σ`` and ``β − μ·γ/σ`` with ``σ = √(var + ε)``;
    the 1×1 scale kernel is zero-padded to k×k; the identity BN becomes a centred one-hot
    kernel scaled the same way; the results are summed. SE and classifier weights are copied.
    """
    if model_form(model) != "train":
        raise ValueError(f"model {model.name!r} is already in inference form")
    key = model_variant_key(model)
    fused = MobileOne(key, inference_mode=True, **_head_kwargs(model))
    for block in block_specs(key):
        kernel, bias = fused_kernel_bias(model, block)
        fused.get_layer(f"{block.name}_reparam_conv").set_weights([kernel, bias])
        if block.use_se:
            for part in ("se_reduce", "se_expand"):
                fused.get_layer(f"{block.name}_{part}").set_weights(model.get_layer(f"{block.name}_{part}").get_weights())
    if any(layer.name == "linear" for layer in model.layers):
        fused.get_layer("linear").set_weights(model.get_layer("linear").get_weights())
    return fused


def _fold_bn(kernel: np.ndarray, bn_layer, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn_layer.get_weights())
    t = gamma / np.sqrt(var + bn_layer.epsilon)
    shape = [1] * kernel.ndim
    shape[out_axis] = -1
    return kernel * t.reshape(shape), beta - mean * t


def fused_kernel_bias(model, block: BlockSpec) -> tuple[np.ndarray, np.ndarray]:
    """Folded (kernel, bias) of one MobileOneBlock of train-time ``model``, Keras layout."""
    k, name = block.kernel_size, block.name
    # Keras layouts: Conv2D (k, k, in, out) — out axis 3; DepthwiseConv2D (k, k, C, 1) — axis 2.
    out_axis = 2 if block.depthwise else 3
    shape = (k, k, block.in_channels, 1) if block.depthwise else (k, k, block.in_channels, block.out_channels)
    kernel = np.zeros(shape, np.float64)
    bias = np.zeros(block.out_channels, np.float64)
    for i in range(block.num_conv_branches):
        w = np.asarray(model.get_layer(f"{name}_rbr_conv_{i}_conv").get_weights()[0], np.float64)
        w, b = _fold_bn(w, model.get_layer(f"{name}_rbr_conv_{i}_bn"), out_axis)
        kernel += w
        bias += b
    if block.has_scale:
        w = np.asarray(model.get_layer(f"{name}_rbr_scale_conv").get_weights()[0], np.float64)
        w, b = _fold_bn(w, model.get_layer(f"{name}_rbr_scale_bn"), out_axis)
        kernel[k // 2, k // 2] += w[0, 0]
        bias += b
    if block.has_identity:
        identity = np.zeros(shape, np.float64)
        channels = np.arange(block.in_channels)
        if block.depthwise:
            identity[k // 2, k // 2, channels, 0] = 1.0
        else:
            identity[k // 2, k // 2, channels, channels] = 1.0
        w, b = _fold_bn(identity, model.get_layer(f"{name}_rbr_skip"), out_axis)
        kernel += w
        bias += b
    return kernel.astype(np.float32), bias.astype(np.float32)


# -- PyTorch state_dict <-> Keras ----------------------------------------------------------

_KERAS_LAYER = re.compile(
    r"(stage\d+(?:_\d+)?)_(rbr_conv_\d+_conv|rbr_conv_\d+_bn|rbr_scale_conv|rbr_scale_bn|rbr_skip"
    r"|reparam_conv|se_reduce|se_expand)"
)
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # Keras: gamma, beta, moving mean/var


def torch_module_path(layer_name: str) -> str | None:
    """PyTorch module path of a Keras layer (``stage2_3_rbr_conv_1_bn`` → ``stage2.3.rbr_conv.1.bn``)."""
    if layer_name == "linear":
        return "linear"
    match = _KERAS_LAYER.fullmatch(layer_name)
    if not match:
        return None
    block = match.group(1).replace("_", ".")
    part = match.group(2)
    part = re.sub(r"^rbr_conv_(\d+)_", r"rbr_conv.\1.", part)
    part = {"rbr_scale_conv": "rbr_scale.conv", "rbr_scale_bn": "rbr_scale.bn",
            "se_reduce": "se.reduce", "se_expand": "se.expand"}.get(part, part)
    return f"{block}.{part}"


def _torch_params(layer) -> dict[str, tuple[int, ...]]:
    """``{param: torch shape}`` of a layer; order matches ``layer.get_weights()``."""
    import keras

    weights = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
        return {k: tuple(w.shape) for k, w in zip(_BN_KEYS, weights)}
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, c, m = weights[0].shape
        params = {"weight": (c * m, 1, kh, kw)}
    elif isinstance(layer, keras.layers.Conv2D):
        kh, kw, i, o = weights[0].shape
        params = {"weight": (o, i, kh, kw)}
    elif isinstance(layer, keras.layers.Dense):
        i, o = weights[0].shape
        params = {"weight": (o, i)}
    else:
        raise TypeError(f"no PyTorch mapping for layer {layer.name} ({type(layer).__name__})")
    if len(weights) > 1:
        params["bias"] = tuple(weights[1].shape)
    return params


def _to_keras(layer, param: str, value: np.ndarray) -> np.ndarray:
    import keras

    if param == "weight" and isinstance(layer, keras.layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if param == "weight" and isinstance(layer, keras.layers.Conv2D):
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if param == "weight" and isinstance(layer, keras.layers.Dense):
        return value.T
    return value


def _to_torch(layer, param: str, value: np.ndarray) -> np.ndarray:
    import keras

    if param == "weight" and isinstance(layer, keras.layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)  # (kh, kw, C, 1) -> (C, 1, kh, kw)
    if param == "weight" and isinstance(layer, keras.layers.Conv2D):
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if param == "weight" and isinstance(layer, keras.layers.Dense):
        return value.T
    return value


def _mapped_layers(model) -> Iterable[tuple[Any, str]]:
    for layer in model.layers:
        if layer.weights:
            path = torch_module_path(layer.name)
            if path is None:
                raise ValueError(f"layer {layer.name!r} has weights but no PyTorch name")
            yield layer, path


def set_state_dict(model, state: dict[str, np.ndarray], source: str | Path = "state_dict") -> None:
    """Load an Apple-named PyTorch-layout state_dict into ``model``, all-or-nothing.

    Raises :class:`EdgeMobileError` listing missing keys, unexpected keys and shape mismatches
    (``num_batches_tracked`` is ignored).
    """
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if not any(layer.name == "linear" for layer in model.layers):  # headless model: ignore the classifier
        state = {k: v for k, v in state.items() if not k.startswith("linear.")}
    expected: dict[str, tuple[int, ...]] = {}
    plan = []
    for layer, path in _mapped_layers(model):
        params = _torch_params(layer)
        for param, shape in params.items():
            expected[f"{path}.{param}"] = shape
        plan.append((layer, path, list(params)))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        form = model_form(model)
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys ({_listing(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches, checkpoint vs model ({_listing(mismatched)})")
        raise EdgeMobileError(
            f"{source}: does not fit {model.name} ({form}-time form): " + "; ".join(problems)
        )
    for layer, path, params in plan:
        layer.set_weights([
            _to_keras(layer, p, np.asarray(state[f"{path}.{p}"], np.float32)) for p in params
        ])


def _listing(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … {len(items) - limit} more" if len(items) > limit else "")


def export_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights as an Apple-named PyTorch-layout state_dict (float32 arrays)."""
    state: dict[str, np.ndarray] = {}
    for layer, path in _mapped_layers(model):
        for (param, _), value in zip(_torch_params(layer).items(), layer.get_weights()):
            state[f"{path}.{param}"] = np.ascontiguousarray(_to_torch(layer, param, np.asarray(value, np.float32)))
    return state


_TIMM_RULES = (
    (re.compile(r"^stem\."), "stage0."),
    (re.compile(r"^stages\.(\d+)\."), lambda m: f"stage{int(m.group(1)) + 1}."),
    (re.compile(r"\.conv_kxk\."), ".rbr_conv."),
    (re.compile(r"\.conv_scale\."), ".rbr_scale."),
    (re.compile(r"\.identity\."), ".rbr_skip."),
    (re.compile(r"\.attn\.fc1\."), ".se.reduce."),
    (re.compile(r"\.attn\.fc2\."), ".se.expand."),
    (re.compile(r"^head\.fc\."), "linear."),
)


def to_apple_names(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename timm's ByobNet MobileOne keys to Apple's (identity for Apple checkpoints).

    timm → Apple: ``stem.`` → ``stage0.``, ``stages.{i}.{j}.`` → ``stage{i+1}.{j}.``,
    ``conv_kxk`` → ``rbr_conv``, ``conv_scale`` → ``rbr_scale``, ``identity`` → ``rbr_skip``,
    ``attn.fc1/fc2`` → ``se.reduce/expand``, ``head.fc`` → ``linear``.
    """
    if not any(k.startswith(("stem.", "stages.", "head.")) for k in state):
        return dict(state)
    renamed = {}
    for key, value in state.items():
        for pattern, repl in _TIMM_RULES:
            key = pattern.sub(repl, key)
        renamed[key] = value
    return renamed


def checkpoint_form(state: dict[str, np.ndarray], source: str | Path = "checkpoint") -> str:
    """"inference" (``reparam_conv`` keys) or "train" (``rbr_conv`` keys) of an Apple-named state."""
    fused = any(".reparam_conv." in k for k in state)
    unfused = any(".rbr_conv." in k for k in state)
    if fused and unfused:
        raise EdgeMobileError(f"{source}: mixes fused (reparam_conv) and unfused (rbr_conv) MobileOne blocks")
    if fused:
        return "inference"
    if unfused:
        return "train"
    raise EdgeMobileError(
        f"{source}: not a MobileOne checkpoint (no reparam_conv / rbr_conv / conv_kxk keys; first keys: "
        f"{_listing(sorted(state), 3)})"
    )


def _read_state(path: Path) -> dict[str, np.ndarray]:
    from edgemobile.networks.checkpoints import read_state_dict

    return read_state_dict(path)


def _load_keras(model, path: Path) -> None:
    import warnings

    try:
        with warnings.catch_warnings():  # Keras warns per skipped group before raising anyway
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(str(path))
    except Exception as exc:  # h5py, Keras and TF raise many types for a wrong file
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise EdgeMobileError(f"{path}: not {model.name} weights ({first_line[:200]})") from None


def load_weights(model, path: str | Path) -> None:
    """Load a PyTorch (Apple or timm names), safetensors or Keras weights file into ``model``.

    The checkpoint's form must match the model's: an unfused checkpoint goes into the
    train-time model (then :func:`reparameterize`), a fused one into the inference-time model.
    """
    path = Path(path)
    from edgemobile.networks.checkpoints import detect_format

    fmt = detect_format(path)
    if fmt in ("keras_h5", "keras_zip"):
        _load_keras(model, path)
        return
    state = to_apple_names(_read_state(path))
    form, wanted = checkpoint_form(state, path), model_form(model)
    if form != wanted:
        hint = ("build the train-time model (build_train_model / inference_mode=False), load it there and "
                "reparameterize()" if form == "train" else
                "a fused checkpoint cannot be un-fused; build the inference-time model (inference_mode=True)")
        raise EdgeMobileError(f"{path}: a {form}-time checkpoint, but {model.name} is the {wanted}-time form; {hint}")
    set_state_dict(model, state, source=path)


# -- official weights & zoo ----------------------------------------------------------------

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
    key = _require_key(variant)
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
    from edgemobile.download import fetch

    weights = official_weights(variant, source)
    return fetch(weights.url, weights.filename, checksum=weights.checksum, subdir=weights.cache_subdir,
                 what=f"MobileOne-{_require_key(variant).upper()} weights ({source})",
                 hint="or pass --weights FILE")


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
    "VARIANTS",
    "BlockSpec",
    "MobileOne",
    "MobileOneConfig",
    "MobileOneS0",
    "MobileOneS1",
    "MobileOneS2",
    "MobileOneS3",
    "MobileOneS4",
    "block_specs",
    "build",
    "build_inference_model",
    "build_train_model",
    "checkpoint_form",
    "export_state_dict",
    "fetch_weights",
    "fused_kernel_bias",
    "load_weights",
    "model_form",
    "model_variant_key",
    "official_weights",
    "reparameterize",
    "set_state_dict",
    "to_apple_names",
    "torch_module_path",
]
