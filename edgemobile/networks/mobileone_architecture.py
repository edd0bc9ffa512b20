"""MobileOne S0–S4 architecture (Vasu et al. 2023, "MobileOne: An Improved One millisecond
Mobile Backbone") as plain functional Keras graphs, in both of its forms, and how to recognize
a model built here (its variant and form).

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

Both forms are plain functional Keras models — no custom layers — so they save, reload and
convert like keras.applications models (:mod:`edgemobile.networks.mobileone_reparam` folds the
train-time form into the inference-time one).

Padding follows PyTorch exactly: 3×3 convs pad 1 on every side. Keras' ``"same"`` does that
for stride 1 but pads only bottom/right for stride 2, so stride-2 3×3 convs use an explicit
``ZeroPadding2D(1)`` followed by a ``"valid"`` conv; the stride-2 1×1 scale branch reads the
unpadded input, as PyTorch's ``padding=0`` does.

Layer names spell the PyTorch module path with ``_`` for ``.`` (``stage2.3.rbr_conv.1.bn`` →
``stage2_3_rbr_conv_1_bn``; ``stage0.reparam_conv`` → ``stage0_reparam_conv``; the
classifier is ``linear``), so a state_dict maps onto the model by name
(:mod:`edgemobile.networks.mobileone_weights`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from edgemobile.networks.zoo import ModelVariant

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
    config = VARIANTS[require_variant_key(variant)]
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



def variant_key(variant: Any) -> str | None:
    """"s0" … "s4" of a variant name ("s0", "mobileone_s0", "MobileOne-S0") or zoo variant; None if it names none."""
    if isinstance(variant, ModelVariant):
        variant = variant.family
    text = str(variant).strip().lower().replace("-", "_")
    match = re.fullmatch(r"(?:mobileone_?)?(s[0-4])", text)
    return match.group(1) if match else None


def require_variant_key(variant: Any) -> str:
    """:func:`variant_key`, raising ValueError for a name that is no MobileOne variant."""
    key = variant_key(variant)
    if key is None:
        raise ValueError(f"unknown MobileOne variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return key


# -- Keras graph ---------------------------------------------------------------------------


def mobileone_graph(
    variant: str = "s0",
    *,
    inference_mode: bool = True,
    include_top: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
):
    """The Keras graph of MobileOne ``variant`` with freshly initialized weights; the arguments
    are :func:`edgemobile.networks.mobileone.MobileOne`'s (without ``weights``)."""
    import keras

    key = require_variant_key(variant)
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
    return keras.Model(inputs, x, name=name)


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


def head_kwargs(model) -> dict[str, Any]:
    """The head arguments (input shape, top, classes, activation, pooling) ``model`` was built with."""
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



__all__ = [
    "RESOLUTION",
    "VARIANTS",
    "BlockSpec",
    "MobileOneConfig",
    "block_specs",
    "head_kwargs",
    "mobileone_graph",
    "model_form",
    "model_variant_key",
    "require_variant_key",
    "variant_key",
]
