"""The learned-rounding math of AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding
for Post-Training Quantization"): choose, for every weight, whether it rounds down or up on TFLite's int8 grid
so that the layer's output on calibration data changes least — instead of rounding each
weight to its nearest grid point independently. The technique that runs it per layer is
:mod:`edgemobile.quantization.techniques.adaround`.

The grid is exactly the converter's: per output channel, symmetric, scale = max|w| / 127.
The weight that sets a channel's scale sits on the grid already and is never moved, so the
converter recomputes the same scales and reproduces the learned integers exactly.

Objective (per layer): ``E ‖(W̃ − W) x‖²`` on the layer's float inputs, with means removed
(bias correction, applied after, takes care of the mean; without it the raw second moment is
used). It is a quadratic form, so the calibration set enters only through the input
covariance over sampled output positions (im2col patches for convolutions, per channel for
depthwise layers): each optimisation step costs one (out × fan_in) × (fan_in × fan_in)
product, independent of how many images were used. The rest of a step is elementwise and, on
wide layers, fused by XLA into one pass (unfused it cost 2–3 times the product); the product
itself runs in two bfloat16 halves where the CPU has bfloat16 matrix units (see
:func:`_optimize`). A low-rank covariance would not help: after equalization 99.9 % of its
trace takes 84–99 % of the dimensions on the zoo's real weights.

The paper's "asymmetric" variant fits ``W̃ x_q`` (inputs from the already-quantized layers)
to ``W x``, so the rounding also compensates upstream quantization noise. It is not used: measured here it gained ≤ 0.8 dB of output SQNR, and
on MobileOne-S0 without equalization — activation ranges up to 244 in stage 3 — it flipped
30–48 % of the weights of deep layers for a ≤ 3 % better fit of the calibration noise and
wrecked the model (top-1 −16 points), where rounding on float inputs is always safe.

Relaxation as in the paper: ``W̃ = s·(⌊W/s⌋ + h(V))`` with the rectified sigmoid
``h(V) = clip(σ(V)(ζ−γ)+γ, 0, 1)``, ζ = 1.1, γ = −0.1, V initialised so that h(V) equals the
fractional part (W̃ = W at the start), Adam on V, and the regulariser
``Σ 1 − |2h(V) − 1|^β`` (β annealed 20 → 2 after a 20 % warm-up) driving every h to 0 or 1.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from edgemobile.quantization import graph
from edgemobile.runtime.delegation import cpu_flags

ZETA, GAMMA = 1.1, -0.1
DEFAULT_ITERATIONS = 500
DEFAULT_REG_WEIGHT = 3.0
MIN_SAMPLES_PER_INPUT = 8  # fewer patches per fan-in input: round to nearest instead
MAX_PATCH_VALUES = 1 << 26  # bounds the sampled patch matrix (256 MB of float32)
MAX_POSITIONS = 1 << 17  # output positions sampled per layer for its covariances


@dataclasses.dataclass
class Covariance:
    """Centred input statistics of one layer, shape (groups, fan_in, fan_in): ``qq`` =
    Cov(x_q), ``qf`` = Cov(x_q, x_f), ``ff`` = Cov(x_f); ``group[o]`` is the group output
    channel o reads (None: one group shared by all output channels)."""

    qq: np.ndarray
    qf: np.ndarray
    ff: np.ndarray
    group: np.ndarray | None
    samples: int = 0  # patches the statistics were measured on


def _flat_positions(layer: graph.LinearLayer, images: int, max_positions: int, seed: int = 0):
    """Random output positions at which to take the layer's input patches, as sorted flat
    indices into (images, rows, columns), and the
    output's rows and columns (None for dense layers: one position per image)."""
    if layer.kind == "dense":
        per_image = _dense_positions(layer)
        if per_image == 1:
            return np.arange(images), None, None
        total, fan_in = images * per_image, int(layer.layer.input.shape[-1])
        budget = max(1024, min(max_positions, MAX_PATCH_VALUES // max(1, fan_in)))
        flat = np.arange(total) if total <= budget else np.sort(
            np.random.default_rng(seed).choice(total, budget, replace=False))
        return flat, None, None
    _, h, w, _ = layer.layer.output.shape
    total = images * h * w
    fan_in = int(np.prod(layer.layer.kernel.shape[:2])) * int(layer.layer.input.shape[-1])
    if layer.kind == "depthwise":  # k×k statistics per channel need far fewer samples
        max_positions = max_positions // 4
    budget = max(1024, min(max_positions, MAX_PATCH_VALUES // max(1, fan_in)))
    flat = np.arange(total) if total <= budget else np.sort(
        np.random.default_rng(seed).choice(total, budget, replace=False))
    return flat, int(h), int(w)


def _dense_positions(layer: graph.LinearLayer) -> int:
    """Input vectors per image of a dense layer: 1, or H·W when applied to a feature map."""
    return int(np.prod([int(d) for d in layer.layer.input.shape[1:-1]]))


def _patches(layer: graph.LinearLayer, x: np.ndarray, where: tuple) -> np.ndarray:
    """Input patches at ``where``: (M, fan_in) rows in kernel order (kh, kw, cin) — or
    (channels, kh·kw, M) for depthwise layers."""
    x = np.asarray(x, np.float32)
    if layer.kind == "dense":  # one input vector per position (the last axis), as TFLite's FULLY_CONNECTED
        return x.reshape(-1, x.shape[-1])[where[0]]
    k = layer.layer
    (kh, kw), (sh, sw), (dh, dw) = k.kernel_size, k.strides, k.dilation_rate
    n, y, xs = where
    _, top, _ = graph.conv_padding(x.shape[1], kh, sh, dh, k.padding)
    _, left, _ = graph.conv_padding(x.shape[2], kw, sw, dw, k.padding)
    _, height, width, channels = x.shape
    rows = x.reshape(-1, channels)
    depthwise = layer.kind == "depthwise"  # (channels, kh·kw, M): only the sampled pixels are transposed
    out = np.empty((channels, kh * kw, len(n)) if depthwise else (len(n), kh * kw, channels), np.float32)
    for i in range(kh):  # gather each tap from the unpadded input, straight into its slot
        r = y * sh + i * dh - top
        for j in range(kw):
            c = xs * sw + j * dw - left
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            tap = rows[(n * height + np.clip(r, 0, height - 1)) * width + np.clip(c, 0, width - 1)]
            if not inside.all():
                tap[~inside] = 0.0  # "same" padding's zeros
            out[:, i * kw + j, :] = tap.T if depthwise else tap
    return out if depthwise else out.reshape(len(n), -1)


def _gram(a: np.ndarray, b: np.ndarray, depthwise: bool) -> np.ndarray:
    """Σ over positions of aᵀb: (1, D, D) — or per channel (C, k, k) for (C, k, M) patches."""
    if depthwise:
        return np.matmul(a, np.swapaxes(b, 1, 2)).astype(np.float64)
    return (a.T @ b)[None].astype(np.float64)


class PatchMoments:
    """Running sums of one layer's input patches at a fixed sample of output positions
    (:func:`_flat_positions` over all images), fed a chunk of images at a time — so the
    statistics of any number of images cost a fan_in × fan_in matrix, not the activations."""

    def __init__(self, layer: graph.LinearLayer, images: int, max_positions: int = MAX_POSITIONS, seed: int = 0):
        self.layer = layer
        self.flat, self.h, self.w = _flat_positions(layer, images, max_positions, seed)
        self.depthwise = layer.kind == "depthwise"
        self.n = 0
        self.gram: np.ndarray | None = None
        self.total: np.ndarray | None = None

    def add(self, x: np.ndarray, first_image: int) -> None:
        """The patches of images ``first_image`` … ``first_image + len(x) - 1`` (their input ``x``)."""
        per_image = _dense_positions(self.layer) if self.h is None else self.h * self.w
        lo, hi = np.searchsorted(self.flat, [first_image * per_image, (first_image + len(x)) * per_image])
        if hi <= lo:
            return
        flat = self.flat[lo:hi] - first_image * per_image
        where = (flat,) if self.h is None else (flat // per_image, (flat // self.w) % self.h, flat % self.w)
        p = _patches(self.layer, x, where)
        axis = 2 if self.depthwise else 0
        gram, total = _gram(p, p, self.depthwise), p.sum(axis, dtype=np.float64)
        self.gram = gram if self.gram is None else self.gram + gram
        self.total = total if self.total is None else self.total + total
        self.n += hi - lo

    def covariance(self, centered: bool = True) -> "Covariance":
        """Cov(x_f) (or the raw second moment): the symmetric objective's qq = qf = ff."""
        n = max(self.n, 1)
        mean = self.total / n if centered else np.zeros_like(self.total)
        if not self.depthwise:
            mean = mean[None]
        c = self.gram / n - mean[:, :, None] * mean[:, None, :]
        group = None
        if self.depthwise:
            group = np.arange(self.layer.out_channels) // int(self.layer.layer.kernel.shape[3])
        return Covariance(qq=c, qf=c, ff=c, group=group, samples=self.n)


def _apply(cov_stack: np.ndarray, rows: np.ndarray, group: np.ndarray | None) -> np.ndarray:
    """rows @ C for each row with its group's matrix."""
    if group is None:
        return rows @ cov_stack[0]
    return np.matmul(rows[:, None, :], cov_stack[group])[:, 0, :]


def reconstruction_error(rows_q: np.ndarray, rows: np.ndarray, cov: Covariance) -> np.ndarray:
    """Per output channel: Var(w̃·x_q − w·x_f) = w̃ Cqq w̃ − 2 w̃ Cqf w + w Cff w."""
    rows_q, rows = np.asarray(rows_q, np.float64), np.asarray(rows, np.float64)
    qq = np.sum(_apply(cov.qq, rows_q, cov.group) * rows_q, axis=1)
    qf = np.sum(_apply(np.swapaxes(cov.qf, 1, 2), rows, cov.group) * rows_q, axis=1)
    ff = np.sum(_apply(cov.ff, rows, cov.group) * rows, axis=1)
    return np.maximum(qq - 2 * qf + ff, 0.0)


def output_variance(rows: np.ndarray, cov: Covariance) -> np.ndarray:
    rows = np.asarray(rows, np.float64)
    return np.sum(_apply(cov.ff, rows, cov.group) * rows, axis=1)


@dataclasses.dataclass
class AdaRoundResult:
    rows: np.ndarray  # rounded weights (dequantized, on the int8 grid)
    error_nearest: float  # Σ output error variance with nearest rounding, relative to Σ output variance
    error_adaround: float  # the same with the learned rounding
    flipped: float  # fraction of weights rounded away from nearest


def adaround_rows(rows: np.ndarray, cov: Covariance, iterations: int = DEFAULT_ITERATIONS,
                  reg_weight: float = DEFAULT_REG_WEIGHT, learning_rate: float = 0.05) -> AdaRoundResult:
    """Learn up/down rounding of ``rows`` (out, fan_in) on TFLite's per-channel int8 grid."""
    rows = np.asarray(rows, np.float32)
    scales = graph.channel_scales(rows)
    grid = rows / scales[:, None]
    floor = np.floor(grid)
    rest = grid - floor
    fixed = (rest < 1e-6) | (np.abs(grid) >= graph.INT8_MAX - 1e-3)  # on the grid already (each channel's max is)
    nearest = graph.quantize_rows(rows, scales)
    e_near = reconstruction_error(nearest, rows, cov)
    variance = max(float(np.sum(output_variance(rows, cov))), 1e-30)
    norm = max(float(np.sum(e_near)), 1e-12 * variance)
    # w̃ − w = s·(offset + h(V)) with h ≡ 0 on fixed weights (which keep their nearest integer)
    offset = np.where(fixed, np.round(grid), floor) - grid
    # the gradient's w̃ Cqq − w Cfq = (w̃ − w) Cqq + w (Cqq − Cfq); the last term vanishes for the symmetric objective
    drift = None if cov.qq is cov.qf else _apply(cov.qq - np.swapaxes(cov.qf, 1, 2), rows, cov.group)

    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
    v = np.log(p / (1 - p)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        v = _optimize(v, offset, fixed, scales, cov.qq, drift, norm, cov.group, iterations, reg_weight,
                      learning_rate, rows.size)
    up = (1.0 / (1.0 + np.exp(-v))) * (ZETA - GAMMA) + GAMMA >= 0.5
    q = np.clip(np.where(fixed, np.round(grid), floor + up), -graph.INT8_MAX, graph.INT8_MAX)
    rounded = (q * scales[:, None]).astype(np.float32)
    e_ada = reconstruction_error(rounded, rows, cov)
    if not np.all(np.isfinite(v)) or not np.sum(e_ada) <= np.sum(e_near):
        # Diverged (overflow on extreme activations) or lost to rounding to nearest on its own
        # objective: keep nearest, never make a layer worse.
        rounded, e_ada = nearest, e_near
    return AdaRoundResult(
        rows=rounded,
        error_nearest=float(np.sum(e_near)) / variance,
        error_adaround=float(np.sum(e_ada)) / variance,
        flipped=float(np.mean(rounded != nearest)),
    )


def _optimize(v, offset, fixed, scales, qq, drift, norm, group, iterations, reg_weight, learning_rate, size):
    """Adam on the soft rounding variables ``v``: output reconstruction error plus the
    annealed regulariser pushing every h(v) to 0 or 1 (after a 20 % warm-up). One TensorFlow
    loop; per step the product with the covariance (oneDNN's multi-threaded matmul: on CPUs
    with bfloat16 matrix units, for wide layers, the covariance in two bfloat16 halves and the
    rounding in grid steps — within float32's noise on the objective at a third of the cost), then
    the elementwise rest, fused by XLA into one pass over the weights for wide layers."""
    import tensorflow as tf

    qq = np.asarray(qq, np.float32)
    f32 = lambda a: tf.constant(np.asarray(a, np.float32))
    if group is not None:
        mode, stack = "grouped", (f32(qq[np.asarray(group)]),)  # one (k, k) per output channel
    elif v.shape[1] >= BF16_MIN_FAN_IN and bf16_matmul_units():
        high = tf.cast(f32(qq[0]), tf.bfloat16)
        mode, stack = "halves", (high, tf.cast(f32(qq[0]) - tf.cast(high, tf.float32), tf.bfloat16))
    else:
        mode, stack = "float32", (f32(qq[0]),)
    v = np.where(fixed, -30.0, v)  # h ≡ 0 with a zero gradient: fixed weights never move
    gain = f32((scales.astype(np.float64) ** 2 * (2.0 / norm))[:, None])  # ∂loss/∂h = gain · (u Cqq + drift / s)
    shift = None if drift is None else f32(drift / scales[:, None])
    fused = v.size >= FUSE_MIN_WEIGHTS
    key = (mode, shift is None, fused)
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(_adam_steps(mode, shift is None, fused), reduce_retracing=True)
    result = _COMPILED[key](f32(v), f32(offset), gain, stack, shift, tf.constant(iterations, tf.int32),
                            tf.constant(int(0.2 * iterations), tf.int32),
                            tf.constant(reg_weight * 2.0 / size, tf.float32), tf.constant(learning_rate, tf.float32))
    return result.numpy()


BF16_MIN_FAN_IN = 256  # narrower layers: the float32 product costs little next to the elementwise step
FUSE_MIN_WEIGHTS = 1 << 15  # XLA compiles once per layer size (≈ 0.2 s), so only where the unfused step costs more
_COMPILED: dict = {}


def bf16_matmul_units() -> bool:
    """True on x86 CPUs with AMX or AVX-512 BF16 (oneDNN's bfloat16 matmul is then several
    times float32's; elsewhere it is emulated and slower)."""
    global _BF16
    if _BF16 is None:
        _BF16 = bool({"amx_bf16", "avx512_bf16"} & cpu_flags()) and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"
    return _BF16


_BF16: bool | None = None


def _soft(v, offset):
    """sigmoid(v), the unclipped h and the rounding u = offset + h(v) in grid steps (w̃ − w = s·u)."""
    import tensorflow as tf

    sig = tf.sigmoid(v)
    h_raw = sig * (ZETA - GAMMA) + GAMMA
    return sig, h_raw, offset + tf.clip_by_value(h_raw, 0.0, 1.0)


def _adam_steps(mode: str, symmetric: bool, fused: bool):
    import tensorflow as tf

    b1, b2, eps = 0.9, 0.999, 1e-8
    dtype = tf.bfloat16 if mode == "halves" else tf.float32

    def step(v, m1, m2, prod, t, offset, gain, warmup, span, reg, lr):
        sig, h_raw, u = _soft(v, offset)
        grad_h = gain * prod
        beta = 2.0 + 18.0 * (1.0 - (t - warmup) / span)
        d = 2.0 * (u - offset) - 1.0
        # |d|^(β−1) as exp(log): XLA's pow costs three times the rest of the step
        regulariser = reg * beta * tf.exp((beta - 1) * tf.math.log(tf.abs(d))) * tf.sign(d)
        grad_h = grad_h - tf.cast(t > warmup, tf.float32) * regulariser
        inside = tf.cast((h_raw > 0) & (h_raw < 1), tf.float32)
        grad_v = grad_h * sig * (1 - sig) * (ZETA - GAMMA) * inside
        m1 = b1 * m1 + (1 - b1) * grad_v
        m2 = b2 * m2 + (1 - b2) * grad_v * grad_v
        v = v - lr * (m1 / (1 - b1**t)) / (tf.sqrt(m2 / (1 - b2**t)) + eps)
        return v, m1, m2, tf.cast(_soft(v, offset)[2], dtype)

    step = tf.function(step, jit_compile=True) if fused else step

    def multiply(u, stack):
        if mode == "grouped":
            return tf.einsum("ok,okj->oj", u, stack[0])
        if mode == "float32":
            return tf.matmul(u, stack[0])
        return tf.cast(tf.matmul(u, stack[0]), tf.float32) + tf.cast(tf.matmul(u, stack[1]), tf.float32)

    def steps(v, offset, gain, stack, shift, iterations, warmup, reg, lr):
        m1, m2 = tf.zeros_like(v), tf.zeros_like(v)
        u = tf.cast(_soft(v, offset)[2], dtype)
        span = tf.cast(tf.maximum(1, iterations - warmup), tf.float32)
        warm = tf.cast(warmup, tf.float32)
        for t in tf.range(1, iterations + 1):
            prod = multiply(u, stack) if symmetric else multiply(u, stack) + shift
            v, m1, m2, u = step(v, m1, m2, prod, tf.cast(t, tf.float32), offset, gain, warm, span, reg, lr)
        return v

    return steps


@dataclasses.dataclass
class LayerResult:
    error_nearest: float | None
    error_adaround: float | None
    flipped: float
    seconds: float
    skipped: str | None = None

    def as_dict(self) -> dict:
        if self.skipped:
            return {"adaround": f"skipped: {self.skipped}"}
        return {"error_nearest": self.error_nearest, "error_adaround": self.error_adaround,
                "flipped": round(self.flipped, 4), "adaround_seconds": round(self.seconds, 2)}


def adaround_with(layer: graph.LinearLayer, cov: Covariance, iterations: int = DEFAULT_ITERATIONS,
                  reg_weight: float | None = None) -> LayerResult:
    """AdaRound one layer in place given its input statistics ``cov``."""
    start = time.perf_counter()
    fan_in = layer.rows().shape[1]
    if cov.samples < MIN_SAMPLES_PER_INPUT * fan_in:
        # Too few samples to pin down a fan_in × fan_in covariance (a classifier on pooled
        # features sees one sample per image): learned rounding would fit the calibration
        # images, not the data. Round to nearest.
        layer.set(kernel=layer.from_rows(graph.quantize_rows(layer.rows())))
        return LayerResult(None, None, 0.0, time.perf_counter() - start,
                           skipped=f"{cov.samples} samples for {fan_in} inputs")
    result = adaround_rows(layer.rows(), cov, iterations, DEFAULT_REG_WEIGHT if reg_weight is None else reg_weight)
    layer.set(kernel=layer.from_rows(result.rows))
    return LayerResult(result.error_nearest, result.error_adaround, result.flipped, time.perf_counter() - start)
