"""AdaRound: learned rounding beats round-to-nearest on the layer's own objective, every
weight stays on TFLite's per-channel int8 grid (same scales), and the converter reproduces
the learned integers exactly."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from edgemobile.quantization import adaround as A
from edgemobile.quantization import graph as G
from test_quant_graph import images, tiny_model


def correlated_problem(out: int = 16, fan_in: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(fan_in, fan_in))
    x = rng.normal(size=(4096, fan_in)) @ mix  # strongly correlated inputs
    rows = rng.normal(size=(out, fan_in)).astype(np.float32)
    c = np.cov(x.T)[None]
    return rows, A.Covariance(qq=c, qf=c, ff=c, group=None)


def test_adaround_beats_nearest_and_stays_on_the_grid():
    rows, cov = correlated_problem()
    result = A.adaround_rows(rows, cov, iterations=500)  # default regulariser weight
    assert result.error_adaround < 0.7 * result.error_nearest
    scales = G.channel_scales(rows)
    np.testing.assert_array_equal(G.channel_scales(result.rows), scales)  # the converter's scales are unchanged
    q = result.rows / scales[:, None]
    np.testing.assert_allclose(q, np.round(q), atol=1e-4)
    assert np.abs(np.round(q)).max() <= 127
    # only up or down: never further than one step from the float weight
    assert np.all(np.abs(q - rows / scales[:, None]) < 1.0 + 1e-4)


def test_converter_reproduces_adarounded_weights():
    pytest.importorskip("tensorflow")
    from edgemobile.quantization.convert import convert_keras
    from edgemobile.quantization.pipeline import QuantOptions, prepare
    from edgemobile.runtime.interpreter import TFLiteClassifier

    x = images(32)
    prepared = prepare(tiny_model(relu6=False), x, QuantOptions(ranges="minmax", adaround_iterations=200),
                       progress=False)
    rounded = {L.name: L.rows() for L in G.linear_layers(prepared.model)}
    assert any(row["flipped"] > 0 for row in prepared.report["layers"])
    tflite = convert_keras(prepared.model, "int8", lambda: ([xi[None]] for xi in x))
    interpreter = TFLiteClassifier(tflite).interpreter
    matched = 0
    for d in interpreter.get_tensor_details():
        scales = d["quantization_parameters"]["scales"]
        if d["dtype"] != np.int8 or len(scales) < 2 or len(d["shape"]) not in (2, 4):
            continue
        q = interpreter.get_tensor(d["index"]).astype(np.float64)
        axis = 3 if q.ndim == 4 and q.shape[0] == 1 else 0
        dq = np.moveaxis(q, axis, 0).reshape(len(scales), -1) * scales[:, None]
        for rows in rounded.values():
            if rows.shape == dq.shape and np.allclose(dq, rows, rtol=0, atol=1e-6 * np.abs(rows).max()):
                matched += 1
    assert matched == len(rounded)
