"""Which ops of a loaded model the XNNPACK delegate actually took, and which fell back to
TFLite's builtin kernels.

Asking for XNNPACK is not getting it: the delegate takes only the ops (and quantization
parameters) it supports, and the rest run on the builtin kernels — for int8 often the slow
reference-style ones. An interpreter with the delegate applied lists the model's own nodes
followed by one ``DELEGATE`` node per partition, whose inputs and outputs are the partition's
boundary tensors; a model op belongs to a partition when it produces, without crossing that
boundary, a tensor the partition outputs. Only ``Interpreter._get_ops_details()`` is used —
present in ai-edge-litert and tflite_runtime ≥ 2.5 alike; where it is missing the answer is
``None`` ("cannot tell"), never a guess. No TensorFlow.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Op:
    index: int
    name: str  # e.g. "ADD"
    dtype: str  # dtype of its first output, e.g. "int8"
    size: int  # elements of its first output

    @property
    def label(self) -> str:
        return f"{self.name} ({self.dtype})" if self.dtype else self.name


@dataclasses.dataclass(frozen=True)
class Delegation:
    """XNNPACK's share of a model's ops in one interpreter."""

    partitions: int  # DELEGATE nodes
    delegated: tuple[Op, ...]
    fallback: tuple[Op, ...]  # ops left on TFLite's builtin kernels
    head_size: int  # elements of the model's largest output (a classifier's scores)

    @property
    def applied(self) -> bool:
        return self.partitions > 0

    @property
    def total(self) -> int:
        return len(self.delegated) + len(self.fallback)

    @property
    def slow_fallback(self) -> tuple[Op, ...]:
        """Fallback ops that cost something: those with more output elements than the model's
        output. What remains is the classifier head (an int8 SOFTMAX, a RESHAPE of the scores,
        int32 shape arithmetic), which XNNPACK never takes and which costs next to nothing."""
        return tuple(op for op in self.fallback if op.size > self.head_size)

    def fallback_by_type(self, ops: tuple[Op, ...] | None = None) -> list[tuple[str, int]]:
        """("ADD (int8)", 32), … most frequent first."""
        return collections.Counter(op.label for op in (self.fallback if ops is None else ops)).most_common()

    def as_dict(self) -> dict:
        return {"applied": self.applied, "partitions": self.partitions, "delegated_ops": len(self.delegated),
                "ops": self.total, "fallback_ops": dict(self.fallback_by_type())}


def xnnpack_delegation(interpreter) -> Delegation | None:
    """The delegation of an allocated ``interpreter`` (None if its runtime cannot list nodes)."""
    try:
        nodes = interpreter._get_ops_details()
    except (AttributeError, RuntimeError, ValueError):
        return None
    try:
        sizes = {int(t["index"]): int(np.prod(t["shape"])) for t in interpreter.get_tensor_details()}
        head = max((int(np.prod(t["shape"])) for t in interpreter.get_output_details()), default=0)
    except (AttributeError, RuntimeError, ValueError):
        return None
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    partitions = [n for n in nodes if n["op_name"] == "DELEGATE"]
    producer = {int(t): n for n in ops for t in n["outputs"] if int(t) >= 0}
    taken: set[int] = set()
    for partition in partitions:
        boundary = {int(t) for t in partition["inputs"]}
        stack = [int(t) for t in partition["outputs"]]
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in boundary or tensor not in producer:
                continue
            seen.add(tensor)
            node = producer[tensor]
            taken.add(int(node["index"]))
            stack.extend(int(t) for t in node["inputs"] if int(t) >= 0)

    def op(node: dict) -> Op:
        types = node.get("result_types") or []
        dtype = np.dtype(types[0]).name if len(types) else ""
        outputs = [int(t) for t in node["outputs"] if int(t) >= 0]
        return Op(int(node["index"]), str(node["op_name"]), dtype, sizes.get(outputs[0], 0) if outputs else 0)

    return Delegation(
        partitions=len(partitions),
        delegated=tuple(op(n) for n in ops if int(n["index"]) in taken),
        fallback=tuple(op(n) for n in ops if int(n["index"]) not in taken),
        head_size=head,
    )


def model_delegation(model: bytes, num_threads: int = 1) -> Delegation | None:
    """:func:`xnnpack_delegation` of ``model`` loaded with the default delegates (XNNPACK)."""
    from edgemobile.runtime.interpreter import interpreter_backend

    _, cls = interpreter_backend()
    interpreter = cls(model_content=bytes(model), num_threads=num_threads)
    interpreter.allocate_tensors()
    return xnnpack_delegation(interpreter)


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median single-thread latency (ms, XNNPACK as by default) of a model and of its float
    counterpart, timed interleaved in one run."""

    model_ms: float
    float_ms: float

    @property
    def ratio(self) -> float:
        return self.model_ms / self.float_ms


def measure_against_float(model: bytes, float_model: bytes, budget_s: float = 1.0, max_runs: int = 50) -> Latency:
    """Time ``model`` and ``float_model`` alternately (so load on the machine hits both alike)
    for about ``budget_s`` seconds after one warm-up invoke each: the cost of the fallback ops,
    measured where the conversion runs."""
    import time

    from edgemobile.runtime.interpreter import interpreter_backend, random_input

    _, cls = interpreter_backend()
    invokes = []
    for data in (model, float_model):
        interpreter = cls(model_content=bytes(data), num_threads=1)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], random_input(detail))
        interpreter.invoke()  # warm-up
        invokes.append(interpreter.invoke)
    times: list[list[float]] = [[], []]
    deadline = time.perf_counter() + budget_s
    while len(times[0]) < 3 or (time.perf_counter() < deadline and len(times[0]) < max_runs):
        for k, invoke in enumerate(invokes):
            t0 = time.perf_counter()
            invoke()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return Latency(float(np.median(times[0])), float(np.median(times[1])))


def fallback_warning(delegation: Delegation | None, source: str, latency: Latency | None = None) -> str | None:
    """One line naming the ops XNNPACK left to the builtin kernels (the classifier head aside,
    see :attr:`Delegation.slow_fallback`) and, with ``latency``, what they cost against the
    float model; None if XNNPACK took all of them."""
    if delegation is None or not delegation.slow_fallback:
        return None
    slow = delegation.slow_fallback
    types = delegation.fallback_by_type(slow)
    kinds = ", ".join(f"{count}× {label}" for label, count in types[:6]) + (", …" if len(types) > 6 else "")
    where = (f"XNNPACK takes {len(delegation.delegated)} of its {delegation.total} ops"
             if delegation.applied else "XNNPACK takes none of its ops")
    cost = (f"; measured here, it runs at {latency.ratio:.2f}× its float model's latency ({latency.model_ms:.2f} vs "
            f"{latency.float_ms:.2f} ms, 1 thread)" if latency is not None else "")
    return (f"{source}: {where}; {len(slow)} run on TFLite's slower builtin kernels ({kinds}){cost}: quantization "
            "scales outside XNNPACK's range (e.g. untrained BatchNorm statistics, --weights none) or op types "
            "it takes only in float")


def slow_ops_warning(model: bytes, source: str, float_model: bytes | None = None) -> str | None:
    """:func:`fallback_warning` of a converted full-integer ``model``, timed against
    ``float_model`` (the float model it was quantized from) when ops fall back."""
    delegation = model_delegation(model)
    if delegation is None or not delegation.slow_fallback:
        return None
    latency = measure_against_float(model, float_model) if float_model is not None else None
    return fallback_warning(delegation, source, latency)
