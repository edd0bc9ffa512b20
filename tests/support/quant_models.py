"""A tiny Keras classifier and images for the quantization techniques' unit tests."""

from __future__ import annotations

import numpy as np

from support.random_weights import randomize_batchnorm


def tiny_model(seed: int = 0, relu6: bool = True, softmax_in_dense: bool = True, size: int = 16):
    """Conv → BN → ReLU6 → DW → BN → ReLU6 → PW → BN → ReLU → GAP → Dense, with BatchNorm
    statistics far from their initial values."""
    import keras

    keras.utils.set_random_seed(seed)
    act = (lambda n: keras.layers.ReLU(6.0, name=n)) if relu6 else (lambda n: keras.layers.ReLU(name=n))
    x = inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = act("conv_relu")(x)
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = act("dw_relu")(x)
    x = keras.layers.Conv2D(12, 1, use_bias=False, name="pw")(x)
    x = keras.layers.BatchNormalization(name="pw_bn")(x)
    x = keras.layers.ReLU(name="pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if softmax_in_dense:
        x = keras.layers.Dense(10, activation="softmax", name="fc")(x)
    else:
        x = keras.layers.Dense(10, name="fc")(x)
        x = keras.layers.Activation("softmax", name="softmax")(x)
    model = keras.Model(inp, x)
    randomize_batchnorm(model, seed, gamma=(0.5, 2.0), beta=(-0.5, 1.0), variance=(0.2, 3.0))
    return model


def images(n: int = 16, seed: int = 1, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
