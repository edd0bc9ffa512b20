"""The default int8 techniques on the layer patterns users write (issue 13 item 3): every
small classifier below converts with the default recipe, its int8 output agrees with the float
Keras model about as well as the converter alone (``--plain``) — a mis-folded BatchNorm or a
wrongly "corrected" layer is far off — and what the techniques leave alone is named, one line
each, in the report. Random weights with non-trivial BatchNorm statistics, 32 px, 32 images."""

from __future__ import annotations

import numpy as np
import pytest

R, CLASSES, IMAGES = 32, 6, 32


def _keras():
    import keras

    return keras


def _head(x, softmax=True):
    L = _keras().layers
    return L.Dense(CLASSES, activation="softmax" if softmax else None)(L.GlobalAveragePooling2D()(x))


def _conv_bn(x, filters, kernel=3, act="relu", **kw):
    L = _keras().layers
    x = L.BatchNormalization()(L.Conv2D(filters, kernel, padding=kw.pop("padding", "same"), **kw)(x))
    return L.Activation(act)(x) if act else x


def fused_activations(i):
    L = _keras().layers
    x = i
    for act in ("relu", "relu6", "swish", "gelu", "sigmoid", "leaky_relu"):
        x = L.Conv2D(8, 3, padding="same", activation=act)(x)
    x = L.Dense(12, activation="swish")(L.GlobalAveragePooling2D()(x))
    return L.Dense(CLASSES, activation="softmax")(x)


def no_bias_no_bn(i):
    L = _keras().layers
    x = L.Conv2D(12, 3, use_bias=False, activation="relu")(i)
    x = L.ReLU()(L.Conv2D(12, 3, use_bias=False)(x))
    return _head(x)


def batchnorm_placements(i):  # on the input, after an activation (before a conv), after a Dense
    L = _keras().layers
    x = L.Conv2D(12, 3, padding="same", activation="relu")(L.BatchNormalization()(i))
    x = _conv_bn(L.BatchNormalization()(x), 12)
    x = L.Dense(16)(L.GlobalAveragePooling2D()(x))
    x = L.ReLU()(L.BatchNormalization()(x))
    return L.Dense(CLASSES, activation="softmax")(x)


def separable(i):
    L = _keras().layers
    x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    x = L.ReLU()(L.BatchNormalization()(L.SeparableConv2D(12, 3, padding="same")(x)))
    x = L.SeparableConv2D(12, 3, strides=2, depth_multiplier=2, use_bias=False, activation="relu6")(x)
    return _head(x)


def grouped(i):
    L = _keras().layers
    x = L.Conv2D(12, 3, padding="same", activation="relu")(i)
    x = _conv_bn(x, 12, groups=4)
    return _head(L.ReLU()(L.Conv2D(12, 1)(x)))


def dilated_strided_valid(i):
    L = _keras().layers
    x = _conv_bn(i, 12, dilation_rate=2)
    x = _conv_bn(x, 12, strides=2, padding="valid")
    x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=2, padding="valid")(x)))
    return _head(L.ReLU()(L.Conv2D(12, 1)(x)))


def activation_layers(i):
    L = _keras().layers
    x = i
    for act in (L.LeakyReLU(0.1), L.ELU(), L.PReLU(shared_axes=[1, 2]), L.Activation("swish"),
                L.Activation("hard_swish")):
        x = act(_conv_bn(x, 8, act=None))
    return _head(x)


def concatenate(i):
    L = _keras().layers
    x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    x = L.Concatenate()([_conv_bn(x, 8, 1), _conv_bn(x, 8, 3)])
    return _head(L.ReLU()(L.Conv2D(12, 1)(x)))


def residual(i):
    L = _keras().layers
    x = _conv_bn(i, 12)
    y = _conv_bn(_conv_bn(x, 12), 12, act=None)
    return _head(L.ReLU()(L.Add()([x, y])))


def shared_conv(i):
    L = _keras().layers
    x = L.Conv2D(12, 3, padding="same", activation="relu")(i)
    conv = L.Conv2D(12, 3, padding="same", name="shared_conv")
    x = L.ReLU()(L.BatchNormalization()(conv(x)))
    return _head(L.ReLU()(L.BatchNormalization()(conv(x))))


def shared_batchnorm(i):  # one BatchNorm normalizing two convs: folding it into one would be wrong
    L = _keras().layers
    bn = L.BatchNormalization(name="shared_bn")
    a = L.ReLU()(bn(L.Conv2D(12, 3, padding="same")(i)))
    b = L.ReLU()(bn(L.Conv2D(12, 5, padding="same")(i)))
    return _head(L.Add()([a, b]))


def nested_model(i):
    keras = _keras()
    j = keras.Input((R, R, 3))
    backbone = keras.Model(j, _conv_bn(_conv_bn(j, 12), 12), name="backbone")
    block = keras.Sequential([keras.layers.Conv2D(12, 1), keras.layers.BatchNormalization(), keras.layers.ReLU()],
                             name="block")
    return _head(block(backbone(i)))


def squeeze_excite(i):
    L = _keras().layers
    x = _conv_bn(i, 12)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(12, 1, activation="sigmoid")(L.Conv2D(4, 1, activation="relu")(s))
    return _head(L.ReLU()(L.Conv2D(12, 1)(L.Multiply()([x, s]))))


def flatten_pooling_dropout(i):
    L = _keras().layers
    x = L.MaxPooling2D()(_conv_bn(i, 8, strides=2))
    x = L.AveragePooling2D(2)(L.Conv2D(8, 3, padding="same", activation="relu")(x))
    x = L.Dropout(0.2)(L.Dense(16, activation="relu")(L.Dropout(0.3)(L.Flatten()(x))))
    x = L.Flatten()(L.Reshape((4, 4))(x))
    return L.Dense(CLASSES, activation="softmax")(x)


def layer_normalization(i):
    L = _keras().layers
    x = L.ReLU()(L.LayerNormalization()(L.Conv2D(12, 3, padding="same")(i)))
    return _head(L.ReLU()(L.Conv2D(12, 3, padding="same")(x)))


def rescaling_input(i):
    return _head(_conv_bn(_keras().layers.Rescaling(1 / 127.5, offset=-1)(i), 12))


def normalization_input(i):
    L = _keras().layers
    return _head(_conv_bn(L.Normalization(mean=[120.0, 115.0, 100.0], variance=[3000.0, 3200.0, 3500.0])(i), 12))


def logits_output(i):
    return _head(_conv_bn(i, 12), softmax=False)


def dense_on_feature_map(i):
    L = _keras().layers
    x = _conv_bn(i, 12)
    x = L.ReLU()(L.BatchNormalization()(L.Dense(12)(x)))
    return _head(L.Dense(12, activation="relu")(x))


def channels_first_conv(i):
    L = _keras().layers
    x = L.Permute((3, 1, 2))(_conv_bn(i, 12))
    x = L.ReLU()(L.BatchNormalization(axis=1)(L.Conv2D(12, 3, padding="same", data_format="channels_first")(x)))
    return _head(L.Permute((2, 3, 1))(x))


def keras_applications_backbone(i):
    keras = _keras()
    base = keras.applications.MobileNet(input_shape=(R, R, 3), alpha=0.25, include_top=False, weights=None)
    return _head(base(i, training=False))  # the transfer-learning guide's call


# model → the skipped-pattern messages its conversion must report (substrings)
MODELS = {
    fused_activations: [], no_bias_no_bn: [], batchnorm_placements: [], dilated_strided_valid: [],
    activation_layers: [], concatenate: [], residual: [], shared_batchnorm: [], nested_model: [],
    squeeze_excite: [], flatten_pooling_dropout: [], layer_normalization: [], rescaling_input: [],
    normalization_input: [], logits_output: [], dense_on_feature_map: [], keras_applications_backbone: [],
    separable: [],  # split into the depthwise + 1×1 conv the converter makes of it
    grouped: ["grouped convolution (groups=4) is not modelled"],
    shared_conv: ["shared_conv: called more than once"],
    channels_first_conv: ["a channels_first Conv2D layer is not modelled"],
}
RAW_PIXELS = {rescaling_input, normalization_input}


def build(make, seed: int = 0):
    keras = _keras()
    keras.utils.set_random_seed(seed)
    i = keras.Input((R, R, 3), name="image")
    model = keras.Model(i, make(i), name=make.__name__)
    rng = np.random.default_rng(seed)

    def randomize(layers):  # BatchNorm statistics far from their initial state
        for layer in layers:
            if isinstance(layer, keras.Model):
                randomize(layer.layers)
            elif isinstance(layer, keras.layers.BatchNormalization):
                c = layer.get_weights()[0].shape[0]
                layer.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-0.3, 0.3, c),
                                   rng.uniform(-0.5, 0.5, c), rng.uniform(0.5, 2.0, c)])

    randomize(model.layers)
    return model


def images(n: int, seed: int, raw: bool = False) -> np.ndarray:
    """Smooth random images in [-1, 1] (or 0..255): blobs plus noise, like a photo's statistics."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-1, 1, (n, 4, 4, 3)).astype(np.float32)
    x = np.repeat(np.repeat(low, R // 4, 1), R // 4, 2) + 0.3 * rng.standard_normal((n, R, R, 3)).astype(np.float32)
    x = np.clip(x, -1, 1)
    return (x + 1) * 127.5 if raw else x


def int8_outputs(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from edgemobile.runtime.interpreter import TFLiteClassifier

    classifier = TFLiteClassifier(tflite, source="test")
    return np.stack([classifier.run(image) for image in x])


def relative_error(model, tflite: bytes, x: np.ndarray) -> float:
    """RMS of int8 − float outputs over the spread of the float outputs."""
    from edgemobile.quantization.graph import inference_call  # XLA for channels_first layers (oneDNN is off on some CPUs)

    f = np.asarray(inference_call(model)(x), np.float64)
    q = int8_outputs(tflite, x).astype(np.float64)
    return float(np.sqrt(np.mean((q - f) ** 2)) / np.std(f))


def convert(model, options, calibration):
    from edgemobile.converter_install import quiet_keras
    from edgemobile.quantization.pipeline import convert_full_integer

    with quiet_keras():
        return convert_full_integer(model, "int8", calibration, options, progress=False)


@pytest.mark.parametrize("make", list(MODELS), ids=[m.__name__ for m in MODELS])
def test_default_techniques_on_user_layer_patterns(make):
    from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN

    model = build(make)
    raw = make in RAW_PIXELS
    calibration, test = images(IMAGES, 1, raw), images(48, 2, raw)
    plain = relative_error(model, convert(model, PLAIN, calibration).tflite, test)
    done = convert(model, DEFAULT, calibration)
    default = relative_error(model, done.tflite, test)
    # About as good as the converter alone; a wrong model (a BatchNorm folded into the wrong
    # conv: 0.39 against 0.015) is far outside.
    assert default <= 1.25 * plain + 0.01, (default, plain)
    skipped = done.report["skipped"]
    assert len(skipped) == len(MODELS[make]), skipped
    for words, note in zip(MODELS[make], skipped):
        assert words in note and "\n" not in note, note
    # every conv/dense layer, nested models' included, went through bias correction and AdaRound
    assert len(done.report["layers"]) == len(linear_layers(model)) - (make is shared_conv), done.report["layers"]


def linear_layers(model) -> list:
    from edgemobile.quantization.graph import linear_kind

    found = []
    for layer in model.layers:
        inner = getattr(layer, "_functional", None) or layer
        if isinstance(inner, _keras().Model):
            found += linear_layers(inner)
        else:  # a SeparableConv2D is two (depthwise + pointwise)
            found += [layer] * (2 if isinstance(layer, _keras().layers.SeparableConv2D) else bool(linear_kind(layer)))
    return found


def test_dense_on_feature_map_with_enough_images_for_adaround():
    """AdaRound of a Dense applied per position (fan-in = channels, samples = positions): it
    used to take whole feature maps as its inputs and failed on the covariance's shape."""
    from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN

    model = build(dense_on_feature_map)
    done = convert(model, DEFAULT, images(160, 1))
    rows = {row["layer"]: row for row in done.report["layers"]}
    dense = [row for name, row in rows.items() if row["kind"] == "dense" and "adaround" not in row]
    assert dense and all(row["error_adaround"] <= row["error_nearest"] for row in dense)
    plain = relative_error(model, convert(model, PLAIN, images(160, 1)).tflite, images(48, 2))
    assert relative_error(model, done.tflite, images(48, 2)) <= 1.25 * plain + 0.01


def test_a_rewrite_that_changes_the_float_function_is_dropped(monkeypatch):
    """The guard itself: were BatchNorm folding or equalization wrong for some pattern, the
    float check drops it with a message instead of converting a different model."""
    from edgemobile.quantization import graph
    from edgemobile.quantization.techniques import equalization
    from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN

    model = build(residual)
    calibration, test = images(IMAGES, 1), images(48, 2)
    plain = relative_error(model, convert(model, PLAIN, calibration).tflite, test)
    folded_weights = graph.folded_weights
    monkeypatch.setattr(graph, "folded_weights", lambda linear, bn, factor=1.0: [
        w * 1.5 for w in folded_weights(linear, bn, factor)])  # a mis-fold
    done = convert(model, DEFAULT, calibration)
    assert len(done.report["skipped"]) == 1
    assert done.report["skipped"][0].startswith("all Keras-side techniques: BatchNorm folding (and inlining")
    assert relative_error(model, done.tflite, test) <= 1.25 * plain + 0.01
    monkeypatch.setattr(graph, "folded_weights", folded_weights)

    apply_scales = equalization.apply_scales
    monkeypatch.setattr(equalization, "apply_scales", lambda pair, scales: pair.first.set(
        kernel=pair.first.from_rows(pair.first.rows() * scales[:, None])))  # no compensation in L2
    done = convert(model, DEFAULT, calibration)
    assert [n.split(",")[0] for n in done.report["skipped"]] == ["equalization: dropped"]
    assert "equalization" not in done.report
    assert relative_error(model, done.tflite, test) <= 1.25 * plain + 0.01
    monkeypatch.setattr(equalization, "apply_scales", apply_scales)


def test_skipped_patterns_reach_warnings_and_provenance(tmp_path):
    """em.convert (and em.bundle) of a user model with a grouped conv: the message is a
    warning of the result and recorded in the model's provenance."""
    import edgemobile as em
    from edgemobile.metadata import read_metadata
    from support.images import write_images

    model = build(grouped)
    model.save(tmp_path / "grouped.keras")
    train = write_images(tmp_path / "train", [f"class{k}" for k in range(CLASSES)], per_class=2, size=R)
    result = em.convert(tmp_path / "grouped.keras", "int8", calibration=train, preprocess="mobilenet",
                        progress=False)
    notes = [w for w in result.warnings if "grouped convolution" in w]
    assert len(notes) == 1 and notes[0].startswith("int8 techniques skipped conv2d"), result.warnings
    provenance = read_metadata(result.tflite).extra["provenance"]
    assert any("grouped convolution" in n for n in provenance["quantization"]["skipped"])
    bundle = em.bundle(tmp_path / "grouped.keras", calibration=train, preprocess="mobilenet", progress=False)
    assert [w for w in bundle.warnings if "grouped convolution" in w] == notes


def test_a_sequential_model():
    """A top-level Sequential classifier: rebuilt as a functional model for the techniques."""
    from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN

    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((R, R, 3)), L.Conv2D(12, 3, padding="same"), L.BatchNormalization(),
                              L.ReLU(), L.Conv2D(12, 3, padding="same", activation="relu"),
                              L.GlobalAveragePooling2D(), L.Dense(CLASSES, activation="softmax")])
    bn = model.layers[1]
    rng = np.random.default_rng(0)
    bn.set_weights([rng.uniform(0.5, 1.5, 12), rng.uniform(-0.3, 0.3, 12), rng.uniform(-0.5, 0.5, 12),
                    rng.uniform(0.5, 2.0, 12)])
    calibration, test = images(IMAGES, 1), images(48, 2)
    plain = relative_error(model, convert(model, PLAIN, calibration).tflite, test)
    done = convert(model, DEFAULT, calibration)
    assert done.report["skipped"] == [] and len(done.report["layers"]) == 3
    assert len(done.report["equalization"]) == 2
    assert relative_error(model, done.tflite, test) <= 1.25 * plain + 0.01
