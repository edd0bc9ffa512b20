"""Activation-range selection: the rules pick sensible ranges, and the converter really
quantizes with the ranges chosen (they reach it as calibration statistics)."""

from __future__ import annotations

import numpy as np
import pytest

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization import ranges


def heavy_tailed(n: int = 400_000, seed: int = 0) -> np.ndarray:
    """A ReLU-like activation: 30 % exact zeros, an exponential tail."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.3, 0.0, rng.exponential(1.0, n)).astype(np.float32)


def quant_mse(x: np.ndarray, lo: float, hi: float) -> float:
    return float(np.mean((ranges.fake_quant(x, lo, hi) - x) ** 2))


def test_range_rules():
    x = heavy_tailed()
    h = ranges.Histogram.of(x)
    assert h.zeros == int(np.sum(x == 0))
    top = float(x.max())
    assert ranges.select_range(h, "minmax") == (0.0, top)
    lo, hi = ranges.select_range(h, "percentile")
    assert lo == 0.0 and 5.0 < hi < top
    lo, hi = ranges.select_range(h, "mse")
    assert lo == 0.0 and 5.0 < hi < top
    # the MSE choice really has lower quantization error than min/max and than the percentile
    assert quant_mse(x, lo, hi) < quant_mse(x, 0.0, top)
    assert quant_mse(x, lo, hi) < quant_mse(x, *ranges.select_range(h, "percentile"))
    with pytest.raises(EdgeMobileError):
        ranges.select_range(h, "kl")


def test_logits_keep_their_top_and_drop_the_useless_bottom():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (64, 100)).astype(np.float32)
    logits[:, 0] += 12  # a confident class per image
    h = ranges.Histogram.of(logits)
    floor = ranges.logit_floor(logits.max(axis=1))
    lo, hi = ranges.select_range(h, "mse", keep_max=True, floor=floor)
    assert hi == pytest.approx(float(logits.max()))
    assert lo >= floor - 1e-6 and lo > float(logits.min())


def test_growing_histogram_equals_direct_binning_on_its_final_grid():
    # chunks whose range keeps growing (both ways, by small and by huge factors): every
    # widening merges whole bins, so the counts are those of binning all values at once
    rng = np.random.default_rng(0)
    chunks = [heavy_tailed(5000, seed=1) * 0.01, rng.normal(0, 1, 5000), heavy_tailed(5000, seed=2) * 40,
              rng.normal(-300, 5, 5000), heavy_tailed(5000, seed=3)]
    g = ranges.GrowingHistogram(4096)
    for c in chunks:
        g.add(c.astype(np.float32))
    values = np.concatenate(chunks).astype(np.float32)
    h = g.histogram()
    assert (g.lo, g.hi) == (float(values.min()), float(values.max()))
    assert h.lo <= g.lo and g.hi <= h.hi and g.zeros == int(np.sum(values == 0))
    direct = np.histogram(values[values != 0], bins=len(h.counts), range=(h.lo, h.hi))[0]
    assert np.abs(h.counts - direct).sum() <= 2  # float rounding at a bin edge at most
    assert h.total == values.size
    assert (h.hi - h.lo) <= 4 * (g.hi - g.lo)  # at least a quarter of the bins span the data
    # and the range chosen from it matches the one from a histogram over the exact range
    mse = ranges.select_range(g.histogram().rebinned(g.lo, g.hi), "mse")
    assert mse == pytest.approx(ranges.select_range(ranges.Histogram.of(values), "mse"), rel=0.02, abs=1.0)


def test_quant_params_match_tflite_nudging():
    scale, zero_point = ranges.quant_params(-1.0, 1.0)
    assert scale == pytest.approx(2 / 255) and zero_point == -1  # -0.5 rounds away from zero
    assert ranges.quant_params(0.0, 6.0) == (pytest.approx(6 / 255), -128)


def test_converter_honours_chosen_ranges():
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from edgemobile.quantization.tflite_converter import convert_keras
    from edgemobile.runtime.interpreter import TFLiteClassifier

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inp, out)
    images = np.random.default_rng(0).normal(0, 1, (32, 8, 8, 3)).astype(np.float32)
    images[0] *= 30  # one outlier image stretches every min/max
    representative = lambda: ([xi[None]] for xi in images)  # noqa: E731
    chosen = {}

    def hook(calibrated):
        out, rows = ranges.apply_ranges(calibrated, representative, "mse")
        chosen.update({r.name: r for r in rows})
        return out

    plain = TFLiteClassifier(convert_keras(model, "int8", representative))
    clipped = TFLiteClassifier(convert_keras(model, "int8", representative, hook))
    conv = next(r for name, r in chosen.items() if "conv" in name.lower())
    assert conv.chosen[1] < conv.calibrated[1]  # the outlier was clipped
    details = {d["name"]: d for d in clipped.interpreter.get_tensor_details()}
    scale, zero_point = details[conv.name]["quantization"]
    expected_scale, expected_zero = ranges.quant_params(*conv.chosen)
    assert scale == pytest.approx(expected_scale, rel=1e-5) and zero_point == expected_zero
    plain_scale = {d["name"]: d for d in plain.interpreter.get_tensor_details()}[conv.name]["quantization"][0]
    assert scale < plain_scale


def test_piecewise_passes_equal_whole_array_passes():
    """int8 codes, the grid check and histogram binning run a cache-sized piece at a time:
    the same results as one pass over the whole array (ties, clipping, zeros of both signs,
    the top edge and a partial last piece included)."""
    rng = np.random.default_rng(3)
    lo, hi = -3.0, 5.0
    scale, zero_point = ranges.quant_params(lo, hi)
    n = 3 * ranges.PIECE + 1_236
    x = (rng.normal(size=n) * 2.5).astype(np.float32)
    x[::7] = ((rng.integers(-140, 140, x[::7].size) + 0.5) * scale).astype(np.float32)  # ties and beyond the grid
    x[::11], x[1::13] = 0.0, -0.0
    q = x / np.float32(scale)
    whole = np.clip(np.copysign(np.floor(np.abs(q) + 0.5), q) + zero_point, -128, 127).astype(np.int8)
    codes = ranges.int8_codes(x.reshape(-1, 4), lo, hi)[0]
    assert codes.shape == (n // 4, 4)
    np.testing.assert_array_equal(codes.reshape(-1), whole)
    assert ranges.grid_codes(x, scale, zero_point) is None
    on_grid = ranges.dequantize(whole, scale, zero_point)
    np.testing.assert_array_equal(ranges.grid_codes(on_grid, scale, zero_point), whole)
    for at in (5, -3):  # one value off the grid: in the first piece, in the partial last one
        off = on_grid.copy()
        off[at] = np.nextafter(off[at], np.float32(9))
        assert ranges.grid_codes(off, scale, zero_point) is None

    h = ranges.Histogram.of(x)  # exact range: the maximum sits on the top edge
    nonzero = x[x != 0]
    index = np.minimum(((nonzero - np.float32(h.lo)) * np.float32(len(h.counts) / (h.hi - h.lo))).astype(np.intp),
                       len(h.counts) - 1)
    np.testing.assert_array_equal(h.counts, np.bincount(index, minlength=len(h.counts)))
    assert h.zeros == n - nonzero.size


@pytest.mark.parametrize("method", ["mse", "minmax"])
def test_calibration_progress_counts_every_image(method, capsys):
    # With a range hook the converter's own pass sees one batch of 16 images and used to show
    # "calibrating 16/16" after the user asked for more: the bar must count the images asked for.
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from edgemobile.quantization.pipeline import CALIBRATION_BATCH, convert_full_integer
    from edgemobile.quantization.techniques.recipe import PLAIN

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    images = np.random.default_rng(0).normal(0, 1, (CALIBRATION_BATCH + 4, 8, 8, 3)).astype(np.float32)
    options = PLAIN.replace(ranges=method)
    convert_full_integer(keras.Model(inp, out), "int8", images, options, progress=True)
    calibrating = [line for line in capsys.readouterr().err.splitlines() if line.startswith("calibrating")]
    assert calibrating and all(f"{len(images)}/{len(images)} images" in line for line in calibrating), calibrating
