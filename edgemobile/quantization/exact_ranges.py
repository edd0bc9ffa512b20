"""Exact calibration ranges: the true min/max of every activation over the calibration set.

TFLite's calibrator records the min/max of an op's inputs again *after* the op ran, and the
arena planner lets an elementwise op write its output into a single-use input's buffer, so
such an input gets its consumer's range merged into its own (tensorflow/tensorflow#127842).
Example: in MobileNetV3's ``x * relu6(x + 3)`` the relu6 tensor gets the product's range
(≈6× max|x|) and is quantized with ~7 levels. :func:`exact_minmax_hook` recomputes every
min/max with no buffer shared between tensors; every full-integer conversion uses it (where
the calibrator was right — e.g. MobileNetV1 — the quantized model is the same, up to the
last float bit of a scale where a batched replay sums in another order).
:func:`relu6_range_violations` detects a model quantized from corrupted statistics.

Needs ``ai-edge-litert`` (its interpreter and TFLite schema code), as conversion does.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from edgemobile.runtime.interpreter import tensor_inspector


def exact_minmax_hook(representative: Callable[[], Iterable[list[np.ndarray]]]) -> Callable[[bytes], bytes]:
    """A ``calibrated_hook`` for :func:`edgemobile.quantization.convert.convert_keras` that
    replaces the converter's recorded min/max of every activation by the true min/max over
    ``representative``, measured with no buffer shared between tensors (see the module
    docstring). Where TFLite's calibrator is right the statistics are unchanged, and so is the
    quantized model."""

    def hook(calibrated: bytes) -> bytes:
        from ai_edge_litert.tools import flatbuffer_utils

        interpreter = tensor_inspector(calibrated, num_threads=1)
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
        tensors = model.subgraphs[0].tensors
        tracked = [i for i, t in enumerate(tensors)
                   if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
        lo, hi = tensor_extremes(interpreter, representative, tracked)
        for i in tracked:
            if np.isfinite(lo[i]) and np.isfinite(hi[i]):
                tensors[i].quantization.min = [lo[i]]
                tensors[i].quantization.max = [hi[i]]
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    return hook


def replay(interpreter, inputs: Callable[[], Iterable[list[np.ndarray]]], tensors: Sequence[int],
           each: Callable[[int, np.ndarray], None], progress=None) -> None:
    """Run ``interpreter`` (a :func:`~edgemobile.runtime.interpreter.tensor_inspector`) on
    every sample of ``inputs()`` and hand each non-empty tensor of ``tensors`` to ``each``;
    ``progress`` (a bar) counts the images."""
    for sample in inputs():
        feed(interpreter, sample)
        interpreter.invoke()
        for i in tensors:
            value = interpreter.tensor(i)()  # a view, not a copy: ``each`` must not keep it
            if value.size:
                each(i, value)
            del value  # no view may be alive at the next invoke
        if progress:
            progress.update(len(sample[0]))


class Extremes:
    """The running (min, max) of each of ``tensors``, fed a value at a time (±inf until a
    tensor's first non-empty value)."""

    def __init__(self, tensors: Iterable[int]):
        self.lo = {i: np.inf for i in tensors}
        self.hi = {i: -np.inf for i in self.lo}

    def add(self, i: int, value: np.ndarray) -> None:
        self.lo[i], self.hi[i] = min(self.lo[i], float(value.min())), max(self.hi[i], float(value.max()))


def tensor_extremes(interpreter, inputs: Callable[[], Iterable[list[np.ndarray]]], tensors: Sequence[int],
                    progress=None) -> tuple[dict[int, float], dict[int, float]]:
    """(min, max) of every tensor of ``tensors`` over a :func:`replay` of ``inputs`` (±inf
    for a tensor that was always empty)."""
    extremes = Extremes(tensors)
    replay(interpreter, inputs, tensors, extremes.add, progress)
    return extremes.lo, extremes.hi


def feed(interpreter, sample) -> None:
    """Set the inputs of ``interpreter`` to ``sample`` (a list, one array per input), resizing
    them first when the batch differs — so replays can run several images per invoke."""
    details = interpreter.get_input_details()
    if any(tuple(d["shape"]) != np.shape(v) for d, v in zip(details, sample)):
        for d, v in zip(details, sample):
            interpreter.resize_tensor_input(d["index"], list(np.shape(v)))
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()
    for d, v in zip(details, sample):
        interpreter.set_tensor(d["index"], np.asarray(v, d["dtype"]))


def relu6_range_violations(tflite: bytes, slack_steps: float = 1.0) -> list[str]:
    """Quantized outputs of ops with a fused RELU6 whose int8 grid covers more than [0, 6]
    (plus ``slack_steps`` steps) — the signature of the calibrator bug described above. Empty
    for a correctly calibrated model."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    found = []
    for op in graph.operators:
        options = op.builtinOptions
        if getattr(options, "fusedActivationFunction", None) != schema.ActivationFunctionType.RELU6:
            continue
        tensor = graph.tensors[op.outputs[0]]
        q = tensor.quantization
        integer = tensor.type in (schema.TensorType.INT8, schema.TensorType.UINT8)
        if q is None or q.scale is None or len(q.scale) != 1 or not integer:
            continue
        scale, zero_point = float(q.scale[0]), int(q.zeroPoint[0])
        top = (127 if tensor.type == schema.TensorType.INT8 else 255) - zero_point
        if top * scale > 6.0 + slack_steps * scale:
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            found.append(f"{name[:80]}: int8 grid reaches {top * scale:.3g} (> 6)")
    return found


# -- zoo ----------------------------------------------------------------------------------------
