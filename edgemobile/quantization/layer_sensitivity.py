"""What each layer of a full-integer model costs, measured on the TFLite interpreter: the
model requantized from the same statistics with every layer float but one
(:meth:`~edgemobile.quantization.pipeline.FullInteger.keeping_float`), judged against the
float model (:class:`~edgemobile.quantization.agreement.Judge`).

Measured this way round — only the layer in int8: its input, weights and output rounded — a
layer's cost does not depend on which others are int8. The other way round (only the layer
float) mixes in the techniques: bias correction and fine-tuning shape each layer for the int8
errors of the layers before it, so making one early layer float shifts every layer after it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from edgemobile.progress import Progress
from edgemobile.quantization.agreement import Judge
from edgemobile.quantization.keras_layers import Layer, float_tensors
from edgemobile.quantization.pipeline import FullInteger


@dataclasses.dataclass
class Conversion:
    """A full-integer conversion and its ops in Keras terms (found before its float weights
    are restored)."""

    full: FullInteger
    layers: list[Layer]


def layer_sensitivity(conversion: Conversion, judge: Judge, progress: bool = True) -> dict:
    """The all-integer model, the model with every layer float (int8 input and output only),
    and per layer (model order) what quantizing only it costs against the latter: lost top-1
    agreement with the float model and added output error (finer on few images), with each
    layer's share of the summed added error."""
    layers = conversion.layers
    bar = Progress(len(layers) + 2, "layer sensitivity (TFLite)", unit="model") if progress else None

    def measure(tensors: Sequence[str], what: str):
        measured = judge(conversion.full.keeping_float(tensors), source=what)
        if bar:
            bar.update()
        return measured

    integer = measure([], "the int8 model")
    floated = measure(float_tensors(layers), "every layer float")
    rows = []
    for layer in layers:
        alone = measure(float_tensors([other for other in layers if other is not layer]), f"only {layer.name} int8")
        rows.append({**layer.as_dict(), "agreement_loss": round(floated.rate - alone.rate, 4),
                     "error_added": round(alone.error - floated.error, 8)})
    if bar:
        bar.close()
    total = sum(max(row["error_added"], 0.0) for row in rows) or 1.0
    for row in rows:
        row["share"] = round(max(row["error_added"], 0.0) / total, 3)
    return {"images": integer.images, "int8": integer.as_dict(), "all_float": floated.as_dict(), "layers": rows}


def most_sensitive(layers: Sequence[Layer], sensitivity: dict, k: int) -> tuple[Layer, ...]:
    """The ``k`` layers whose int8 costs most, in model order. Layers measured to cost nothing
    (or less than nothing: noise on a few images) come last, not never: together, layers that
    cost nothing alone can still cost something."""
    ranked = sorted(sensitivity["layers"], key=lambda row: -row["error_added"])[:k]
    chosen = {row["layer"] for row in ranked}
    return tuple(layer for layer in layers if layer.name in chosen)
