"""Proof that a "full-integer" model really is: every op reads and writes integer tensors.

The converter can silently leave float islands (an op with no int8 kernel falls back to
float with QUANTIZE/DEQUANTIZE around it); those are slow on integer-only hardware and
fatal on Coral-style accelerators, so conversion fails instead of writing such a model.
Runtime-safe: uses the interpreter only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization.keras_layers import DATA_MOVEMENT_OPS
from edgemobile.runtime.interpreter import TFLiteClassifier

_FLOAT_TYPES = (np.float16, np.float32, np.float64)


def float_tensor_uses(model: TFLiteClassifier, kept_float: Sequence[str] = ()) -> list[str]:
    """Human-readable list of ops touching a float tensor (empty for an all-integer model).
    With ``kept_float`` (the output tensor names of ops kept float on purpose) the ops around
    them are left out too: the DEQUANTIZE/QUANTIZE pairs, ops that read a kept tensor (a shape
    read off it) and data-movement ops passing it on (a softmax head kept with its logits) — a
    conv, dense or arithmetic op float by accident is still found."""
    interpreter = model.interpreter
    dtypes = {d["index"]: np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    kept = set(kept_float)
    found = []
    for op in model.graph_ops():
        touched = {names.get(int(t)) for t in [*op["inputs"], *op["outputs"]] if int(t) >= 0}
        if kept and (touched & kept or op["op_name"] in DATA_MOVEMENT_OPS):  # QUANTIZE/DEQUANTIZE among them
            continue
        for role in ("inputs", "outputs"):
            for tensor in op[role]:
                tensor = int(tensor)
                if tensor >= 0 and dtypes.get(tensor) in _FLOAT_TYPES:
                    found.append(
                        f"op {op['index']} {op['op_name']} has {dtypes[tensor]} {role[:-1]} '{names[tensor]}'"
                    )
    return found


def op_histogram(model: TFLiteClassifier) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in model.graph_ops():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def require_integer_only(model: TFLiteClassifier, kept_float: Sequence[str] = ()) -> None:
    """Fail unless every op is integer, but those kept float on purpose (``kept_float``: their
    output tensor names)."""
    problems = float_tensor_uses(model, kept_float)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise EdgeMobileError(
            f"{model.source}: not all-integer: {'; '.join(problems[:3])}{more}"
        )
