"""The int8-friendly rewrite of users' keras.applications MobileNetV3 models
(edgemobile.networks.rewrite), on random weights at 96x96: nested, flattened and Sequential
backbones, Large, minimalistic, alpha 0.75, include_top-style and pooled heads with Dropout,
Dense and BatchNorm; the rewritten model computes the same function, keeps the user's model
untouched, and whatever is not exactly the Keras backbone — or fails the numeric check — is
converted unchanged with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from support.random_weights import randomize_batchnorm

pytest.importorskip("tensorflow")

from edgemobile.networks import rewrite as rw  # noqa: E402

RES = 96


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).uniform(0, 255, (6, RES, RES, 3)).astype(np.float32)


def _base(size="small", seed=1, **kwargs):
    import keras

    app = keras.applications.MobileNetV3Small if size == "small" else keras.applications.MobileNetV3Large
    base = app(input_shape=(RES, RES, 3), weights=None, **{"include_top": False, **kwargs})
    randomize_batchnorm(base, seed)
    return base


def _user_model(base, nested: bool, classes: int = 5):
    """The head users write: GlobalAveragePooling2D → Dropout → Dense(softmax)."""
    import keras

    inputs = keras.Input((RES, RES, 3)) if nested else base.input
    x = base(inputs) if nested else base.output
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, x)


def _hard_swish_layers(model) -> list[str]:
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            found += _hard_swish_layers(layer)
        elif type(layer).__name__ == "Activation" and layer.get_config()["activation"] in ("hard_swish", "hard_silu"):
            found.append(layer.name)
    return found


def _check_rewritten(model, pixels, backbone: str):
    weights = [w.copy() for w in model.get_weights()]
    rewritten, done = rw.int8_rewrite(model, pixels)
    assert done.applied, done.message()
    assert done.backbone == backbone and done.images == len(pixels)
    assert rewritten is not model and not _hard_swish_layers(rewritten) and _hard_swish_layers(model)
    want = np.asarray(model(pixels, training=False))
    got = np.asarray(rewritten(pixels, training=False))
    assert np.abs(got - want).max() == pytest.approx(done.max_difference) and done.max_difference <= rw.TOLERANCE
    assert want.std() > 1e-3  # the outputs depend on the image (a check on constants proves nothing)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))  # the user's model untouched
    assert "rewrote the " + backbone in done.message() and done.as_dict()["applied"]
    return rewritten


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flattened"])
def test_small_with_users_head(pixels, nested):
    rewritten = _check_rewritten(_user_model(_base(), nested), pixels, "MobileNetV3-Small alpha 1 96x96")
    head = rewritten.get_layer("head")
    assert rewritten.output_shape == (None, 5) and head.kernel.shape == (576, 5)


def test_sequential_with_a_batchnorm_in_the_head(pixels):
    """keras.Sequential([backbone, pooling, BatchNormalization, Dense]): the 1/6 cannot pass the
    BatchNorm, so a constant multiply goes before it — still the same function."""
    import keras

    model = keras.Sequential([keras.Input((RES, RES, 3)), _base(seed=9), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.BatchNormalization(), keras.layers.Dense(5, activation="softmax")])
    randomize_batchnorm(model, 10)  # the head's BatchNorm
    _check_rewritten(model, pixels, "MobileNetV3-Small alpha 1 96x96")


def test_large_alpha_075_flattened(pixels):
    _check_rewritten(_user_model(_base("large", alpha=0.75), nested=False), pixels,
                     "MobileNetV3-Large alpha 0.75 96x96")


def test_minimalistic_has_nothing_to_carry(pixels):
    import keras

    model = _user_model(_base(minimalistic=True), nested=True)
    assert not _hard_swish_layers(model)  # no hard-swish: the rewrite is the same graph
    rewritten, done = rw.int8_rewrite(model, pixels)
    assert done.applied and done.backbone == "MobileNetV3-Small minimalistic alpha 1 96x96"
    assert done.max_difference <= rw.TOLERANCE
    assert not any(isinstance(layer, keras.layers.Multiply) for layer in rewritten.layers)


def test_include_top_style_head_and_pooling_avg(pixels):
    """The application's own head (conv_2 + hard-swish + logits + Flatten) with 5 classes, and
    pooling="avg" before a Dense: every hard-swish leaves, the 1/6 folds into conv_2/Dense."""
    import keras

    top = _base(include_top=True, classes=5, seed=2)
    _check_rewritten(top, pixels, "MobileNetV3-Small alpha 1 96x96")
    pooled = _base(pooling="avg", seed=3)
    model = keras.Model(pooled.input, keras.layers.Dense(5, activation="softmax")(pooled.output))
    _check_rewritten(model, pixels, "MobileNetV3-Small alpha 1 96x96")


def test_saved_keras_file_round_trip(pixels, tmp_path):
    from edgemobile.networks.user import load_keras_model

    path = tmp_path / "user.keras"
    _user_model(_base(seed=4), nested=True).save(path)
    _check_rewritten(load_keras_model(path), pixels, "MobileNetV3-Small alpha 1 96x96")


def test_altered_backbone_is_converted_unchanged_with_the_reason(pixels):
    import keras

    base = _base(seed=5)
    swap = next(layer.name for layer in base.layers if type(layer).__name__ == "Activation")

    def clone(layer):  # a user's edit: one hard-swish replaced by ReLU
        if layer.name == swap:
            return keras.layers.Activation("relu", name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    altered = keras.models.clone_model(base, clone_function=clone)
    altered.set_weights(base.get_weights())
    model = _user_model(altered, nested=False)
    same, done = rw.int8_rewrite(model, pixels)
    assert same is model and not done.applied
    message = done.message()
    assert message.startswith("MobileNetV3 backbone converted unchanged")
    assert "has Activation(relu) where the application has Activation(hard_silu)" in message and "\n" not in message


def test_convert_of_an_unrecognised_backbone_is_the_users_model_with_note_and_warning(tmp_path):
    """Through em.convert: the edited model is converted as it is (its int8 HARD_SWISH ops
    kept), the note says why, the provenance records it, and the XNNPACK warning names the
    ops with their measured cost."""
    import keras
    from PIL import Image

    import edgemobile as em
    from edgemobile.quantization.integer_check import op_histogram
    from edgemobile.runtime.interpreter import TFLiteClassifier

    base = _base(seed=8)
    swap = [layer.name for layer in base.layers if type(layer).__name__ == "Activation"][-1]  # after conv_1_bn
    altered = keras.models.clone_model(base, clone_function=lambda layer: keras.layers.Activation(
        "relu", name=layer.name) if layer.name == swap else layer.__class__.from_config(layer.get_config()))
    altered.set_weights(base.get_weights())
    model = tmp_path / "edited.keras"
    _user_model(altered, nested=True).save(model)
    rng = np.random.default_rng(0)
    (tmp_path / "cal").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (RES + 16, RES + 16, 3), dtype=np.uint8)).save(tmp_path / f"cal/{i}.png")
    (tmp_path / "labels.txt").write_text("".join(f"class {i}\n" for i in range(5)))
    converted = em.convert(model, "int8", calibration=tmp_path / "cal", labels=tmp_path / "labels.txt",
                           techniques="plain", progress=False)
    assert len(converted.notes) == 1 and "converted unchanged" in converted.notes[0]
    assert "not the backbone's hard-swish" in converted.notes[0] and "rewritten" not in repr(converted)
    rewrite = converted.provenance["rewrite"]
    assert rewrite["applied"] is False and rewrite["reason"] in converted.notes[0]
    hard_swish = op_histogram(TFLiteClassifier(converted.tflite))["HARD_SWISH"]
    assert hard_swish > 0 and len(converted.warnings) == 1
    assert f"{hard_swish}× HARD_SWISH (int8)" in converted.warnings[0]
    assert "× its float model's latency" in converted.warnings[0]


def test_head_reading_inside_the_backbone_is_not_rewritten(pixels):
    import keras

    base = _base(seed=6)
    inner = keras.layers.GlobalAveragePooling2D()(base.get_layer("expanded_conv_4_add").output)
    outer = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(5, activation="softmax")(keras.layers.Concatenate()([inner, outer]))
    model = keras.Model(base.input, x)
    same, done = rw.int8_rewrite(model, pixels)
    assert same is model and not done.applied and "read its inner tensors" in done.message()


def test_a_rewrite_that_computes_another_function_is_refused(pixels, monkeypatch):
    """The numeric check is the last word: a rewrite carrying the wrong factor (5 for 6) is
    caught on the calibration images and the user's model converted as it is."""
    from edgemobile.networks import mobilenet_v3 as v3

    model = _user_model(_base(seed=7), nested=True)
    monkeypatch.setattr(v3, "_HS_SCALE", 5.0)
    same, done = rw.int8_rewrite(model, pixels)
    assert same is model and not done.applied
    assert f"> {rw.TOLERANCE:g}) on the {len(pixels)} calibration images" in done.message()


def test_other_models_are_left_alone_silently(pixels):
    import keras

    inputs = keras.Input((RES, RES, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)  # one of the names, not the backbone
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))
    same, done = rw.int8_rewrite(model, pixels)
    assert same is model and not done.applied and done.message() is None
