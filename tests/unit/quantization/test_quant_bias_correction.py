"""Empirical bias correction removes the per-channel mean output shift that int8 rounding
causes, layer by layer, on the images it was measured on."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from edgemobile.quantization import graph
from edgemobile.quantization import simulate
from edgemobile.quantization.techniques.bias_correction import mean_shift
from edgemobile.quantization.engine import prepare
from edgemobile.quantization.techniques.recipe import DEFAULT
from support.quant_models import images, tiny_model


def shifts(model, x, reference) -> dict[str, float]:
    """Mean |per-channel mean shift| of every conv/dense output in the simulated int8 model."""
    found = {}

    def measure(layer, ref_in, mod_in, ref_out):
        out = np.asarray(simulate.nearest_output(layer, mod_in))  # the layer's current (corrected) weights, rounded
        found[layer.name] = float(np.mean(np.abs(mean_shift(ref_out, out))))
        return out

    simulate.simulate(model, x, on_linear=measure, reference=reference)
    return found


def test_bias_correction_removes_the_mean_shift():
    model = tiny_model(relu6=False)
    x = images(64)
    folded = graph.fold_batchnorm(model)
    reference = simulate.snapshot(folded)
    before = shifts(folded, x, reference)
    corrected = prepare(model, x, DEFAULT.replace(ranges="minmax", equalize=False, bias_correction=True, adaround=False),
                        progress=False).model
    after = shifts(corrected, x, reference)
    assert set(before) == set(after) == {"conv", "dw", "pw", "fc"}
    for name in before:
        assert after[name] < 0.05 * before[name] + 1e-7, (name, before[name], after[name])
    assert sum(before.values()) > 0


def test_bias_correction_only_touches_biases():
    model = tiny_model()
    x = images(16)
    folded = graph.fold_batchnorm(model)
    corrected = prepare(model, x, DEFAULT.replace(ranges="minmax", equalize=False, bias_correction=True, adaround=False),
                        progress=False).model
    for a, b in zip(graph.linear_layers(folded), graph.linear_layers(corrected)):
        np.testing.assert_array_equal(a.kernel, b.kernel)
        assert not np.array_equal(a.bias, b.bias)
