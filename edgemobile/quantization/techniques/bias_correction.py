"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", §4.2, the variant that measures instead of modelling).

Rounding weights and activations is not zero-mean per channel: a depthwise filter whose nine
rounding errors happen to share a sign shifts that channel's whole output map, and ReLU6
clipping and activation rounding shift means too. Such shifts compound layer after layer.

As a technique it is a step of the engine's int8 stream: for each conv/dense layer in order,
with all earlier layers already quantized and corrected, the layer's mean output per channel
in the int8 simulation is compared with the float model's on the same calibration images and
the difference is subtracted from the layer's bias. The converter then quantizes the
corrected bias (int32, exact to well below a step) like any other.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from edgemobile.quantization.graph import LinearLayer
from edgemobile.quantization.techniques.base import LayerContext, Option, Statistic, Technique


def mean_shift(reference: np.ndarray, quantized: np.ndarray) -> np.ndarray:
    """Per-channel mean of quantized − reference over every axis but the last (float64).

    Args:
        reference: the float model's output of a layer.
        quantized: the int8 simulation's output of the same layer, same images.
    """
    diff = np.asarray(quantized, np.float32) - np.asarray(reference, np.float32)
    return diff.reshape(-1, diff.shape[-1]).mean(axis=0, dtype=np.float64)


def remove_shift(layer: LinearLayer, shift: np.ndarray) -> None:
    """Subtract a per-channel mean output ``shift`` from the layer's bias (in float64).

    Args:
        layer: the conv/dense layer.
        shift: its int8 mean output minus its float mean output, per output channel.
    """
    layer.set(bias=layer.bias.astype(np.float64) - shift)


def correct_step(context: LayerContext, options: Mapping[str, Any]) -> dict:
    """The technique's stream step: remove the layer's int8 − float mean shift.

    Args:
        context: the layer, its float mean and its int8 mean output (before correction).
        options: this technique's options (only its switch).
    """
    shift = context.int8_mean - context.float_mean
    remove_shift(context.layer, shift)
    return {"mean_abs_shift_removed": float(np.mean(np.abs(shift)))}


TECHNIQUE = Technique(
    name="bias_correction",
    switch=Option("bias_correction", default=True, off=False, flag="bias-correction",
                  help="empirical bias correction"),
    describe=lambda options: "bias correction",
    ablation_label="bias correction",
    needs=frozenset({Statistic.ACTIVATION_RANGES, Statistic.FLOAT_MEANS, Statistic.INT8_MEANS}),
    stream_step=correct_step,
)
