"""Shared test helper: Keras models whose BatchNorm layers are far from their initial state,
so folding, fusing and quantization are tested on non-trivial statistics."""

from __future__ import annotations

import numpy as np


def randomize_batchnorm(model, seed: int = 0, gamma=(0.5, 1.5), beta=(-0.3, 0.3), mean=(-0.5, 0.5),
                        variance=(0.5, 2.0)) -> None:
    """Uniformly random gammas, betas, moving means and moving variances in the given ranges."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(*gamma, c), rng.uniform(*beta, c),
                               rng.uniform(*mean, c), rng.uniform(*variance, c)])
