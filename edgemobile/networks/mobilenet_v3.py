"""MobileNetV3 Small / Large (Howard et al. 2019, "Searching for MobileNetV3") from
``keras.applications.MobileNetV3Small`` / ``MobileNetV3Large``, with a graph that runs fast
as a full-int8 TFLite model.

Preprocessing contract (Keras, ``include_preprocessing=True``): the model rescales inside its
graph (``Rescaling(1/127.5, offset=-1)``), so its input is raw RGB pixels in 0..255 — the spec
is ``mean=0, std=1`` and preprocessing happens exactly once. Resize the shorter side to 256,
center-crop 224. Output: softmax over the 1000 ImageNet classes. Weights: the Keras ImageNet
files ``weights_mobilenet_v3_<size>[_minimalistic]_224_<alpha>_float.h5`` with the md5 Keras
verifies them with.

Why this module does not just return the Keras application
----------------------------------------------------------
Converted as-is, the int8 model is *slower* than float on x86/ARM CPUs with LiteRT: XNNPACK
takes float HARD_SWISH but not int8 HARD_SWISH (its delegate checks for a float tensor), so
every int8 hard-swish runs in TFLite's builtin fixed-point kernel and splits the XNNPACK
graph into many partitions (the measurements are in docs/latency.md).

:func:`build` therefore returns the same function, same layers, same weights, with each
hard-swish written so the converter does not fuse it back into HARD_SWISH and every op is
one XNNPACK handles in int8:

* ``hard_swish(x) = x * relu6(x + 3) / 6`` becomes ``z = x * relu6(x + 3)`` (an ADD with a
  fused RELU6 and a MUL) and the 1/6 is *carried* to the next linear layer: a constant
  multiply placed right after the consuming Conv2D/DepthwiseConv2D (before its BatchNorm),
  which the converter folds into that conv's weights. Global-average-pooled branches (the
  squeeze-excite input, the head) take the 1/6 on the pooled 1×1 tensor; a residual stream
  fed by a scaled tensor (V3-Large's first block) is kept scaled by the same factor, the
  project conv's output being multiplied to match — also folded. Net cost: one extra int8
  elementwise op per hard-swish instead of a slow builtin kernel.
* the hard-swish after ``conv_2`` (a 1×1×C vector) is ``(x / 6) * relu6(x + 3)``, so the
  int8 network is one XNNPACK partition (only the final int8 SOFTMAX, which XNNPACK takes in
  float only, runs in TFLite's own kernel);
* the classifier's ``Flatten`` is a static reshape to (-1, classes): no SHAPE/STRIDED_SLICE/
  PACK subgraph and no dynamically shaped RESHAPE in the .tflite.

Layer names match the Keras application, and weights are always loaded into the Keras
application first and copied by name, so every Keras weights file loads exactly as Keras
loads it. :func:`build_stock` gives the unmodified application (the reference in tests and
benchmarks). Users' own models built on the application get the same backbone
(:func:`int8_friendly_backbone`) through :mod:`edgemobile.networks.rewrite`.
``python tools/bench_latency.py --stock`` times both graphs, float and int8 (figures in
docs/latency.md): as float the Keras graph is the faster one (float HARD_SWISH is one
XNNPACK op, its decomposition two), as int8 :func:`build`'s.

Calibration: TFLite's calibrator corrupts the range of ``relu6(x + 3)`` in this graph (an
in-place buffer-reuse bug); :mod:`edgemobile.quantization.exact_ranges` recomputes exact
ranges, and every full-integer conversion uses it.
"""

from __future__ import annotations

from pathlib import Path

from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.networks.mobilenet_v1 import load_keras_weights
from edgemobile.networks.zoo import Family, ModelVariant, Weights

RESOLUTIONS = (224,)
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"

# md5 of the include_top files, as keras.src.applications.mobilenet_v3.WEIGHTS_HASHES[...][0].
_KERAS_MD5 = {
    "large_224_0.75_float": "765b44a33ad4005b3ac83185abf1d0eb",
    "large_224_1.0_float": "59e551e166be033d707958cf9e29a6a7",
    "large_minimalistic_224_1.0_float": "675e7b876c45c57e9e63e6d90a36599c",
    "small_224_0.75_float": "cb65d4e5be93758266aa0a7f2c6708b7",
    "small_224_1.0_float": "8768d4c2e7dee89b9d02b2d03d65d862",
    "small_minimalistic_224_1.0_float": "99cd97fb2fcdad2bf028eb838de69e37",
}

# Inverted-residual blocks: (kernel, expansion, out channels, squeeze-excite, activation, stride).
# "RE" = ReLU, "HS" = hard-swish. Same table as the paper / the Keras application.
_LARGE_BLOCKS = (
    (3, 1, 16, False, "RE", 1), (3, 4, 24, False, "RE", 2), (3, 3, 24, False, "RE", 1),
    (5, 3, 40, True, "RE", 2), (5, 3, 40, True, "RE", 1), (5, 3, 40, True, "RE", 1),
    (3, 6, 80, False, "HS", 2), (3, 2.5, 80, False, "HS", 1), (3, 2.3, 80, False, "HS", 1),
    (3, 2.3, 80, False, "HS", 1), (3, 6, 112, True, "HS", 1), (3, 6, 112, True, "HS", 1),
    (5, 6, 160, True, "HS", 2), (5, 6, 160, True, "HS", 1), (5, 6, 160, True, "HS", 1),
)
_SMALL_BLOCKS = (
    (3, 1, 16, True, "RE", 2), (3, 72 / 16, 24, False, "RE", 2), (3, 88 / 24, 24, False, "RE", 1),
    (5, 4, 40, True, "HS", 2), (5, 6, 40, True, "HS", 1), (5, 6, 40, True, "HS", 1),
    (5, 3, 48, True, "HS", 1), (5, 3, 48, True, "HS", 1), (5, 6, 96, True, "HS", 2),
    (5, 6, 96, True, "HS", 1), (5, 6, 96, True, "HS", 1),
)
_ARCH = {"small": (_SMALL_BLOCKS, 1024), "large": (_LARGE_BLOCKS, 1280)}
_HS_SCALE = 6.0  # a hard-swish output carried as 6 * hard_swish(x)


def _keras_model_name(size: str, minimalistic: bool, alpha: float) -> str:
    return f"{size}{'_minimalistic' if minimalistic else ''}_224_{alpha}_float"


def keras_weights(size: str, minimalistic: bool, alpha: float) -> Weights:
    key = _keras_model_name(size, minimalistic, alpha)
    filename = f"weights_mobilenet_v3_{key}.h5"
    return Weights(filename=filename, url=KERAS_WEIGHTS_URL + filename, checksum=_KERAS_MD5[key])


# -- the models ---------------------------------------------------------------------------------


def _options(variant: ModelVariant) -> tuple[str, bool]:
    return variant.option("size"), bool(variant.option("minimalistic", False))


def build_stock(variant: ModelVariant, weights_path: Path | None):
    """The unmodified ``keras.applications.MobileNetV3*`` (fixed input shape, softmax)."""
    import keras

    size, minimalistic = _options(variant)
    app = keras.applications.MobileNetV3Small if size == "small" else keras.applications.MobileNetV3Large
    model = app(
        input_shape=(variant.resolution, variant.resolution, 3),
        alpha=variant.alpha,
        minimalistic=minimalistic,
        include_top=True,
        weights=None,
        classes=variant.num_classes,
        classifier_activation="softmax",
        include_preprocessing=True,
    )
    if weights_path is not None:
        load_keras_weights(model, weights_path, variant.name)
    return model


def build(variant: ModelVariant, weights_path: Path | None):
    """Zoo builder: the int8-friendly graph (module docstring) with the Keras weights."""
    reference = build_stock(variant, weights_path)
    model = int8_friendly_graph(variant)
    copy_weights(reference, model)
    return model


def copy_weights(source, target) -> None:
    """Copy every weighted layer's weights from ``source`` to the same-named layer of ``target``."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Channel rounding of the TF-slim/Keras MobileNets: nearest multiple of 8, ≥ 90 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _stride2_padding(size: int, kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """keras.applications' ``correct_pad``: TF-slim's padding before a stride-2 'valid' conv."""
    adjust = 1 - size % 2
    return ((kernel // 2 - adjust, kernel // 2),) * 2


def int8_friendly_backbone(inputs, size: str, alpha: float, minimalistic: bool, rescale: bool = True):
    """The feature extractor of the module docstring (``include_top=False``: up to the
    activation after ``conv_1``) on ``inputs``, randomly initialized, layers named as in the
    Keras application. Returns ``(y, scale)``: ``y == scale * activation(conv_1_bn)``, the
    1/scale left for the consumer to carry (6 after a hard-swish, 1 when minimalistic)."""
    from keras import layers

    blocks, _ = _ARCH[size]

    def batchnorm(name):
        return layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=name)

    def activation(x, kind):
        """(y, s) with y == s * activation(x)."""
        if kind == "RE" or minimalistic:
            return layers.ReLU()(x), 1.0
        return layers.Multiply()([x, layers.ReLU(6.0)(x + 3.0)]), _HS_SCALE

    x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0)(inputs) if rescale else inputs
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x, scale = activation(batchnorm("conv_bn")(x), "HS")

    for index, (kernel, expansion, filters, squeeze_excite, kind, stride) in enumerate(blocks):
        if minimalistic:
            kernel, squeeze_excite = 3, False
        prefix = f"expanded_conv_{index}_" if index else "expanded_conv_"
        shortcut, shortcut_scale = x, scale
        in_channels = x.shape[-1]
        expanded = _make_divisible(in_channels * expansion)
        filters = _make_divisible(filters * alpha)
        if index:
            x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, name=f"{prefix}expand")(x)
            x, scale = activation(batchnorm(f"{prefix}expand_bn")(unscale(x, scale)), kind)
        if stride == 2:
            x = layers.ZeroPadding2D(_stride2_padding(x.shape[1], kernel), name=f"{prefix}depthwise_pad")(x)
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same" if stride == 1 else "valid",
                                   use_bias=False, name=f"{prefix}depthwise")(x)
        x, scale = activation(batchnorm(f"{prefix}depthwise_bn")(unscale(x, scale)), kind)
        if squeeze_excite:
            s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")(x)
            s = layers.Conv2D(_make_divisible(expanded * 0.25), 1, padding="same",
                              name=f"{prefix}squeeze_excite_conv")(unscale(s, scale))
            s = layers.ReLU(name=f"{prefix}squeeze_excite_relu")(s)
            s = layers.Conv2D(expanded, 1, padding="same", name=f"{prefix}squeeze_excite_conv_1")(s)
            s = layers.ReLU(6.0)(s + 3.0) * (1.0 / 6.0)  # hard sigmoid (conv bias absorbs the +3)
            x = layers.Multiply(name=f"{prefix}squeeze_excite_mul")([x, s])
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
        x, scale = batchnorm(f"{prefix}project_bn")(unscale(x, scale)), 1.0
        if stride == 1 and in_channels == filters:
            if shortcut_scale != 1.0:  # keep the residual stream in the shortcut's scale
                x = x * shortcut_scale
            x, scale = layers.Add(name=f"{prefix}add")([shortcut, x]), shortcut_scale

    x = layers.Conv2D(_make_divisible(x.shape[-1] * 6), 1, padding="same", use_bias=False, name="conv_1")(x)
    return activation(batchnorm("conv_1_bn")(unscale(x, scale)), "HS")


def unscale(x, scale: float):
    """``x / scale`` as a constant multiply (folded into the neighbouring conv), or ``x``."""
    return x if scale == 1.0 else x * (1.0 / scale)


def unfused_hard_swish(x):
    """hard-swish of a small (1x1xC) tensor in a form the converter leaves unfused: XNNPACK
    takes its int8 MUL/ADD, not an int8 HARD_SWISH."""
    from keras import layers

    return layers.Multiply()([x * (1.0 / 6.0), layers.ReLU(6.0)(x + 3.0)])


def int8_friendly_graph(variant: ModelVariant):
    """The MobileNetV3 classifier of the module docstring, randomly initialized."""
    import keras
    from keras import layers, ops

    size, minimalistic = _options(variant)
    _, last_point = _ARCH[size]
    alpha, classes = variant.alpha, variant.num_classes
    inputs = keras.Input((variant.resolution, variant.resolution, 3))
    x, scale = int8_friendly_backbone(inputs, size, alpha, minimalistic)
    x = unscale(layers.GlobalAveragePooling2D(keepdims=True)(x), scale)
    x = layers.Conv2D(_make_divisible(last_point * alpha) if alpha > 1.0 else last_point, 1,
                      padding="same", use_bias=True, name="conv_2")(x)
    x = layers.ReLU()(x) if minimalistic else unfused_hard_swish(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Conv2D(classes, 1, padding="same", name="logits")(x)
    x = ops.reshape(x, (-1, classes))
    x = layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=f"MobileNetV3{size.title()}")


# -- conversion ---------------------------------------------------------------------------------


def _variant_factory(size: str, minimalistic: bool):
    family = f"mobilenet_v3_{size}{'_minimalistic' if minimalistic else ''}"
    title = f"MobileNetV3-{size.title()}{' minimalistic' if minimalistic else ''}"

    def make_variant(alpha: float | None, resolution: int) -> ModelVariant:
        return ModelVariant(
            family=family,
            alpha=alpha,
            resolution=resolution,
            preprocess=PreprocessSpec.center_crop(resolution, mean=0, std=1),  # raw pixels: the graph rescales
            weights=keras_weights(size, minimalistic, alpha),
            builder=build,
            description=f"{title} alpha {alpha}, {resolution}x{resolution}, ImageNet-1k",
            license="Apache-2.0 (Keras Applications weights)",
            options=(("size", size), ("minimalistic", minimalistic)),
        )

    return family, make_variant


def _family(size: str, minimalistic: bool, aliases: tuple[str, ...]) -> Family:
    name, make_variant = _variant_factory(size, minimalistic)
    alphas = (1.0,) if minimalistic else (0.75, 1.0)
    kind = " minimalistic (ReLU, 3x3, no squeeze-excite)" if minimalistic else ""
    return Family(
        name=name,
        aliases=aliases,
        alphas=alphas,
        resolutions=RESOLUTIONS,
        default_alpha=1.0,
        default_resolution=224,
        make_variant=make_variant,
        summary=f"MobileNetV3-{size.title()}{kind} (keras.applications.MobileNetV3{size.title()}), "
        f"alpha {', '.join(str(a) for a in alphas)}, 224 px",
    )


FAMILIES = (
    _family("small", False, ("mobilenetv3_small", "mobilenetv3small")),
    _family("large", False, ("mobilenetv3_large", "mobilenetv3large")),
    _family("small", True, ("mobilenetv3_small_minimalistic", "mobilenet_v3_small_min")),
    _family("large", True, ("mobilenetv3_large_minimalistic", "mobilenet_v3_large_min")),
)

__all__ = [
    "FAMILIES", "build", "build_stock", "copy_weights", "int8_friendly_backbone", "int8_friendly_graph",
    "keras_weights", "unfused_hard_swish", "unscale",
]
