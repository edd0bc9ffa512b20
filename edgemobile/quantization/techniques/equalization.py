"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction"), adapted to what TFLite's int8 scheme needs.

For two layers joined by a positively homogeneous activation — ``L2(f(L1(x)))`` with
``f(s·z) = s·f(z)`` for s > 0 (ReLU; padding, average pooling, dropout in between) — scaling
output channel i of L1 (its weights and bias) by ``s_i`` and input channel i of L2 by
``1/s_i`` leaves the float function unchanged.

The paper picks ``s`` to equalize per-channel *weight* ranges, because it targets per-tensor
weight quantization. TFLite quantizes weights per output channel, so that problem is already
solved; what per-tensor quantization still hurts is the *activation* tensor between the two
layers: one int8 grid serves every channel, and a channel whose values span a few steps of it
is mostly rounding noise, which L2 then amplifies. So here ``s_i`` stretches each channel of
the activation towards the tensor's full range — ``s_i = (r_max / r_i)^strength`` with r_i the
channel's largest value on the calibration images — and L2's weights shrink to compensate.
Scaling L1's output channels costs nothing on its per-channel weight grid; for a depthwise
L2 the same holds, for a pointwise L2 the shrunk input column shares its row's grid (the
``strength`` and ``max_scale`` caps keep that cost small).

ReLU6 is not positively homogeneous: ``min(6, s·z) ≠ s·min(6, z)`` where the clip binds. As
the paper suggests, such a layer is treated as ReLU only where that is valid — for channels
that never reach the clip on the calibration images, up to a scale that keeps them below it
(with ``margin`` headroom for unseen images); channels that do saturate keep s = 1. The float
function is therefore unchanged on the calibration images, and on any image whose
activations stay within the margin.

As a technique it is a whole-model step before the layer pass, on the BatchNorm-folded model;
the engine checks it keeps the float function and drops it otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgemobile.quantization import graph
from edgemobile.quantization.simulate import _activation_name, is_fusable_activation
from edgemobile.quantization.techniques.base import ModelContext, Option, Technique

DEFAULT_STRENGTH = 1.0
DEFAULT_MAX_SCALE = 16.0
DEFAULT_MARGIN = 0.2  # ReLU6 channels are stretched to at most 6 / (1 + margin)


@dataclasses.dataclass
class Pair:
    """L1 → activation (→ channel-preserving layers) → L2."""

    first: graph.LinearLayer
    second: graph.LinearLayer
    activation: object  # the ReLU/ReLU6 layer after ``first``
    clip: float | None  # 6.0 for ReLU6, None for ReLU


def _relu_clip(layer) -> float | None:
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return None if layer.max_value is None else float(layer.max_value)
    return 6.0 if _activation_name(layer) == "relu6" else None


def find_pairs(model) -> list[Pair]:
    """Every (L1, L2) that can be rescaled without changing the float function."""
    import keras

    readers = graph.consumers(model)
    linear = {L.name: L for L in graph.linear_layers(model)}
    channel_preserving = (keras.layers.ZeroPadding2D, keras.layers.GlobalAveragePooling2D,
                          keras.layers.AveragePooling2D, keras.layers.MaxPooling2D, keras.layers.Dropout)
    pairs = []
    for name, first in linear.items():
        if len(first.layer._inbound_nodes) != 1:
            continue
        reads = readers[name]
        if len(reads) != 1 or not is_fusable_activation(reads[0]):
            continue
        activation = reads[0]
        node = activation
        while True:
            nxt = readers[node.name]
            if len(nxt) != 1:
                node = None
                break
            node = nxt[0]
            if not isinstance(node, channel_preserving):
                break
        if node is None or node.name not in linear or len(node._inbound_nodes) != 1:
            continue
        second = linear[node.name]
        if second.kind == "depthwise" and int(second.layer.kernel.shape[3]) != 1:
            continue
        if isinstance(node, keras.layers.Dense) and len(node.input.shape) != 2:
            continue
        pairs.append(Pair(first, second, activation, _relu_clip(activation)))
    return pairs


def channel_maxima(model, pairs: list[Pair], x: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Per-channel max of each pair's L1 output (pre-activation) over ``x``."""
    wanted = {p.first.name for p in pairs}
    maxima: dict[str, np.ndarray] = {}

    def hook(layer, inputs, output):
        if layer.name in wanted:
            value = np.asarray(output)
            m = value.reshape(-1, value.shape[-1]).max(axis=0)
            maxima[layer.name] = np.maximum(maxima[layer.name], m) if layer.name in maxima else m
        return None

    for chunk in graph.iter_batches(np.asarray(x, np.float32), batch):
        graph.run_graph(model, chunk, hook)
    return maxima


@dataclasses.dataclass
class PairScaling:
    first: str
    second: str
    scales: np.ndarray
    saturated: int  # ReLU6 channels left unscaled because they reach the clip

    def as_dict(self) -> dict:
        return {"first": self.first, "second": self.second, "channels": int(self.scales.size),
                "median_scale": round(float(np.median(self.scales)), 3),
                "max_scale": round(float(self.scales.max()), 3), "saturated_relu6_channels": self.saturated}


def pair_scales(pair: Pair, maxima: np.ndarray, strength: float = DEFAULT_STRENGTH,
                max_scale: float = DEFAULT_MAX_SCALE, margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, int]:
    """Per-channel scales for one pair (see the module docstring)."""
    peak = np.maximum(np.asarray(maxima, np.float64), 0.0)
    ceiling = float(peak.max()) if pair.clip is None else min(pair.clip, float(peak.max()))
    alive = peak > 1e-6 * max(ceiling, 1e-12)
    scales = np.ones_like(peak)
    scales[alive] = (ceiling / peak[alive]) ** strength
    saturated = 0
    if pair.clip is not None:
        limit = pair.clip / (1.0 + margin)
        saturated_mask = peak >= limit
        saturated = int(np.sum(saturated_mask))
        scales = np.where(saturated_mask, 1.0, np.minimum(scales, limit / np.maximum(peak, 1e-12)))
    scales = np.clip(scales, 1.0, max_scale)
    return scales, saturated


def apply_scales(pair: Pair, scales: np.ndarray) -> None:
    """Scale L1's output channel i by s_i and L2's input channel i by 1/s_i (in place)."""
    s = np.asarray(scales, np.float64)
    first, second = pair.first, pair.second
    rows = first.rows().astype(np.float64) * s[:, None]
    first.set(kernel=first.from_rows(rows), bias=first.bias.astype(np.float64) * s)
    kernel = second.kernel.astype(np.float64)
    if second.kind == "depthwise":  # (kh, kw, channels, 1)
        kernel = kernel / s[None, None, :, None]
    elif second.kind == "conv":  # (kh, kw, cin, cout)
        kernel = kernel / s[None, None, :, None]
    else:  # dense (in, out)
        kernel = kernel / s[:, None]
    second.set(kernel=kernel)


def equalize(model, x: np.ndarray, strength: float = DEFAULT_STRENGTH, max_scale: float = DEFAULT_MAX_SCALE,
             margin: float = DEFAULT_MARGIN) -> list[PairScaling]:
    """Equalize every pair of a BatchNorm-folded model in place; returns what was done."""
    pairs = find_pairs(model)
    if not pairs:
        return []
    maxima = channel_maxima(model, pairs, x)
    done = []
    for pair in pairs:
        scales, saturated = pair_scales(pair, maxima[pair.first.name], strength, max_scale, margin)
        apply_scales(pair, scales)
        done.append(PairScaling(pair.first.name, pair.second.name, scales, saturated))
    return done


def equalize_step(context: ModelContext, options) -> list[dict]:
    """The technique's model step: :func:`equalize` on the technique images; what was done, per pair.

    Args:
        context: the folded model and the technique images.
        options: this technique's options (only its switch).
    """
    return [done.as_dict() for done in equalize(context.model, context.images)]


TECHNIQUE = Technique(
    name="equalization",
    switch=Option("equalize", default=True, off=False, flag="equalize", help="cross-layer equalization"),
    describe=lambda options: "equalization",
    ablation_label="equalization",
    before_layers=equalize_step,
    keeps_float_function=True,
)
