"""A user's world for the tests of issue 13, made from ../shared: five ImageNet classes as
class-name folders (the names spelled differently in train and val, as people do) and
MobileNet backbones with the shared ImageNet weights and a new 5-class head, fine-tuned
briefly on the train folder and saved as ``.keras``.

Split (honest: nothing evaluated is trained or calibrated on): the five classes are the
only ones with 4 val images; ``train/`` holds each class's calib (ImageNet train) image and
its first 2 val images, ``val/`` the other 2 val images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

# synset → (train folder name, val folder name): case and spacing differ on purpose.
CLASSES = {
    "n01914609": ("Sea Anemone", "sea anemone"),
    "n02037110": ("oystercatcher", "Oyster catcher"),
    "n03272562": ("electric locomotive", "Electric Locomotive"),
    "n04562935": ("water tower", "water  tower"),
    "n04613696": ("yurt", "YURT"),
}
LABELS = sorted(train for train, _ in CLASSES.values())  # image_dataset_from_directory's order
MOBILENET_WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"
V3_SMALL_WEIGHTS = "weights/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5"


def class_folders(shared: Path, root: Path) -> tuple[Path, Path]:
    """(train, val) class-name folders below ``root``."""
    train, val = root / "train", root / "val"
    imagenet = shared / "imagenet"
    for synset, (train_name, val_name) in CLASSES.items():
        (train / train_name).mkdir(parents=True)
        (val / val_name).mkdir(parents=True)
        calib = sorted((imagenet / "calib").glob(f"{synset}_*"))
        vals = sorted((imagenet / "val" / synset).iterdir())
        assert len(calib) == 1 and len(vals) == 4, synset
        # users' photos are not named by synset (an n01914609_ prefix would label the file)
        shutil.copy(calib[0], train / train_name / "imagenet_train.JPEG")
        for path in vals[:2]:
            shutil.copy(path, train / train_name / path.name)
        for path in vals[2:]:
            shutil.copy(path, val / val_name / path.name)
    return train, val


def _training_set(train: Path, spec) -> tuple[np.ndarray, np.ndarray]:
    """Every train image prepared by ``spec``, plus its mirror image (a small augmentation)."""
    from edgemobile.data.datasets import find_images

    x, y = [], []
    for path in find_images(train):
        image = spec(path)
        label = LABELS.index(path.parent.name)
        x += [image, image[:, ::-1]]
        y += [label, label]
    return np.stack(x), np.array(y)


def fine_tune(backbone, spec, train: Path, name: str, epochs: int = 60):
    """``backbone`` (an image → feature-vector Keras model) + a new softmax head of
    ``len(LABELS)`` classes, the head trained on ``train`` (backbone frozen); returns the
    whole model."""
    import keras

    x, y = _training_set(train, spec)
    features = np.asarray(backbone.predict(x, batch_size=8, verbose=0))
    # before the layer exists: Keras draws an unseeded initializer's seed from Python's
    # random when the layer is constructed, so earlier tests would change the head
    keras.utils.set_random_seed(0)
    head = keras.layers.Dense(len(LABELS), activation="softmax", name="head")
    probe = keras.Sequential([keras.Input(features.shape[1:]), head])
    probe.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    probe.fit(features, y, epochs=epochs, batch_size=len(y), verbose=0)
    return keras.Model(backbone.input, head(backbone.output), name=name)


def mobilenet_v1_user_model(shared: Path, train: Path, out: Path) -> Path:
    """MobileNetV1 α0.25/224 (ImageNet weights, no Rescaling layer: ``--preprocess
    mobilenet``) with a 5-class head, saved to ``out`` (.keras)."""
    import keras

    from edgemobile.networks.zoo import resolve

    variant = resolve("mobilenet", 0.25, 224)
    full = variant.build(shared / MOBILENET_WEIGHTS)
    pooled = next(layer for layer in full.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    backbone = keras.Model(full.input, keras.layers.Flatten()(pooled.output))
    model = fine_tune(backbone, variant.preprocess, train, "flowers_v1")
    model.save(out)
    return out


def mobilenet_v3_small_user_model(shared: Path, train: Path, out: Path) -> Path:
    """``keras.applications.MobileNetV3Small(include_top=False)`` (its own Rescaling layer: no
    preprocessing flag) with the shared ImageNet weights loaded by layer name, a new 5-class
    head after a GlobalAveragePooling2D, flattened into one model as users write it
    (``Model(base.input, head(base.output))``), saved to ``out`` (.keras)."""
    import keras

    from edgemobile.networks import mobilenet_v3 as v3
    from edgemobile.networks.zoo import resolve

    variant = resolve("mobilenet_v3_small")
    base = keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), include_top=False, weights=None,
                                               include_preprocessing=True)
    v3.copy_weights(v3.build_stock(variant, shared / V3_SMALL_WEIGHTS), base)
    backbone = keras.Model(base.input, keras.layers.GlobalAveragePooling2D(name="pool")(base.output))
    model = fine_tune(backbone, variant.preprocess, train, "flowers_v3")
    model.save(out)
    return out


def mediapipe_names_right(model: Path, val: Path) -> tuple[int, int]:
    """(held-apart images MediaPipe's ImageClassifier names right, images) for a bundled
    ``model``; every name it gives must be one of the user's labels. MediaPipe stretches the
    whole image to the input size, so it is fed the model's own crop."""
    from mediapipe.tasks.python import BaseOptions, vision

    import mediapipe as mp

    from edgemobile.data.preprocessing import load_rgb
    from edgemobile.metadata import read_metadata

    spec = read_metadata(model).preprocess
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=1)
    classifier = vision.ImageClassifier.create_from_options(options)
    right = 0
    try:
        images = sorted(val.glob("*/*.JPEG"))
        for path in images:
            crop = np.ascontiguousarray(spec.crop_pixels(load_rgb(path)))
            top = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)).classifications[0]
            name = top.categories[0].category_name
            assert name in LABELS, name
            right += "".join(name.split()).lower() == "".join(path.parent.name.split()).lower()
    finally:
        classifier.close()
    return right, len(images)
