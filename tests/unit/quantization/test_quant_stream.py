"""The streamed Keras-side pass: its peak memory does not grow with the number of technique
images, it computes what the all-at-once simulation computes, and it feeds the simulated
int8 model what a device feeds (raw pixels through the input grid)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")

from edgemobile.quantization import graph
from edgemobile.quantization import simulate
from edgemobile.quantization.engine import prepare
from edgemobile.quantization.techniques.recipe import DEFAULT
from support.paths import ROOT
from support.quant_models import images, tiny_model

# The Keras-side pass in a child process, on a model whose first activations are 96×96×16
# float32 — 150 MB per tensor for 256 images: the peak of its traced allocations (numpy's
# arrays, where activations held for all images would show: exact from run to run) and its
# resident-memory peak above the process' own baseline (TensorFlow's allocations included,
# but varying by ±30 % between identical runs with the allocator's reuse of freed blocks).
CHILD = """
import os, sys
import numpy as np
import keras
from edgemobile.quantization.engine import prepare
from edgemobile.quantization.techniques.recipe import DEFAULT

def rss_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

n = int(sys.argv[1])
keras.utils.set_random_seed(0)
x = inp = keras.Input((96, 96, 3))
x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.ReLU(6.0)(x)
x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.ReLU(6.0)(x)
x = keras.layers.Conv2D(16, 1, use_bias=False)(x)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.ReLU()(x)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))
images = np.random.default_rng(1).uniform(-1, 1, (n, 96, 96, 3)).astype(np.float32)
options = lambda k: DEFAULT.replace(ranges="mse", technique_images=k, adaround_iterations=20)
prepare(model, images[:4], options(4), progress=False)  # warm-up: kernels, tracing
import tracemalloc
tracemalloc.start()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
base = rss_mb("VmRSS")
prepare(model, images, options(n), progress=False)
print(tracemalloc.get_traced_memory()[1] / 2**20, rss_mb("VmHWM") - base)
"""


def peak_increase_mb(n: int) -> tuple[float, float]:
    """(traced peak, resident peak above the baseline) in MB of the pass on ``n`` images."""
    root = ROOT
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
               TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    traced, resident = done.stdout.strip().splitlines()[-1].split()
    return float(traced), float(resident)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_does_not_grow_with_technique_images():
    """4× the technique images, at most 1.5× the traced peak, and no more than 300 MB more
    resident memory. Measured on this model, 64 → 256 images: the stream 61 → 52 MB traced,
    +30 to +165 MB resident; the all-at-once simulation it replaced (every tensor of every
    image, float and int8) 88 → 351 MB traced, 238 → 948 MB resident."""
    small, large = peak_increase_mb(64), peak_increase_mb(256)
    assert large[0] <= 1.5 * small[0], (small, large)
    assert large[1] <= small[1] + 300, (small, large)


def test_stream_matches_the_simulation_on_bias_correction():
    """Bias correction alone through the stream gives the biases the all-at-once simulation
    (:func:`simulate` with a bias-correcting hook) gives — 40 images, chunks of 32."""
    from edgemobile.quantization.techniques.bias_correction import mean_shift, remove_shift

    x = images(40, size=24)
    options = DEFAULT.replace(ranges="mse", equalize=False, bias_correction=True, adaround=False)
    streamed = prepare(tiny_model(size=24), x, options, progress=False).model

    model = graph.fold_batchnorm(tiny_model(size=24))
    reference = simulate.snapshot(model)

    def on_linear(layer, ref_in, mod_in, ref_out):  # the technique's own correction, on the simulation's outputs
        quantized = np.asarray(simulate.nearest_output(layer, mod_in), np.float32)
        shift = mean_shift(ref_out, quantized)
        remove_shift(layer, shift)
        return quantized - shift.astype(np.float32)

    simulate.simulate(model, x, range_method="mse", on_linear=on_linear, reference=reference)
    for a, b in zip(graph.linear_layers(streamed), graph.linear_layers(model)):
        np.testing.assert_allclose(a.bias, b.bias, rtol=1e-4, atol=1e-5 * np.abs(b.bias).max(), err_msg=a.name)


def test_device_input_is_raw_pixels_through_the_input_grid():
    from edgemobile.data.preprocessing import PreprocessSpec
    from edgemobile.quantization.ranges import quant_params

    spec = PreprocessSpec.center_crop(8, mean=127.5, std=127.5)
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = spec.normalize(pixels)
    scale, zero_point = quant_params(-1.0, 1.0)
    device = simulate.device_input(x, -1.0, 1.0, spec)
    codes = pixels.astype(np.float32) - 128  # what Android/MediaPipe feed an int8 input
    np.testing.assert_allclose(device, (codes - zero_point) * scale, atol=1e-7)
    offset = device - x
    np.testing.assert_allclose(offset, offset.flat[0], atol=1e-6)  # a constant, not a rounding
    assert abs(offset.flat[0]) == pytest.approx(scale / 2, rel=1e-4)  # half a step
    # An input grid that is not the normalization (ImageNet mean/std) is quantized instead.
    imagenet = PreprocessSpec.center_crop(8, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    y = imagenet.normalize(pixels)
    lo, hi = float(y.min()), float(y.max())
    np.testing.assert_array_equal(simulate.device_input(y, lo, hi, imagenet), simulate.device_input(y, lo, hi))
