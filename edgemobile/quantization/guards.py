"""What the Keras-side techniques may not touch in a user's model, and the check that what
they did keep the float function.

The techniques (:mod:`.pipeline`) were written for conv/depthwise/dense layers joined by
BatchNorm and ReLU-style activations. Any functional model of standard layers converts, so
for layers outside that set the rule is: skip, say so in one line (layer and reason), never
produce a wrong model.

* :func:`unmodeled_layers` — weighted layers the techniques do not model (grouped and
  separable convolutions, 1-D/3-D/transposed convolutions, …): the converter quantizes them
  as it would without the techniques;
* :func:`shared_layers` — conv/dense layers called more than once: one set of weights for
  several outputs, which the layer-by-layer simulation cannot correct one call at a time;
* :class:`FloatCheck` — the float outputs of the original model on the technique images;
  BatchNorm folding and equalization must reproduce them (they are exact rewrites), and one
  that does not is dropped.
"""

from __future__ import annotations

import numpy as np

from edgemobile.quantization import graph

FLOAT_TOLERANCE = 1e-2  # max |Δ output| over the outputs' spread; exact rewrites in float32 stay below 1e-3 (zoo:
# MobileNetV1 α0.25 3e-4, V3-Small 5e-5, MobileOne-S0 0), a wrong fold is of order 1
CHECK_IMAGES = 32
_NOT_WEIGHTS = ("BatchNormalization", "LayerNormalization", "Normalization", "GroupNormalization", "PReLU",
                "Rescaling", "Embedding")


def unmodeled_layers(model) -> list[str]:
    """One message per weighted layer that no technique models (left to the converter)."""
    notes = []
    for layer in model.layers:
        kind = type(layer).__name__
        if not layer.weights or graph.linear_kind(layer) is not None or kind in _NOT_WEIGHTS:
            continue
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            why = f"a {layer.data_format} {kind} layer"
        elif kind == "Conv2D":
            why = f"grouped convolution (groups={layer.groups})"
        else:
            why = f"a {kind} layer"
        notes.append(f"{layer.name}: {why} is not modelled by equalization, bias correction or AdaRound; "
                     "the converter quantizes it unchanged")
    return notes


def shared_layers(model) -> set[str]:
    """Conv/dense layers of ``model`` called more than once."""
    return {L.name for L in graph.linear_layers(model) if len(L.layer._inbound_nodes) > 1}


def single_io(model) -> str | None:
    """Why the techniques cannot run on ``model`` at all (None: they can)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs (the techniques need one each)"
    return None


class FloatCheck:
    """The original model's float outputs on (up to ``CHECK_IMAGES`` of) the technique images."""

    def __init__(self, model, x: np.ndarray):
        self.x = np.asarray(x[:CHECK_IMAGES], np.float32)
        self.reference = self._outputs(model)
        spread = float(np.std(self.reference))
        self.scale = spread if spread > 0 else max(float(np.max(np.abs(self.reference))), 1e-12)

    def _outputs(self, model) -> np.ndarray:
        call = graph.inference_call(model)
        return np.concatenate([np.asarray(call(chunk), np.float64).reshape(len(chunk), -1)
                               for chunk in graph.iter_batches(self.x, 16)])

    def error(self, model) -> float:
        """max |outputs(model) − outputs(original)| / spread of the original's outputs."""
        out = self._outputs(model)
        return float(np.max(np.abs(out - self.reference))) / self.scale if out.shape == self.reference.shape \
            else float("inf")

    def keeps(self, model) -> tuple[bool, float]:
        err = self.error(model)
        return bool(err <= FLOAT_TOLERANCE), err
