"""The streamed Keras-side pass: its numpy working set does not grow with the number of technique
images, it computes what the all-at-once simulation computes, and it feeds the simulated
int8 model what a device feeds (raw pixels through the input grid)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("keras")

from edgemobile.quantization import graph as G
from edgemobile.quantization import simulate as S
from edgemobile.quantization.pipeline import QuantOptions, prepare
from test_quant_graph import images, tiny_model

SIZE = 96  # the first conv output of 256 images is 19 MB of float32


def peak_bytes(n: int) -> int:
    x = images(n, size=SIZE)
    model = tiny_model(size=SIZE)
    options = QuantOptions(ranges="mse", technique_images=n, adaround_iterations=20)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        prepare(model, x, options, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_numpy_working_set_does_not_grow_with_technique_images():
    small, large = peak_bytes(64), peak_bytes(256)
    assert large <= 1.5 * small, (small, large)


def test_stream_matches_the_simulation_on_bias_correction():
    """Bias correction alone through the stream gives the biases the all-at-once simulation
    (:func:`simulate` with a bias-correcting hook) gives — 40 images, chunks of 32."""
    from edgemobile.quantization.bias_correction import correct_bias

    x = images(40, size=24)
    options = QuantOptions(ranges="mse", equalize=False, bias_correction=True, adaround=False)
    streamed = prepare(tiny_model(size=24), x, options, progress=False).model

    model = G.fold_batchnorm(tiny_model(size=24))
    reference = S.snapshot(model)

    def on_linear(layer, ref_in, mod_in, ref_out):
        return correct_bias(layer, ref_out, np.asarray(S.nearest_output(layer, mod_in)))[0]

    S.simulate(model, x, range_method="mse", on_linear=on_linear, reference=reference)
    for a, b in zip(G.linear_layers(streamed), G.linear_layers(model)):
        np.testing.assert_allclose(a.bias, b.bias, rtol=1e-4, atol=1e-5 * np.abs(b.bias).max(), err_msg=a.name)


def test_device_input_is_raw_pixels_through_the_input_grid():
    from edgemobile.data.preprocessing import PreprocessSpec
    from edgemobile.quantization.ranges import quant_params

    spec = PreprocessSpec.center_crop(8, mean=127.5, std=127.5)
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = spec.normalize(pixels)
    scale, zero_point = quant_params(-1.0, 1.0)
    device = S.device_input(x, -1.0, 1.0, spec)
    codes = pixels.astype(np.float32) - 128  # what Android/MediaPipe feed an int8 input
    np.testing.assert_allclose(device, (codes - zero_point) * scale, atol=1e-7)
    offset = device - x
    np.testing.assert_allclose(offset, offset.flat[0], atol=1e-6)  # a constant, not a rounding
    assert abs(offset.flat[0]) == pytest.approx(scale / 2, rel=1e-4)  # half a step
    # An input grid that is not the normalization (ImageNet mean/std) is quantized instead.
    imagenet = PreprocessSpec.center_crop(8, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    y = imagenet.normalize(pixels)
    lo, hi = float(y.min()), float(y.max())
    np.testing.assert_array_equal(S.device_input(y, lo, hi, imagenet), S.device_input(y, lo, hi))
