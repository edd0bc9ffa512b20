"""AdaRound: learned rounding beats round-to-nearest on the layer's own objective, every
weight stays on TFLite's per-channel int8 grid (same scales), and the converter reproduces
the learned integers exactly."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from edgemobile.quantization import rounding
from edgemobile.quantization import graph
from support.quant_models import images, tiny_model


def correlated_problem(out: int = 16, fan_in: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(fan_in, fan_in))
    x = rng.normal(size=(max(4096, 32 * fan_in), fan_in)) @ mix  # strongly correlated inputs
    rows = rng.normal(size=(out, fan_in)).astype(np.float32)
    c = np.cov(x.T)[None]
    return rows, rounding.Covariance(qq=c, qf=c, ff=c, group=None)


def test_adaround_beats_nearest_and_stays_on_the_grid():
    rows, cov = correlated_problem()
    result = rounding.adaround_rows(rows, cov, iterations=500)  # default regulariser weight
    assert result.error_adaround < 0.7 * result.error_nearest
    scales = graph.channel_scales(rows)
    np.testing.assert_array_equal(graph.channel_scales(result.rows), scales)  # the converter's scales are unchanged
    q = result.rows / scales[:, None]
    np.testing.assert_allclose(q, np.round(q), atol=1e-4)
    assert np.abs(np.round(q)).max() <= 127
    # only up or down: never further than one step from the float weight
    assert np.all(np.abs(q - rows / scales[:, None]) < 1.0 + 1e-4)


def test_converter_reproduces_adarounded_weights():
    pytest.importorskip("tensorflow")
    from edgemobile.quantization.tflite_converter import convert_keras
    from edgemobile.quantization.engine import prepare
    from edgemobile.quantization.techniques.recipe import DEFAULT
    from edgemobile.runtime.interpreter import TFLiteClassifier

    x = images(32)
    prepared = prepare(tiny_model(relu6=False), x, DEFAULT.replace(ranges="minmax", adaround_iterations=200),
                       progress=False)
    rounded = {L.name: L.rows() for L in graph.linear_layers(prepared.model)}
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


def _peaks_nudged(rows: np.ndarray, below: bool) -> np.ndarray:
    """``rows`` with each channel's largest weight moved by a few ulps so that it lands exactly
    on 127 grid steps (``below=False``) or a hair below (the float32 quotient max/scale is then
    126.99999…): the same rounding problem either way."""
    rows = rows.copy()
    for o, row in enumerate(rows):
        j = int(np.argmax(np.abs(row)))
        for _ in range(1024):
            peak = np.abs(rows[o:o + 1])
            grid = peak[0, j] / graph.channel_scales(peak)[0]
            if (grid < graph.INT8_MAX) == below:
                break
            rows[o, j] = np.nextafter(rows[o, j], np.float32(np.inf) if rows[o, j] > 0 else np.float32(-np.inf))
        assert (grid < graph.INT8_MAX) == below
    return rows


def test_channel_maximum_a_hair_below_127_steps_rounds_as_well():
    # Each channel's max weight is held at its integer during the optimisation; taking the
    # floor of 126.99999… instead put it a whole step off and the rest of the row compensated.
    rows, cov = correlated_problem()
    on = rounding.adaround_rows(_peaks_nudged(rows, below=False), cov)
    below = rounding.adaround_rows(_peaks_nudged(rows, below=True), cov)
    assert below.error_adaround <= 1.02 * on.error_adaround
    assert below.error_adaround < 0.7 * below.error_nearest


def test_bfloat16_halves_product_matches_float32_on_a_wide_layer(monkeypatch):
    # Wide layers multiply by the covariance in two bfloat16 halves where the CPU has bfloat16
    # matrix units; the learned rounding's exact objective must stay float32's.
    if not rounding.bf16_matmul_units():
        pytest.skip("no AMX / AVX-512 BF16: the float32 product is the only path")
    rng = np.random.default_rng(1)
    fan_in = rounding.BF16_MIN_FAN_IN
    basis, _ = np.linalg.qr(rng.normal(size=(fan_in, fan_in)))
    c = (basis * np.logspace(0, -5, fan_in)) @ basis.T  # five decades, like image patches: bfloat16 alone loses the tail
    rows, cov = rng.normal(size=(128, fan_in)).astype(np.float32), rounding.Covariance(qq=c[None], qf=c[None], ff=c[None],
                                                                                 group=None)  # 32768 weights: fused
    halves = rounding.adaround_rows(rows, cov)
    monkeypatch.setattr(rounding, "BF16_MIN_FAN_IN", rows.shape[1] + 1)
    single = rounding.adaround_rows(rows, cov)
    assert halves.error_adaround < 0.7 * halves.error_nearest
    assert halves.error_adaround <= 1.03 * single.error_adaround
