"""Cross-layer equalization: the float function is unchanged (within 1e-5 on the images it
was measured on) while narrow activation channels are stretched towards the tensor's range;
ReLU6 channels that reach the clip are left alone."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgemobile.quantization.techniques import equalization
from edgemobile.quantization import graph
from support.quant_models import images, tiny_model


def channel_spread(model, layer_name: str, x: np.ndarray) -> float:
    """max / median of the per-channel maxima of a layer's output (1 = equal ranges)."""
    peaks = equalization.channel_maxima(model, [equalization.Pair(graph.LinearLayer(model.get_layer(layer_name), "conv"), None, None, None)], x)
    alive = peaks[layer_name][peaks[layer_name] > 1e-6]
    return float(alive.max() / np.median(alive))


@pytest.mark.parametrize("relu6", [False, True])
def test_equalization_keeps_the_function_and_narrows_channel_ranges(relu6):
    model = graph.fold_batchnorm(tiny_model(relu6=relu6))
    x = images(32)
    before = np.asarray(model(x))
    pairs = equalization.find_pairs(model)
    assert [(p.first.name, p.second.name) for p in pairs] == [("conv", "dw"), ("dw", "pw"), ("pw", "fc")]
    spreads = {p.first.name: channel_spread(model, p.first.name, x) for p in pairs}
    done = equalization.equalize(model, x)
    np.testing.assert_allclose(np.asarray(model(x)), before, atol=1e-5)
    assert any(d.scales.max() > 1.01 for d in done)
    for p in pairs:
        after = channel_spread(model, p.first.name, x)
        assert after <= spreads[p.first.name] + 1e-6
    # ReLU (unbounded) pairs are equalized fully: every live channel reaches the same max
    if not relu6:
        assert channel_spread(model, "pw", x) < 1.0 + 1e-3 or channel_spread(model, "pw", x) < spreads["pw"]


def test_relu6_channels_at_the_clip_keep_scale_one():
    pair = equalization.Pair(None, None, None, 6.0)
    peaks = np.array([7.5, 6.0, 3.0, 0.5, 0.0])
    scales, saturated = equalization.pair_scales(pair, peaks)
    assert saturated == 2 and scales[0] == 1.0 and scales[1] == 1.0
    assert 1.0 < scales[2] and scales[2] * 3.0 <= 6.0 / (1 + equalization.DEFAULT_MARGIN) + 1e-9  # stays below the clip
    assert scales[4] == 1.0  # dead channel
