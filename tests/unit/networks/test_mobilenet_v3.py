"""MobileNetV3 Small/Large: zoo entries, the int8-friendly graph equals the Keras application,
every variant converts to an all-integer model that XNNPACK runs whole, preprocessing
happens exactly once, and the shared real weights load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemobile.networks import mobilenet_v3 as v3
from edgemobile.networks.zoo import resolve
from edgemobile.quantization.tflite_converter import convert_keras
from edgemobile.quantization.exact_ranges import relu6_range_violations

VARIANTS = [
    ("mobilenet_v3_small", 0.75), ("mobilenet_v3_small", 1.0),
    ("mobilenet_v3_large", 0.75), ("mobilenet_v3_large", 1.0),
    ("mobilenet_v3_small_minimalistic", 1.0), ("mobilenet_v3_large_minimalistic", 1.0),
]
SHARED_WEIGHTS = Path("weights/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5")
# Ops XNNPACK runs in int8; anything else would fall back to a builtin kernel.
INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "MEAN", "RESHAPE", "SOFTMAX", "PAD"}


def _family(name):
    return next(f for f in v3.FAMILIES if f.name == name)


def _variant(name, alpha):
    return _family(name).variant(alpha, 224)


def _randomize(model, seed=0):
    """Random weights with non-trivial BatchNorm statistics and biases."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.5, 2.0, n)])
        elif layer.weights and len(layer.weights) == 2:  # conv with bias
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    return model


_BUILT: dict = {}


def _models(name, alpha):
    """(stock Keras application, int8-friendly graph) with the same random weights; built once
    per session (all twelve models take ~150 MB)."""
    if (name, alpha) not in _BUILT:
        pytest.importorskip("tensorflow")
        variant = _variant(name, alpha)
        stock = _randomize(v3.build_stock(variant, None), seed=int(alpha * 100) + len(name))
        model = v3.int8_friendly_graph(variant)
        v3.copy_weights(stock, model)
        _BUILT[(name, alpha)] = (stock, model)
    return _BUILT[(name, alpha)]


def _pixels(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 224, 224, 3)).astype(np.float32)


# -- zoo ------------------------------------------------------------------------------------------


def test_zoo_entries_mirror_keras_published_weights():
    names = {f.name: f for f in v3.FAMILIES}
    assert set(names) == {n for n, _ in VARIANTS}
    assert names["mobilenet_v3_small"].alphas == (0.75, 1.0) == names["mobilenet_v3_large"].alphas
    assert names["mobilenet_v3_small_minimalistic"].alphas == (1.0,)
    for name, alpha in VARIANTS:
        variant = _variant(name, alpha)
        size = "small" if "small" in name else "large"
        minimal = "_minimalistic" if "minimalistic" in name else ""
        assert variant.weights.filename == f"weights_mobilenet_v3_{size}{minimal}_224_{alpha}_float.h5"
        assert variant.weights.url == v3.KERAS_WEIGHTS_URL + variant.weights.filename
        assert len(variant.weights.checksum) == 32  # the md5 Keras verifies
        assert variant.name == f"{name}_{alpha}_224"
        spec = variant.preprocess
        assert (spec.size, spec.resize_shorter, spec.mean, spec.std) == (224, 256, (0.0,) * 3, (1.0,) * 3)


def test_keras_hashes_match_the_installed_keras():
    keras_v3 = pytest.importorskip("keras.src.applications.mobilenet_v3")
    for name, alpha in VARIANTS:
        weights = _variant(name, alpha).weights
        key = weights.filename[len("weights_mobilenet_v3_"):-len(".h5")]
        assert keras_v3.WEIGHTS_HASHES[key][0] == weights.checksum
        assert keras_v3.BASE_WEIGHT_PATH + weights.filename == weights.url


def test_registered_in_the_zoo_with_aliases():
    assert resolve("mobilenet_v3_small").name == "mobilenet_v3_small_1.0_224"
    assert resolve("MobileNetV3-Large", 0.75).name == "mobilenet_v3_large_0.75_224"
    assert resolve("mobilenetv3_small_minimalistic").family == "mobilenet_v3_small_minimalistic"


# -- the graph ------------------------------------------------------------------------------------


@pytest.mark.convert
@pytest.mark.parametrize("name,alpha", VARIANTS)
def test_int8_friendly_graph_equals_keras_application(name, alpha):
    import keras

    stock, model = _models(name, alpha)
    assert model.input_shape == stock.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    weighted = lambda m: sorted((l.name, tuple(tuple(w.shape) for w in l.weights)) for l in m.layers if l.weights)
    assert weighted(model) == weighted(stock)  # same layers, names and weight shapes
    x = _pixels(2)
    logits = lambda m: keras.Model(m.input, m.get_layer("predictions").input).predict(x, verbose=0)
    want, got = logits(stock), logits(model)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    np.testing.assert_allclose(model.predict(x, verbose=0), stock.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name,alpha", VARIANTS)
def test_converts_to_all_integer_model_xnnpack_runs_whole(name, alpha):
    from edgemobile.quantization.integer_check import op_histogram, require_integer_only
    from edgemobile.runtime.interpreter import TFLiteClassifier

    _, model = _models(name, alpha)
    x = _pixels(4, seed=1)
    tflite = convert_keras(model, "int8", lambda: ([s[None]] for s in x))
    converted = TFLiteClassifier(tflite, source=name)
    require_integer_only(converted)  # the project's check: no op touches a float tensor
    details = converted.interpreter.get_tensor_details()
    assert {np.dtype(d["dtype"]).name for d in details} <= {"int8", "int32"}
    ops = op_histogram(converted)
    assert set(ops) <= INT8_OPS, ops  # no HARD_SWISH / QUANTIZE / DEQUANTIZE / dynamic-shape ops
    delegates = [op for op in converted.interpreter._get_ops_details() if op["op_name"] == "DELEGATE"]
    # one XNNPACK partition: no op inside the network falls back to a builtin kernel (only the
    # final int8 SOFTMAX may run after it: XNNPACK takes SOFTMAX in float only)
    assert len(delegates) == 1
    assert relu6_range_violations(tflite) == []  # calibrated without the in-place bug
    scores = converted.run(x[0])  # random weights: near-uniform, mostly below int8's 1/256 step
    assert scores.shape == (1000,) and 0.0 <= scores.min() and scores.max() <= 1.0


# -- preprocessing --------------------------------------------------------------------------------


def test_preprocessing_is_in_the_graph_so_the_spec_is_identity():
    spec = resolve("mobilenet_v3_small").preprocess
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(spec.normalize(pixels), pixels.astype(np.float32))
    assert spec.input_range == (0.0, 255.0)
    _, model = _models("mobilenet_v3_small", 1.0)
    assert any(layer.__class__.__name__ == "Rescaling" for layer in model.layers)


def _val_images(shared: Path, count: int):
    synsets = [line.split()[0] for line in (shared / "imagenet" / "synset_words.txt").read_text().splitlines()]
    folders = sorted(p for p in (shared / "imagenet" / "val").iterdir() if p.is_dir())[::40][:count]
    return [(next(iter(sorted(f.glob("*.JPEG")))), synsets.index(f.name)) for f in folders]


@pytest.mark.convert
def test_shared_real_weights_load_and_preprocessing_applies_once(shared):
    weights = shared / SHARED_WEIGHTS
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    variant = resolve("mobilenet_v3_small", 1.0)
    model = variant.build(weights)
    stock = v3.build_stock(variant, weights)
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), stock.get_layer(layer.name).get_weights() if layer.weights else []):
            np.testing.assert_array_equal(a, b)
    images = _val_images(shared, 12)
    x = np.stack([variant.preprocess(path) for path, _ in images])
    labels = np.array([label for _, label in images])
    once = model.predict(x, verbose=0)
    twice = model.predict(x / 127.5 - 1.0, verbose=0)  # what a second normalization would feed
    np.testing.assert_allclose(once, stock.predict(x, verbose=0), atol=1e-5)
    top5 = np.argsort(-once, axis=1)[:, :5]
    assert np.mean([label in row for label, row in zip(labels, top5)]) >= 0.75
    assert np.mean(once.argmax(1) == twice.argmax(1)) <= 0.5
