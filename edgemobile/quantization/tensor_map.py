"""Which TFLite tensor each Keras layer's output became, found by value: the Keras model and
the converter's calibrated float model are run on the same images and each layer output is
matched to the tensor of the same shape whose values it reproduces. Names cannot do it: the
converter names a tensor after the ops fused into it ("…/Relu6;…/convolution"), Keras
operations get generic names ("Mul_3"), and a tensor a pass-through op produces has none.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from edgemobile.quantization import graph
from edgemobile.quantization.exact_ranges import feed
from edgemobile.runtime.interpreter import tensor_inspector
from edgemobile.tflite.calibration_statistics import statistic_slots

MATCH_TOLERANCE = 1e-3  # relative to the layer output's largest magnitude (float32 conversions differ by ~1e-6)


def keras_to_tflite(model, calibrated: bytes, x: np.ndarray, names: Iterable[str]) -> dict[str, int]:
    """Layer name → index of the calibrated model's tensor that holds the layer's output.

    Args:
        model: the Keras model the converter was given.
        calibrated: its calibrated float TFLite model (every activation tensor has a statistic slot).
        x: a few images, as the model takes them.
        names: the layers to find; a layer whose output no tensor reproduces is left out.
    """
    x = np.asarray(x, np.float32)
    wanted = set(names)
    keras_out: dict[str, np.ndarray] = {}

    def keep(layer, inputs, output):
        if layer.name in wanted:
            keras_out[layer.name] = np.asarray(output)
        return None

    graph.run_graph(model, x, keep)
    interpreter = tensor_inspector(calibrated)
    feed(interpreter, [x])
    interpreter.invoke()
    slots = statistic_slots(bytearray(calibrated))
    by_shape: dict[tuple, list[tuple[int, np.ndarray]]] = {}
    for index in slots:
        value = np.array(interpreter.tensor(index)())
        if value.dtype == np.float32 and value.size:
            by_shape.setdefault(value.shape, []).append((index, value))
    found = {}
    for name, value in keras_out.items():
        scale = float(np.max(np.abs(value))) or 1.0
        best = min(((float(np.max(np.abs(candidate - value))) / scale, index)
                    for index, candidate in by_shape.get(value.shape, [])), default=None)
        if best is not None and best[0] <= MATCH_TOLERANCE:
            found[name] = best[1]
    return found
