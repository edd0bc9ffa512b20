"""Empirical gain correction: each conv/dense layer's int8 output rescaled to the float one's size.

Bias correction restores each channel's *mean*; quantization also shrinks *gains*. Noise
passing a saturating non-linearity (ReLU6, the hard-sigmoid of a squeeze-excite gate)
compresses the signal, clipped ranges trim the largest values, and a hard-swish — quadratic
for x > 0 — roughly squares the shrink of its input. Layer after layer it compounds: on
MobileNetV3-Small the int8 logits are 14 % smaller than the float ones (least-squares slope
0.857), each hard-swish and gate then working on a shrunk input — a distortion, not just a
softmax temperature.

After the sequential pass (:mod:`.stream`), :func:`correct_gains` replays the calibration
images through the simulated int8 model (:mod:`.simulate`, the float stream on the original
weights) and, layer by layer in order, fits the slope ``g`` of the int8 pre-activation output
against the float one (one slope per layer, channels centred: per-channel slopes on a few
hundred images are too noisy) and divides the layer's kernel and bias by it about the
channel means — the means bias correction set are kept. Per-channel int8 weights are scale
equivariant, so the rounding AdaRound chose is kept too.
"""

from __future__ import annotations

import numpy as np

from edgemobile.quantization import graph as G
from edgemobile.quantization.bias_correction import mean_shift
from edgemobile.quantization import simulate as S

GAIN_LIMITS = (0.8, 1.25)  # beyond these the layer is broken, not shrunk: leave it alone


def layer_gain(reference: np.ndarray, quantized: np.ndarray) -> float:
    """Least-squares slope of ``quantized`` on ``reference``, each channel centred."""
    f = np.asarray(reference, np.float64).reshape(-1, np.shape(reference)[-1])
    q = np.asarray(quantized, np.float64).reshape(-1, np.shape(quantized)[-1])
    f, q = f - f.mean(axis=0), q - q.mean(axis=0)
    den = float(np.sum(f * f))
    return float(np.sum(f * q) / den) if den > 0 else 1.0


def correct_gains(model, x: np.ndarray, reference: dict[str, list[np.ndarray]], range_method: str,
                  spec=None, skip: set[str] = frozenset()) -> list[dict]:
    """Divide every conv/dense layer's int8 gain out of its weights (see the module docstring);
    ``reference``: the float weights (:func:`~edgemobile.quantization.simulate.snapshot`
    before any technique changed them). Returns a row per layer corrected."""
    rows = []

    def hook(layer: G.LinearLayer, ref_in, mod_in, ref_out):
        q = np.asarray(S.nearest_output(layer, mod_in), np.float32)
        g = layer_gain(ref_out, q)
        if layer.name in skip or not GAIN_LIMITS[0] <= g <= GAIN_LIMITS[1]:
            return q
        # q' = q / g - shift, its mean the float one's: kernel / g, bias / g - shift
        shift = mean_shift(ref_out, q / np.float32(g))
        layer.set(kernel=layer.from_rows(layer.rows(layer.kernel) / g),
                  bias=layer.bias.astype(np.float64) / g - shift)
        rows.append({"layer": layer.name, "gain": round(g, 4)})
        return (q / np.float32(g) - shift.astype(np.float32)).astype(np.float32)

    S.simulate(model, x, range_method, on_linear=hook, reference=reference, spec=spec)
    return rows
