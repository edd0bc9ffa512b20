"""BatchNorm folding, per-channel weight views and the int8 simulation the quantization
techniques build on: folding is exact, and the grid they round onto is the converter's."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgemobile.quantization import graph, ranges
from edgemobile.quantization import simulate
from support.quant_models import images, tiny_model


def test_fold_batchnorm_is_exact_and_splits_activations():
    model = tiny_model()
    folded = graph.fold_batchnorm(model)
    x = images()
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)), atol=1e-5)
    names = [type(layer).__name__ for layer in folded.layers]
    assert "BatchNormalization" not in names
    assert folded.get_layer("fc").activation is keras.activations.linear  # softmax split off
    assert isinstance(folded.get_layer("fc_act"), keras.layers.Activation)
    assert all(L.layer.use_bias for L in graph.linear_layers(folded))
    # the original is untouched
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


@pytest.mark.parametrize("kind", ["conv", "dw", "fc"])
def test_rows_round_trip(kind):
    folded = graph.fold_batchnorm(tiny_model())
    layer = {L.name: L for L in graph.linear_layers(folded)}[kind]
    rows = layer.rows()
    assert rows.shape[0] == layer.out_channels
    np.testing.assert_array_equal(layer.from_rows(rows), layer.kernel)


def test_quantize_rows_matches_the_converter_grid():
    """The grid techniques round onto is exactly TFLite's per-channel int8 weight grid."""
    pytest.importorskip("tensorflow")
    from edgemobile.quantization.tflite_converter import convert_keras
    from edgemobile.runtime.interpreter import TFLiteClassifier

    folded = graph.fold_batchnorm(tiny_model())
    x = images(8)
    tflite = convert_keras(folded, "int8", lambda: ([xi[None]] for xi in x))
    interpreter = TFLiteClassifier(tflite).interpreter
    details = interpreter.get_tensor_details()
    int8_filters = [d for d in details if d["dtype"] == np.int8 and len(d["shape"]) in (2, 4)
                    and len(d["quantization_parameters"]["scales"]) > 1]
    for L in graph.linear_layers(folded):
        expected = graph.quantize_rows(L.rows())
        found = False
        for d in int8_filters:
            q = interpreter.get_tensor(d["index"]).astype(np.float64)
            if (q.ndim == 2) != (L.kind == "dense") or (q.ndim == 4 and (q.shape[0] == 1) != (L.kind == "depthwise")):
                continue
            scales = d["quantization_parameters"]["scales"]
            axis = 3 if L.kind == "depthwise" else 0
            q = np.moveaxis(q, axis, 0).reshape(len(scales), -1) * scales[:, None]
            if q.shape == expected.shape:
                # TFLite filter layouts: (O, H, W, I) / (1, H, W, O) / (O, I) vs Keras rows (O, H·W·I)
                if np.allclose(q, expected, rtol=0, atol=1e-6 * np.abs(expected).max()):
                    found = True
        assert found, L.name


def test_simulation_tracks_the_converted_model():
    pytest.importorskip("tensorflow")
    from edgemobile.quantization.tflite_converter import convert_keras
    from edgemobile.runtime.interpreter import TFLiteClassifier

    folded = graph.fold_batchnorm(tiny_model(relu6=False))
    x = images(24)
    tflite = TFLiteClassifier(convert_keras(folded, "int8", lambda: ([xi[None]] for xi in x)))
    real = np.stack([tflite.run(xi) for xi in x])
    sim = simulate.simulate(folded, x)
    float_out = np.asarray(folded(x))
    # the simulation is far closer to the int8 model than the float model is
    assert np.abs(sim.quantized - real).mean() < 0.5 * np.abs(float_out - real).mean()
    assert sim.logits is not None and sim.logit_sqnr() > 10


def test_layer_roles():
    roles = simulate.layer_roles(graph.fold_batchnorm(tiny_model()))
    assert roles["conv"] == simulate.FUSED_LINEAR and roles["conv_relu"] == simulate.OWN
    assert roles["pad"] == simulate.PASS and roles["fc"] == simulate.LINEAR and roles["fc_act"] == simulate.FIXED


def test_simulated_ranges_see_every_channel(monkeypatch):
    """Regression: the histogram subsample once strode through the flat NHWC buffer with a step
    sharing a factor with the channel count (4 over 16 channels: only channels 0, 4, 8, 12),
    so the channel setting the range was never seen and MSE clipped it away — and bias
    correction then chased shifts that existed only in the simulation."""
    monkeypatch.setattr(ranges, "HISTOGRAM_SAMPLES", 250_000)  # the production ratio, at 1/16 of the size
    rng = np.random.default_rng(0)
    x = rng.exponential(0.05, (20, 56, 56, 16)).astype(np.float32)  # 1.0 M values: a 4x subsample
    x[..., 5] = rng.uniform(0.0, 8.0, x.shape[:-1])  # one wide channel
    lo, hi = simulate.tensor_range(x, "mse")
    assert lo == 0.0 and hi > 6.0, hi  # the wide channel's values keep their range


@pytest.mark.parametrize("kind,kernel,strides,dilation,padding,size", [
    ("conv", 3, 2, 1, "same", (9, 8)), ("conv", 3, 1, 2, "same", (7, 7)), ("conv", 1, 1, 1, "valid", (5, 6)),
    ("conv", 5, 2, 1, "valid", (11, 9)), ("depthwise", 3, 2, 1, "same", (8, 9)), ("depthwise", 3, 1, 2, "same", (9, 9)),
    ("depthwise", 5, 1, 1, "valid", (9, 7)), ("dense", None, None, None, None, (4, 5)), ("dense", None, None, None, None, ()),
])
def test_output_sum_equals_the_summed_outputs(kind, kernel, strides, dilation, padding, size):
    """The bias-correcting int8 stream takes a layer's mean output from its input's sum over
    the images: equal to summing the layer's float outputs over images and positions."""
    keras.utils.set_random_seed(1)
    if kind == "conv":
        layer = keras.layers.Conv2D(6, kernel, strides=strides, dilation_rate=dilation, padding=padding)
    elif kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(kernel, strides=strides, dilation_rate=dilation, padding=padding,
                                             depth_multiplier=2)
    else:
        layer = keras.layers.Dense(7)
    x = np.random.default_rng(0).normal(size=(5, *size, 4)).astype(np.float32)
    out = np.asarray(layer(x), np.float64)  # builds the layer: random kernel and a zero bias
    L = graph.LinearLayer(layer, kind)
    expected = out.reshape(-1, out.shape[-1]).sum(axis=0)
    np.testing.assert_allclose(L.output_sum(x.sum(axis=0, dtype=np.float64)), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
