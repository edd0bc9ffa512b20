"""Activation-range selection: which [min, max] each int8 activation tensor is quantized to.

TFLite's calibrator records the absolute min/max of every activation over the calibration
images and the quantizer turns that range into an int8 scale/zero-point. One outlier pixel
can stretch a range and coarsen the grid for every other value; clipping it trades a large
error on a few values for a smaller rounding error on all the others. Methods:

* ``minmax`` — the converter's default (absolute min/max);
* ``percentile`` — the 0.01 / 99.99 percentiles (``percentile=`` to change);
* ``mse`` — the range minimising the expected squared quantization error of the tensor
  (clipping error of the values outside plus a uniform rounding error Δ²/12 for those
  inside), searched on a histogram of the calibration activations.

Exact zeros (ReLU outputs, padding) are exactly representable whatever the range, so they
carry no rounding error in the search. Two tensors get special treatment by ``percentile``
and ``mse``:

* the logits feeding a softmax keep their maximum (clipping the winning class's logit is
  never harmless), and their bottom is raised to ``LOGIT_SPAN`` below the smallest per-image
  top logit: int8 softmax outputs have a 1/256 step, so a logit that far below its image's
  top one yields probability 0 whatever its exact value — the range it spanned was wasted;
* the model input keeps its min/max: for uint8 models fed raw pixels (Android, MediaPipe)
  the input grid *is* the normalization, and the metadata must agree with it.

The chosen ranges reach the converter as *calibration statistics*: the model is calibrated
with ``converter._experimental_calibrate_only``, the min/max recorded for each tensor are
replaced by :func:`apply_ranges`, and the converter's own quantizer (``mlir_quantize``)
then builds a standard all-integer model from them — see
:func:`edgemobile.quantization.convert.convert_keras`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable

import numpy as np

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization.exact_ranges import Extremes, exact_minmax_hook, replay
from edgemobile.runtime.interpreter import model_ops, tensor_inspector
from edgemobile.tflite.calibration_statistics import recorded_statistics, statistic_slots, write_statistics

RANGE_METHODS = ("minmax", "percentile", "mse")
LOGIT_SPAN = 8.0  # e^-8 ≈ 1/3000: below half a step of the int8 softmax output
DEFAULT_PERCENTILE = 99.99
BINS = 2048
QMIN, QMAX = -128, 127


# -- the int8 activation grid ------------------------------------------------------------------


def quant_params(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's asymmetric int8 (scale, zero_point) for a range (0 is always included)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = (hi - lo) / (QMAX - QMIN)
    zero_point = int(np.clip(_round_half_away(QMIN - lo / scale), QMIN, QMAX))
    return scale, zero_point


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# Elementwise chains over large tensors run a piece of this many values at a time: each numpy
# step is its own pass over the array, and a piece keeps every pass in the CPU cache (8× faster
# int8 codes and 2.5× faster binning than whole-array passes over 25 million values).
PIECE = 1 << 18


def _pieces(n: int):
    """Slices of [0, n) of at most ``PIECE`` values."""
    return (slice(start, start + PIECE) for start in range(0, n, PIECE))


def int8_codes(x: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, float, int]:
    """``x`` on the int8 grid of [lo, hi] (TFLite rounding: half away from 0): (codes, scale, zero point)."""
    scale, zero_point = quant_params(lo, hi)
    return _codes(x, scale, zero_point), scale, zero_point


def _codes(x: np.ndarray, scale: float, zero_point: int, exact: bool = False) -> np.ndarray | None:
    """The int8 codes of ``x``, a cache-sized piece at a time; with ``exact``, None as soon as
    a piece holds a value that is not exactly on the grid (checked while it is in cache)."""
    flat = np.ascontiguousarray(x, np.float32).reshape(-1)
    out = np.empty(flat.size, np.int8)
    step = np.float32(scale)
    for piece in _pieces(flat.size):
        values = flat[piece]
        q = values / step
        r = np.abs(q)
        r += 0.5
        np.floor(r, out=r)
        np.copysign(r, q, out=r)
        r += zero_point
        np.clip(r, QMIN, QMAX, out=r)
        out[piece] = r
        if exact:  # (r - zero point) · scale is what dequantize gives for these codes
            r -= zero_point
            r *= step
            if not np.array_equal(r, values):
                return None
    return out.reshape(np.shape(x))


def grid_codes(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray | None:
    """The int8 codes of ``x`` if every value lies exactly on the grid (scale, zero point), else None."""
    return _codes(x, scale, zero_point, exact=True)


def fake_quant(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` rounded onto the int8 grid of [lo, hi] and back (TFLite rounding: half away from 0)."""
    codes, scale, zero_point = int8_codes(x, lo, hi)
    return dequantize(codes, scale, zero_point)


def dequantize(codes: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    out = codes.astype(np.float32)
    out -= zero_point
    out *= np.float32(scale)
    return out


# -- histograms and range rules ------------------------------------------------------------------


@dataclasses.dataclass
class Histogram:
    """Counts of a tensor's values over [lo, hi] in ``BINS`` bins; exact zeros kept apart."""

    lo: float
    hi: float
    counts: np.ndarray
    zeros: int = 0

    @classmethod
    def empty(cls, lo: float, hi: float, bins: int = BINS) -> "Histogram":
        lo, hi = float(lo), float(hi)
        if not hi > lo:
            hi = lo + 1e-6
        return cls(lo, hi, np.zeros(bins, np.int64))

    @classmethod
    def of(cls, values: np.ndarray, bins: int = BINS) -> "Histogram":
        values = np.asarray(values, np.float32).ravel()
        h = cls.empty(float(values.min()), float(values.max()), bins)
        h.add(values)
        return h

    def add(self, values: np.ndarray) -> None:
        """Count ``values``; they must lie within [lo, hi] (the top edge goes in the last bin)."""
        counts, zeros = bin_counts(values, self.lo, len(self.counts) / (self.hi - self.lo), len(self.counts))
        self.counts += counts
        self.zeros += zeros

    def rebinned(self, lo: float, hi: float, bins: int = BINS) -> "Histogram":
        """These counts on ``bins`` bins over [lo, hi] (each bin's count goes where its centre
        falls; values outside are clipped to the end bins)."""
        out = Histogram.empty(lo, hi, bins)
        idx = ((self.centers - out.lo) * (bins / (out.hi - out.lo))).astype(np.intp)
        out.counts += np.bincount(np.clip(idx, 0, bins - 1), weights=self.counts, minlength=bins).astype(np.int64)
        out.zeros = self.zeros
        return out

    @property
    def centers(self) -> np.ndarray:
        width = (self.hi - self.lo) / len(self.counts)
        return self.lo + (np.arange(len(self.counts)) + 0.5) * width

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.zeros


def bin_counts(values: np.ndarray, origin: float, inverse: float, bins: int) -> tuple[np.ndarray, int]:
    """Counts of the non-zero ``values`` in the bins floor((v - origin) · inverse), computed in
    float32 (the last bin also takes values on its top edge), and the number of exact zeros.

    Every value is binned and the zeros are taken out of their bin afterwards: the same counts
    as binning the non-zero values alone, without copying them out (these tensors are large)."""
    values = np.ascontiguousarray(values, np.float32).reshape(-1)
    origin, inverse = np.float32(origin), np.float32(inverse)
    counts = np.zeros(bins, np.int64)
    zeros = 0
    for piece in _pieces(values.size):
        part = values[piece]
        zeros += part.size - np.count_nonzero(part)  # while the piece is in cache
        scaled = np.subtract(part, origin)
        scaled *= inverse
        found = np.bincount(scaled.astype(np.intp), minlength=bins)  # bincount wants platform ints
        if len(found) > bins:  # the top edge: folded into the last bin (cheaper than clipping every index)
            found[bins - 1] += found[bins:].sum()
        counts += found[:bins]
    if zeros:
        counts[min(int((np.float32(0.0) - origin) * inverse), bins - 1)] -= zeros
    return counts, zeros


class GrowingHistogram:
    """A tensor's histogram built in one pass when its range is not known in advance.

    ``bins`` bins of a power-of-two width whose edges sit on multiples of that width; when
    values fall outside, the width doubles (as often as needed) and neighbouring bins merge
    exactly — no count crosses an edge — so the counts equal a direct binning of every value
    on the final grid. The first chunk's span fills about half the bins, so the final span
    keeps at least a quarter of them. The exact min/max are tracked alongside (``lo``, ``hi``);
    exact zeros are counted apart, as in :class:`Histogram`."""

    def __init__(self, bins: int):
        self.counts = np.zeros(bins, np.int64)
        self.width = 0.0  # 0 until the first values arrive
        self.start = 0  # the first bin's left edge is start · width
        self.zeros = 0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float32).ravel()
        if not values.size:
            return
        vmin, vmax = float(values.min()), float(values.max())
        self.lo, self.hi = min(self.lo, vmin), max(self.hi, vmax)
        self._cover(vmin, vmax)  # the grid now holds [vmin, vmax] with a bin to spare
        counts, zeros = bin_counts(values, self.start * self.width, 1.0 / self.width, len(self.counts))
        self.counts += counts
        self.zeros += zeros

    def _cover(self, vmin: float, vmax: float) -> None:
        """Widen (and shift) the grid so that it holds [vmin, vmax] and every value seen
        before (``lo``, ``hi`` already include the new ones)."""
        bins = len(self.counts)
        if self.width == 0.0:
            span = max(vmax - vmin, 1e-6 * max(1.0, abs(vmin), abs(vmax)))
            self.width = 2.0 ** math.ceil(math.log2(2 * span / bins))
            self._place(vmin, vmax)
            return
        if self.start * self.width <= vmin and vmax < (self.start + bins - 1) * self.width:
            return
        factor = 1  # a shift by whole bins when the span still fits, else the fewest doublings
        while math.ceil(self.hi / (self.width * factor)) - math.floor(self.lo / (self.width * factor)) >= bins:
            factor *= 2
        old_start = self.start
        self.width *= factor
        self._place(self.lo, self.hi)
        # old bin j (absolute index old_start + j) lies inside new bin (old_start + j) // factor;
        # the clip only moves empty bins (every count lies within [lo, hi])
        target = np.clip((old_start + np.arange(bins)) // factor - self.start, 0, bins - 1)
        self.counts = np.bincount(target, weights=self.counts, minlength=bins).astype(np.int64)

    def _place(self, lo: float, hi: float) -> None:
        """Start the grid so that [lo, hi] sits in its middle."""
        a, b = math.floor(lo / self.width), math.ceil(hi / self.width)
        self.start = a - (len(self.counts) - (b - a)) // 2

    def histogram(self) -> Histogram:
        """These counts as a :class:`Histogram` over the grid."""
        h = Histogram(self.start * self.width, (self.start + len(self.counts)) * self.width, self.counts.copy())
        h.zeros = self.zeros
        return h


def select_range(h: Histogram, method: str, percentile: float = DEFAULT_PERCENTILE,
                 keep_max: bool = False, floor: float | None = None) -> tuple[float, float]:
    """The [lo, hi] ``method`` picks for a tensor with histogram ``h``; ``keep_max`` and
    ``floor``: the logits rule (keep the top, raise the bottom to ``floor``)."""
    if method not in RANGE_METHODS:
        raise EdgeMobileError(f"unknown range method {method!r}; choose from {', '.join(RANGE_METHODS)}")
    lo, hi = min(h.lo, 0.0), max(h.hi, 0.0)
    if method == "minmax" or h.counts.sum() == 0:
        return lo, hi
    if method == "percentile":
        lo, hi = _percentile_range(h, percentile, keep_max)
    else:
        lo, hi = _mse_range(h, keep_max)
    if floor is not None and keep_max:
        lo = min(max(min(h.lo, 0.0), floor), 0.0)
    return lo, hi


def logit_floor(per_image_max: np.ndarray) -> float:
    """Lowest logit worth representing: ``LOGIT_SPAN`` below the smallest per-image top logit."""
    return float(np.min(per_image_max)) - LOGIT_SPAN


def _percentile_range(h: Histogram, percentile: float, keep_max: bool) -> tuple[float, float]:
    centers, counts = h.centers, h.counts.astype(np.float64)
    cdf = np.cumsum(counts) / max(h.total, 1)
    zero_at = np.searchsorted(centers, 0.0)
    cdf = cdf + np.where(np.arange(len(cdf)) >= zero_at, h.zeros / max(h.total, 1), 0.0)
    width = (h.hi - h.lo) / len(counts)
    hi = h.hi if keep_max else float(centers[min(np.searchsorted(cdf, percentile / 100.0), len(cdf) - 1)] + width / 2)
    lo = float(centers[np.searchsorted(cdf, 1.0 - percentile / 100.0)] - width / 2) if h.lo < 0 else 0.0
    return min(lo, 0.0), max(min(hi, h.hi), 0.0)


def _mse_range(h: Histogram, keep_max: bool) -> tuple[float, float]:
    """Minimise Σ clipping error² + Δ²/12 · (non-zero values inside) over candidate ranges."""
    x = h.centers.astype(np.float64)
    n = h.counts.astype(np.float64)
    # Prefix sums give each candidate's clipping error in O(1): Σ n (x - c)² over x > c.
    s0, s1, s2 = (np.concatenate([[0.0], np.cumsum(n * x**k)]) for k in (0, 1, 2))
    lo0, hi0 = min(h.lo, 0.0), max(h.hi, 0.0)

    def upper_error(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.searchsorted(x, c, side="right")  # bins above c start at k
        a0, a1, a2 = s0[-1] - s0[k], s1[-1] - s1[k], s2[-1] - s2[k]
        return a2 - 2 * c * a1 + c * c * a0, a0

    def lower_error(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.searchsorted(x, c, side="left")  # bins below c end before k
        a0, a1, a2 = s0[k], s1[k], s2[k]
        return a2 - 2 * c * a1 + c * c * a0, a0

    fractions = np.linspace(0.05, 1.0, 96)
    highs = np.array([hi0]) if keep_max or hi0 <= 0 else hi0 * fractions
    lows = lo0 * fractions if lo0 < 0 else np.array([0.0])
    up_err, up_n = upper_error(highs)
    low_err, low_n = lower_error(lows)
    total = n.sum()
    # grid: rows = lows, columns = highs
    delta = (highs[None, :] - lows[:, None]) / (QMAX - QMIN)
    inside = total - up_n[None, :] - low_n[:, None]
    err = up_err[None, :] + low_err[:, None] + delta**2 / 12.0 * inside
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(lows[i]), float(highs[j])


# -- ranges measured a chunk of images at a time ------------------------------------------------

# Values kept per tensor for its histogram; past this, a fixed random sample of positions.
HISTOGRAM_SAMPLES = 4_000_000


def tensor_range(values: np.ndarray, method: str, percentile: float = DEFAULT_PERCENTILE,
                 logits: bool = False) -> tuple[float, float]:
    """The range ``method`` picks for these activations (batch first), as
    :func:`apply_ranges` picks for the converter."""
    values = np.asarray(values, np.float32)
    meter = RangeMeter(logits, images=None if method == "minmax" else len(values))
    meter.observe(values)
    return meter.choose(method, percentile)


class RangeMeter:
    """One activation tensor's range, measured a chunk of images at a time: :meth:`observe`
    every chunk (min/max, per-image top logits and, when the number of ``images`` is given,
    the values at a fixed random sample of positions — at most ``HISTOGRAM_SAMPLES``);
    :meth:`choose` bins that sample over the final min/max and gives what
    :func:`tensor_range` gives on all the images at once. Without ``images`` (min/max ranges)
    no sample is kept."""

    def __init__(self, logits: bool = False, images: int | None = None):
        self.logits = logits
        self.lo, self.hi = np.inf, -np.inf
        self.images = 0
        self.rows_per_image = 1
        self.channels = 1
        self.tops: list[np.ndarray] = []
        self.sample: np.ndarray | None = None
        self.expected = images
        self.kept: list[np.ndarray] = []  # the sampled non-zero values of each chunk
        self.kept_zeros = 0

    def observe(self, values: np.ndarray) -> None:
        values = np.asarray(values, np.float32)
        self.lo, self.hi = min(self.lo, float(values.min())), max(self.hi, float(values.max()))
        first = self.images
        self.images += len(values)
        self.channels = int(values.shape[-1]) if values.ndim > 1 else 1
        self.rows_per_image = int(values[0].size // self.channels) if len(values) else 1
        if self.logits:
            self.tops.append(values.reshape(len(values), -1).max(axis=1))
        if self.expected is not None:
            if first == 0:
                self.sample = self._sample(self.expected)
            rows = self._sampled(values, first)
            nonzero = rows[rows != 0]  # a copy; exact zeros are only counted (see Histogram)
            self.kept_zeros += rows.size - nonzero.size
            self.kept.append(nonzero)

    def _sample(self, images: int) -> np.ndarray | None:
        # Subsample whole positions (every channel of each), at random: a plain stride through
        # the flat NHWC buffer aliases with the channel count (step 12 over 16 channels sees
        # only channels 0, 4, 8, 12) and can miss the channels that set the range.
        total = images * self.rows_per_image
        keep = max(1, HISTOGRAM_SAMPLES // self.channels)
        return None if total <= keep else np.sort(np.random.default_rng(0).choice(total, keep, replace=False))

    def _sampled(self, values: np.ndarray, first_image: int) -> np.ndarray:
        rows = np.asarray(values, np.float32).reshape(-1, self.channels)
        if self.sample is not None:
            start = first_image * self.rows_per_image
            lo, hi = np.searchsorted(self.sample, [start, start + len(rows)])
            rows = rows[self.sample[lo:hi] - start]
        return rows

    def choose(self, method: str, percentile: float = DEFAULT_PERCENTILE) -> tuple[float, float]:
        h = Histogram.empty(self.lo, self.hi)
        for values in self.kept:
            h.add(values)
        h.zeros += self.kept_zeros
        floor = logit_floor(np.concatenate(self.tops)) if self.logits and self.tops else None
        return select_range(h, method, percentile, keep_max=self.logits, floor=floor)


# -- calibrated TFLite models -------------------------------------------------------------------

# Ops whose output must share its input's quantization (the quantizer propagates one scale).
SAME_SCALE_OPS = frozenset({
    "PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "MAX_POOL_2D", "TRANSPOSE",
    "STRIDED_SLICE", "SLICE", "GATHER", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
})
# Ops with a fixed int8 output grid in TFLite (their recorded range is ignored).
FIXED_OUTPUT_OPS = frozenset({"SOFTMAX", "LOGISTIC", "TANH", "LOG_SOFTMAX"})


@dataclasses.dataclass
class TensorRange:
    index: int
    name: str
    op: str
    calibrated: tuple[float, float]
    chosen: tuple[float, float]

    def as_dict(self) -> dict:
        return {"tensor": self.name, "op": self.op, "calibrated": list(self.calibrated),
                "chosen": list(self.chosen)}


def logit_tensors(ops: list[dict]) -> set[int]:
    """The tensors of a TFLite graph (its ops, in order) that carry a softmax's input: the
    logits, whose range the logits rule floors (module docstring)."""
    found = {int(op["inputs"][0]) for op in ops if op["op_name"] in ("SOFTMAX", "LOG_SOFTMAX")}
    for op in reversed(ops):  # a reshape before the softmax carries the logits too
        if op["op_name"] in SAME_SCALE_OPS and int(op["outputs"][0]) in found:
            found.add(int(op["inputs"][0]))
    return found


def _graph(interpreter) -> tuple[list[dict], dict[int, str]]:
    ops = model_ops(interpreter)
    producers = {int(t): op["op_name"] for op in ops for t in op["outputs"]}
    return ops, producers


def same_scale_pairs(ops: list[dict], among: set[int]) -> list[tuple[int, int]]:
    """(input, output) tensors of the same-scale ops, in graph order, both in ``among``: the
    output's range is its input's."""
    pairs = [(int(op["inputs"][0]), int(op["outputs"][0])) for op in ops
             if op["op_name"] in SAME_SCALE_OPS and len(op["outputs"]) == 1]
    return [(src, dst) for src, dst in pairs if src in among and dst in among]


FINE_BINS = 32 * BINS  # each tensor's one-pass histogram, rebinned to BINS over its exact range for the choice


def apply_ranges(calibrated: bytes, inputs: Callable[[], Iterable[list[np.ndarray]]], method: str,
                 percentile: float = DEFAULT_PERCENTILE, progress=None) -> tuple[bytes, list[TensorRange]]:
    """Replace the calibrated min/max of every activation tensor by the ``method`` range,
    measured by running the calibrated float model on ``inputs()`` (the converter's
    representative dataset: lists holding one batch of images).

    One replay, with no buffer shared between tensors (TFLite's calibrator can record merged
    ranges: see :mod:`edgemobile.quantization.exact_ranges`), records each tensor's exact
    min/max and a :class:`GrowingHistogram` of its values, rebinned over that exact range for
    the choice. The calibrator's own statistics are not used, so its pass can be short;
    ``minmax`` is the exact min/max alone. ``progress`` counts the images replayed."""
    if method == "minmax":
        buf = bytearray(exact_minmax_hook(inputs)(calibrated))
        slots = statistic_slots(buf)
        recorded = recorded_statistics(buf, slots)
        return bytes(buf), [TensorRange(i, slots[i][0], "", recorded[i], recorded[i]) for i in sorted(slots)]
    buf = bytearray(calibrated)
    slots = statistic_slots(buf)
    calibrator = recorded_statistics(buf, slots)
    interpreter = tensor_inspector(bytes(buf))
    ops, producers = _graph(interpreter)
    softmax_inputs = logit_tensors(ops)
    tracked = [i for i in slots if producers.get(i) not in FIXED_OUTPUT_OPS and i in producers]
    same_scale = same_scale_pairs(ops, set(tracked))
    inherits = {dst for _, dst in same_scale}  # their range is their input's: no histogram needed
    fine = {i: GrowingHistogram(FINE_BINS) for i in tracked if i not in inherits}
    extremes = Extremes(i for i in slots if i not in fine)  # the histograms keep their own
    tops: dict[int, list[np.ndarray]] = {i: [] for i in softmax_inputs}

    def measure(i, value):
        if i in fine:
            fine[i].add(value)
            if i in tops:
                tops[i].append(value.reshape(len(value), -1).max(axis=1))  # per image
        else:
            extremes.add(i, value)

    replay(interpreter, inputs, list(slots), measure, progress)
    lo = {**extremes.lo, **{i: h.lo for i, h in fine.items()}}
    hi = {**extremes.hi, **{i: h.hi for i, h in fine.items()}}
    recorded = {i: (lo[i], hi[i]) if np.isfinite(lo[i]) and np.isfinite(hi[i]) else calibrator[i] for i in slots}
    chosen = dict(recorded)
    for i in fine:
        floor = logit_floor(np.concatenate(tops[i])) if tops.get(i) else None
        h = fine[i].histogram().rebinned(*recorded[i])
        chosen[i] = select_range(h, method, percentile, keep_max=i in softmax_inputs, floor=floor)
    for src, dst in same_scale:  # same-scale ops take their input's range, in graph order
        chosen[dst] = chosen[src]
    report = []
    for i in sorted(chosen):
        name, lo_at, hi_at = slots[i]
        write_statistics(buf, lo_at, hi_at, *chosen[i])
        if i in tracked:
            report.append(TensorRange(i, name, producers.get(i, "input"), recorded[i], chosen[i]))
    return bytes(buf), report


def force_ranges(calibrated: bytes, forced: dict[int, tuple[float, float]]) -> bytes:
    """The calibrated model with the statistics of the tensors in ``forced`` (index → (lo, hi))
    overwritten, and the outputs of same-scale ops given their input's statistics again (in
    graph order), as :func:`apply_ranges` leaves them.

    Args:
        calibrated: a calibrated float model (its statistics already chosen).
        forced: tensor index → the range it must have.
    """
    buf = bytearray(calibrated)
    slots = statistic_slots(buf)
    chosen = recorded_statistics(buf, slots)
    chosen.update({i: (float(lo), float(hi)) for i, (lo, hi) in forced.items() if i in slots})
    ops, _ = _graph(tensor_inspector(bytes(buf)))
    for src, dst in same_scale_pairs(ops, set(chosen)):
        chosen[dst] = chosen[src]
    for i, (_, lo_at, hi_at) in slots.items():
        write_statistics(buf, lo_at, hi_at, *chosen[i])
    return bytes(buf)
