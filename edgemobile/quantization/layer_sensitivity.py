"""What keeping each layer of a full-integer model float gains, measured on the TFLite
interpreter: the layer requantized float from the same statistics
(:meth:`~edgemobile.quantization.pipeline.FullInteger.keeping_float`) and judged against the
float model (:class:`~edgemobile.quantization.agreement.Judge`).

A layer kept float still has its output rounded onto its int8 grid for the layers after it;
only a run of float layers keeps the tensors between them float. So each layer is measured
*with its output*: it and the layers reading its output float. That unit is what selective
precision keeps (:mod:`.target`); ``inspect`` also shows the layer alone.
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


def layer_sensitivity(conversion: Conversion, judge: Judge, alone: bool = False, progress: bool = True) -> list[dict]:
    """Per layer (model order), what keeping it float *with its output* gains on ``judge``'s
    images: it and the layers reading its output computed in float, so neither its weights nor
    its output tensor are rounded (``with_output``); with ``alone``, also the layer by itself
    (its weights and arithmetic only: its output is rounded onto the same grid). Gains are in
    top-1 agreement with the float model and in output error (finer on few images)."""
    base = judge(conversion.full.tflite)
    by_name = {layer.name: layer for layer in conversion.layers}
    steps = len(conversion.layers) * (2 if alone else 1)
    bar = Progress(steps, "layer sensitivity (TFLite)", unit="model") if progress else None

    def gain(layers: Sequence[Layer], what: str) -> dict:
        measured = judge(conversion.full.keeping_float(float_tensors(layers)), source=what)
        if bar:
            bar.update()
        return {"agreement_gain": round(measured.rate - base.rate, 4), "error_gain": round(base.error - measured.error, 8)}

    rows = []
    for layer in conversion.layers:
        unit = [layer] + [by_name[name] for name in layer.readers]
        row = {**layer.as_dict(), "with_output": gain(unit, f"{layer.name} and its output kept float")}
        if alone:
            row["alone"] = gain([layer], f"{layer.name} kept float")
        rows.append(row)
    if bar:
        bar.close()
    for row in rows:
        row["base"] = {"agreement": round(base.rate, 4), "output_error": round(base.error, 8), "images": base.images}
    return rows


def most_sensitive(layers: Sequence[Layer], sensitivity: list[dict], k: int) -> tuple[Layer, ...]:
    """The layers of the ``k`` units whose float output gains most (each unit: a layer and its
    readers), in model order; units that gain nothing are never taken."""
    by_name = {layer.name: layer for layer in layers}
    ranked = sorted((row for row in sensitivity if row["with_output"]["error_gain"] > 0),
                    key=lambda row: -row["with_output"]["error_gain"])[:k]
    chosen = {name for row in ranked for name in [row["layer"], *row["readers"]]}
    return tuple(layer for layer in layers if layer.name in chosen and layer.name in by_name)


def gaining_units(sensitivity: list[dict]) -> int:
    return sum(1 for row in sensitivity if row["with_output"]["error_gain"] > 0)
