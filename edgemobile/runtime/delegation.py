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
import platform
import time
from typing import Sequence

import numpy as np

from edgemobile.runtime.interpreter import interpreter_backend, random_input


@dataclasses.dataclass(frozen=True)
class Op:
    index: int
    name: str  # e.g. "ADD"
    dtype: str  # dtype of its first output, e.g. "int8"
    size: int  # elements of its first output
    io: bool = False  # a QUANTIZE/DEQUANTIZE reading a model input or writing a model output
    scale_ratio: float | None = None  # 8-bit ADD/SUB: its input/output scale ratio furthest outside XNNPACK's range

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
        int32 shape arithmetic), which XNNPACK never takes and which costs next to nothing, and
        the QUANTIZE/DEQUANTIZE of the model's own input and output (uint8 pixels to the int8
        inside: one pass over the image, the price of the I/O type asked for)."""
        return tuple(op for op in self.fallback if op.size > self.head_size and not op.io)

    @property
    def compute_dtype(self) -> str:
        """The dtype the model computes in: its convolutions' (or, without any, most ops') outputs."""
        ops = self.delegated + self.fallback
        convs = [op.dtype for op in ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
        common = collections.Counter(convs or [op.dtype for op in ops]).most_common(1)
        return common[0][0] if common else ""

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
    try:
        details = {int(t["index"]): t for t in interpreter.get_tensor_details()}
        model_io = {int(t["index"]) for t in interpreter.get_input_details() + interpreter.get_output_details()}
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
        inputs = [int(t) for t in node["inputs"] if int(t) >= 0]
        outputs = [int(t) for t in node["outputs"] if int(t) >= 0]
        name = str(node["op_name"])
        io = name in ("QUANTIZE", "DEQUANTIZE") and bool(model_io & set(inputs + outputs))
        ratio = _worst_scale_ratio(details, inputs, outputs[0]) if name in _SCALE_CHECKED and outputs else None
        return Op(int(node["index"]), name, dtype, sizes.get(outputs[0], 0) if outputs else 0, io, ratio)

    return Delegation(
        partitions=len(partitions),
        delegated=tuple(op(n) for n in ops if int(n["index"]) in taken),
        fallback=tuple(op(n) for n in ops if int(n["index"]) not in taken),
        head_size=head,
    )


# XNNPACK's delegate takes an 8-bit ADD/SUB only when every input scale / output scale lies in
# [1/1024, 256) (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc, VisitAddNode/VisitSubNode).
_SCALE_CHECKED = ("ADD", "SUB")
SCALE_RATIO_RANGE = (1 / 1024, 256.0)


def _worst_scale_ratio(details: dict, inputs: list[int], output: int) -> float | None:
    """The input/output scale ratio of an 8-bit ADD/SUB furthest outside XNNPACK's range (None
    when all are inside, or the op is not per-tensor 8-bit)."""
    low, high = SCALE_RATIO_RANGE

    def scale(t: int) -> float | None:
        d = details.get(t)
        if d is None or np.dtype(d["dtype"]).name not in ("int8", "uint8"):
            return None
        return float(d["quantization"][0]) or None

    out = scale(output)
    ratios = [s / out for s in map(scale, inputs) if s is not None and out]
    outside = [r for r in ratios if not low <= r < high]
    return max(outside, key=lambda r: abs(np.log(r))) if outside else None


def model_delegation(model: bytes, num_threads: int = 1) -> Delegation | None:
    """:func:`xnnpack_delegation` of ``model`` loaded with the default delegates (XNNPACK)."""
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
    return f"{source}: {where}; {len(slow)} run on TFLite's slower builtin kernels ({kinds}){cost}: {_causes(slow)}"


def _causes(slow: tuple[Op, ...]) -> str:
    """Why XNNPACK left ``slow`` ops out, as far as the model shows it: the scale ratios it
    refuses (measured on the model's tensors); for the others, only that it did not take them."""
    scaled = [op for op in slow if op.scale_ratio is not None]
    others = len(slow) - len(scaled)
    if not scaled:
        return "XNNPACK does not take these ops at their type"
    worst = max((op.scale_ratio for op in scaled), key=lambda r: abs(np.log(r)))
    low, high = SCALE_RATIO_RANGE
    which = "they have" if not others else f"{len(scaled)} {'has' if len(scaled) == 1 else 'have'}"
    cause = (f"{which} an input/output scale ratio outside "
             f"XNNPACK's [1/{1 / low:.0f}, {high:.0f}) (up to {worst:.3g}: int8 ranges that far apart meet there)")
    return cause + (f"; XNNPACK does not take the other {others} at {'its' if others == 1 else 'their'} type"
                    if others else "")


def speed_report(model: bytes, source: str, float_model: bytes | None = None) -> tuple[list[str], list[str]]:
    """(warnings, notes) on what a converted full-integer ``model`` costs where it was converted:
    a warning naming the ops XNNPACK leaves to the builtin kernels (:func:`fallback_warning`);
    else — XNNPACK took all that matters — a note when it still ran slower than ``float_model``
    (the float model it was quantized from), the two timed side by side (:func:`int8_slower_note`)."""
    delegation = model_delegation(model)
    latency = measure_against_float(model, float_model) if float_model is not None else None
    warning = fallback_warning(delegation, source, latency)
    if warning is not None:
        return [warning], []
    note = int8_slower_note([(f"{source}, 1 thread", latency.model_ms, latency.float_ms)], host_cpu()) \
        if latency is not None else None
    return [], [note] if note else []


# -- int8 against float on this machine ----------------------------------------------------
SLOWER_RATIO = 1.1  # int8 median this much above float's: slower beyond timing noise


@dataclasses.dataclass(frozen=True)
class HostCPU:
    """The CPU timings were taken on: its name, architecture and the vector units that matter
    to XNNPACK's float kernels."""

    name: str
    arch: str  # platform.machine(), e.g. "x86_64", "aarch64"
    float_units: tuple[str, ...] = ()  # e.g. ("AVX-512F", "AVX2", "FMA")

    @property
    def is_x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i686", "i386", "x86")

    def describe(self) -> str:
        units = f" with {', '.join(self.float_units)}" if self.float_units else ""
        return f"{self.name} ({self.arch}{units})"


def cpu_flags() -> set[str]:
    """The feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("flags", "features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_FLOAT_UNITS = (("avx512f", "AVX-512F"), ("avx2", "AVX2"), ("fma", "FMA"), ("asimd", "NEON"), ("sve", "SVE"))


def host_cpu() -> HostCPU:
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh
                         if line.lower().startswith(("model name", "hardware", "cpu model"))), "")
    except OSError:
        pass
    flags = cpu_flags()
    return HostCPU(name or platform.processor() or "this CPU", platform.machine(),
                   tuple(label for flag, label in _FLOAT_UNITS if flag in flags))


def int8_slower_note(timings: Sequence[tuple[str, float | None, float | None]], cpu: HostCPU) -> str | None:
    """One line when an int8 model ran at least :data:`SLOWER_RATIO` × its float model's
    latency, both timed in the same run: ``timings`` are (what, int8 ms, float ms); None when
    none did (or a time is missing). The reason named is the machine's, not a guess about the
    model: on x86 XNNPACK's float kernels run on wide FMA units; ARM, where these models ship,
    is where int8 speed is judged."""
    slower = [(what, q, f) for what, q, f in timings if q is not None and f and q >= SLOWER_RATIO * f]
    if not slower:
        return None
    measured = "; ".join(f"{what + ': ' if what else ''}{q:.2f} vs {f:.2f} ms" for what, q, f in slower)
    if cpu.is_x86:
        why = (f"this CPU, {cpu.describe()}, runs XNNPACK's float kernels on wide vector units, where they match "
               "or beat the int8 kernels; judge int8 speed on the ARM device these models ship to (edgemobile "
               "bench there)")
    else:
        why = (f"measured on {cpu.describe()}; int8 speed depends on the CPU's 8-bit dot-product support: judge "
               "it on the target device (edgemobile bench there)")
    return f"int8 ran slower than float on this machine ({measured}): {why}"
