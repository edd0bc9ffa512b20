"""Tiny real Keras model files (32 px) a user could have saved, and generated images, for tests
of your own models that need no ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support.images import write_images

R = 32
CLASSES = ["cat", "dog", "fox"]


def tiny_model(path, classes: int, grouped: bool = False, seed: int = 0, logits=None):
    """``logits``: the head's logits for every image (its kernel scaled down to nearly nothing)."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    i = keras.Input((R, R, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same")(i)))
    if grouped:
        x = L.Conv2D(8, 3, padding="same", activation="relu", groups=2)(x)
    head = L.Dense(classes, activation="softmax")
    x = head(L.GlobalAveragePooling2D()(x))
    model = keras.Model(i, x, name=path.stem)
    rng = np.random.default_rng(seed)
    bn = next(layer for layer in model.layers if isinstance(layer, L.BatchNormalization))
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.uniform(-0.3, 0.3, 8), rng.uniform(-0.5, 0.5, 8),
                    rng.uniform(0.5, 2.0, 8)])
    if logits is not None:
        kernel, _ = head.get_weights()
        head.set_weights([kernel * 1e-6, np.asarray(logits, np.float32)])
    model.save(path)
    return path


def accuracy_target_world(root: Path) -> dict:
    """Two models for ``report --min-agreement 0.9`` and their images: "sure" is certain of one
    class, so int8 agrees with it on every image; "torn" splits its probability evenly (logits
    0, 0.001, 0), so its int8 output (steps of 1/256) ties all three classes and its top-1 never
    agrees: no candidate reaches the target. ``train``: 81 calibration images (16 held apart,
    65 convert), the fewest a target takes."""
    return {"train": write_images(root / "train", CLASSES, per_class=27, size=40),
            "val": write_images(root / "val", CLASSES, per_class=2, size=40),
            "sure": tiny_model(root / "sure.keras", len(CLASSES), logits=[8, 0, 0]),
            "torn": tiny_model(root / "torn.keras", len(CLASSES), logits=[0, 0.001, 0])}
