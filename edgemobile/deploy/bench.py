"""Device benchmark of a .tflite model with the runtime install only (no TensorFlow):
latency per (threads, XNNPACK) setting, model size, peak memory, and an optional per-op
breakdown.

Latency: ``warmup`` untimed invokes, then ``runs`` timed ``Interpreter.invoke()`` calls on a
fixed input (random values of the input's dtype; the speed of these models does not depend
on pixel content); median, p90, mean, min and max in milliseconds.

Peak memory: the process' resident-set high-water mark (``VmHWM`` in ``/proc/self/status``)
after loading and running a setting, minus the resident set before loading it. Linux lets a
process reset its high-water mark (``echo 5 > /proc/self/clear_refs``), so each setting is
measured on its own; where that is not possible, ``resource.getrusage`` gives the process
peak (then only the first setting's delta is its own).

Per-op profile: LiteRT's Python API (ai-edge-litert, like tflite_runtime) exposes no op
profiler — the C++ ``benchmark_model --enable_op_profiling`` has one, but no wheel ships it.
So ``profile_ops`` measures each op *in isolation*: one full run with
``experimental_preserve_all_tensors`` records every intermediate tensor, then every op is
cut out into a one-op model (same kernel, weights and quantization, via the TFLite schema's
object API), fed the recorded inputs and timed like the whole model, noting whether XNNPACK
or the builtin kernel ran it. The shares show where time goes; the sum differs from the
whole model by per-invoke overhead and by what the whole graph gains from XNNPACK fusing
and reusing packed data across ops.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import os
import platform
import statistics
import time
from importlib import metadata

import numpy as np

from edgemobile.errors import EdgeMobileError, first_line
from edgemobile.peak_memory import peak_rss_kb, reset_peak_rss, status_kb
from edgemobile.progress import Progress
from edgemobile.runtime.delegation import host_cpu, int8_slower_note, xnnpack_delegation
from edgemobile.runtime.interpreter import (
    TFLiteClassifier,
    builtin_ref_resolver,
    interpreter_backend,
    random_input,
    tensor_inspector,
)
from edgemobile.tflite.model import read_tflite
from edgemobile.tflite.object_api import AlignedBuffer, schema_module

_MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Setting:
    threads: int
    xnnpack: bool

    def label(self) -> str:
        return f"threads={self.threads} xnnpack={'on' if self.xnnpack else 'off'}"


def settings(threads: list[int], xnnpack: list[bool]) -> list[Setting]:
    """Every (threads, xnnpack) combination, in the order given, without duplicates."""
    out: list[Setting] = []
    for x in xnnpack:
        for t in threads:
            if Setting(t, x) not in out:
                out.append(Setting(t, x))
    return out


def benchmark(
    path: str | os.PathLike,
    threads: list[int] = (1,),
    xnnpack: list[bool] = (True,),
    runs: int = 50,
    warmup: int = 5,
    profile: bool = False,
    progress: bool = True,
    reference: str | os.PathLike | None = None,
) -> dict:
    """Benchmark ``path`` under every setting; returns a JSON-ready report. ``reference``
    (e.g. the float model an int8 one was made from) is timed too, setting by setting right
    after ``path``, and the report says where int8 ran slower than float (``speed_note``)."""
    if runs < 1 or warmup < 0:
        raise EdgeMobileError(f"--runs must be >= 1 and --warmup >= 0 (got {runs}, {warmup})")
    data = read_tflite(path)
    reference_data = read_tflite(reference) if reference is not None else None
    backend, _ = interpreter_backend()
    report: dict = {
        "model": str(path),
        "model_size_mb": round(len(data) / 1e6, 3),
        "runtime": backend,
        "runtime_version": _runtime_version(backend),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "runs": runs,
        "warmup": warmup,
        "memory_method": None,
        "settings": [],
    }
    chosen = settings(list(threads), list(xnnpack))
    models = 1 if reference_data is None else 2
    bar = Progress(models * len(chosen) * (runs + warmup), "benchmarking", unit="run") if progress else None
    if reference_data is not None:
        report["reference"] = {"model": str(reference), "model_size_mb": round(len(reference_data) / 1e6, 3),
                               "settings": []}
    sample = None
    for number, setting in enumerate(chosen):
        result, model_info = _bench_setting(data, setting, runs, warmup, bar, first=number == 0)
        report["memory_method"] = result.pop("memory_method")
        report.setdefault("input", model_info)
        report["settings"].append(result)
        if sample is None:
            sample = random_input(model_info)
        if reference_data is not None:
            other, _ = _bench_setting(reference_data, setting, runs, warmup, bar, first=False)
            other.pop("memory_method")
            report["reference"]["settings"].append(other)
    if bar:
        bar.close()
    if reference_data is not None:
        report["speed_note"] = speed_note(report)
    if profile:
        first = chosen[0]
        ops = profile_ops(data, first.threads, first.xnnpack, runs=max(5, min(runs, 20)),
                          warmup=max(1, min(warmup, 3)), sample=sample, progress=progress)
        whole = report["settings"][0]["median_ms"]
        report["profile"] = {
            "setting": dataclasses.asdict(first),
            "method": "each op timed alone as a one-op model on the inputs it sees in a real run",
            "sum_of_ops_ms": round(sum(op["median_ms"] for op in ops if op["median_ms"] is not None), 4),
            "whole_model_median_ms": whole,
            "ops": ops,
            "by_type": _by_type(ops),
        }
    return report


def _time_invokes(invoke, runs: int, warmup: int, tick=None) -> list[float]:
    """Milliseconds of each of ``runs`` timed calls of ``invoke`` after ``warmup`` untimed ones;
    ``tick()`` after every call (progress)."""
    for _ in range(warmup):
        invoke()
        if tick:
            tick()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        invoke()
        times.append((time.perf_counter_ns() - t0) / 1e6)
        if tick:
            tick()
    return times


def _bench_setting(data: bytes, setting: Setting, runs: int, warmup: int, bar, first: bool) -> tuple[dict, dict]:
    gc.collect()
    reset = reset_peak_rss()
    before = status_kb("VmRSS")
    start = time.perf_counter()
    model = TFLiteClassifier(data, num_threads=setting.threads, use_xnnpack=setting.xnnpack,
                             source=f"benchmark ({setting.label()})")
    info = {"dtype": model.input.dtype.name, "shape": list(model.input.shape),
            "output": f"{model.output.dtype.name} {list(model.output.shape)}"}
    model.interpreter.set_tensor(model.input.index, random_input(info))
    model.invoke_only()  # first invoke: delegate preparation and allocation happen here
    load_ms = (time.perf_counter() - start) * 1e3
    delegation = xnnpack_delegation(model.interpreter)  # what XNNPACK took, not what was asked for
    times = _time_invokes(model.invoke_only, runs, warmup, bar.update if bar else None)
    peak, method = peak_rss_kb(reset)
    del model
    gc.collect()
    result = {
        "threads": setting.threads,
        "xnnpack": setting.xnnpack,
        "xnnpack_applied": delegation.applied if delegation else None,
        "xnnpack_ops": len(delegation.delegated) if delegation else None,
        "ops": delegation.total if delegation else None,
        "builtin_ops": dict(delegation.fallback_by_type()) if delegation else None,
        "compute_dtype": delegation.compute_dtype if delegation else None,
        **_stats(times),
        "load_and_first_run_ms": round(load_ms, 2),
        "peak_rss_mb": round(peak / 1024, 1) if peak is not None else None,
        # Without a reset the peak may be an earlier setting's: only the first delta is its own.
        "peak_rss_delta_mb": round((peak - before) / 1024, 1)
        if peak is not None and before is not None and (reset or first) else None,
        "memory_method": method,
    }
    return result, info


def speed_note(report: dict) -> str | None:
    """For an 8-bit model benched with a float ``reference``: the line saying under which
    settings it ran slower than the reference, both timed in this run (None otherwise)."""
    ref = report.get("reference")
    if not ref:
        return None
    timings = [(_label(s), s["median_ms"], r["median_ms"]) for s, r in zip(report["settings"], ref["settings"])
               if s.get("compute_dtype") in ("int8", "uint8") and r.get("compute_dtype") == "float32"]
    return int8_slower_note(timings, host_cpu())


def _label(s: dict) -> str:
    return Setting(s["threads"], s["xnnpack"]).label()


def _stats(times_ms: list[float]) -> dict:
    arr = np.asarray(times_ms, dtype=np.float64)
    return {
        "median_ms": round(float(np.median(arr)), 4),
        "p90_ms": round(float(np.percentile(arr, 90)), 4),
        "mean_ms": round(float(arr.mean()), 4),
        "min_ms": round(float(arr.min()), 4),
        "max_ms": round(float(arr.max()), 4),
    }


# -- per-op profile ------------------------------------------------------------------------
def profile_ops(
    data: bytes,
    threads: int = 1,
    xnnpack: bool = True,
    runs: int = 20,
    warmup: int = 3,
    sample: np.ndarray | None = None,
    progress: bool = True,
) -> list[dict]:
    """Median time of every op of the main subgraph, each run alone (see module doc)."""
    backend, interpreter_cls = interpreter_backend()
    try:
        schema = schema_module()
    except EdgeMobileError:
        raise EdgeMobileError(
            f"--profile cuts ops out with the TFLite schema code of ai-edge-litert, which {backend} "
            "does not ship: pip install ai-edge-litert where it has a wheel (64-bit)"
        ) from None
    reference = TFLiteClassifier(data, source="profile")
    if sample is None:
        sample = random_input({"dtype": reference.input.dtype.name, "shape": list(reference.input.shape)})
    values = _all_tensor_values(data, reference.input.index, sample)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    resolver = {} if xnnpack else {"experimental_op_resolver_type": builtin_ref_resolver(backend)}
    bar = Progress(len(graph.operators or []), "profiling ops", unit="op") if progress else None
    results = []
    for index, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"op{code.builtinCode}")
        if name == "CUSTOM" and code.customCode:
            name = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
        out = graph.tensors[op.outputs[0]] if op.outputs is not None and len(op.outputs) else None
        entry = {"index": index, "op": name,
                 "output_shape": [int(d) for d in out.shape] if out is not None and out.shape is not None else [],
                 "median_ms": None, "kernel": None, "note": None}
        try:
            single, feeds = _single_op_model(schema, model, graph, op)
            interp = interpreter_cls(model_content=single, num_threads=threads, **resolver)
            interp.allocate_tensors()
            delegation = xnnpack_delegation(interp)
            entry["kernel"] = None if delegation is None else "xnnpack" if delegation.applied else "builtin"
            for detail, original in zip(interp.get_input_details(), feeds):
                interp.set_tensor(detail["index"], values[original])
            times = _time_invokes(interp.invoke, runs, warmup)
            entry["median_ms"] = round(statistics.median(times), 4)
            del interp
        except (_NotProfiled, ValueError, RuntimeError, KeyError) as exc:
            entry["note"] = f"not measured alone: {first_line(exc)[:120]}"
        results.append(entry)
        if bar:
            bar.update()
    if bar:
        bar.close()
    total = sum(r["median_ms"] for r in results if r["median_ms"] is not None) or 1.0
    for r in results:
        r["percent"] = round(100.0 * r["median_ms"] / total, 2) if r["median_ms"] is not None else None
    return results


class _NotProfiled(Exception):
    pass


def _all_tensor_values(data, input_index, sample) -> dict[int, np.ndarray]:
    interp = tensor_inspector(data, num_threads=1)
    interp.set_tensor(input_index, sample)
    interp.invoke()
    values = {}
    for detail in interp.get_tensor_details():
        try:
            value = interp.get_tensor(detail["index"])
        except ValueError:  # tensors without data (e.g. optional/unused)
            continue
        if value is not None:
            values[detail["index"]] = np.array(value, copy=True)
    return values


def _single_op_model(schema, model, graph, op) -> tuple[bytes, list[int]]:
    """``op`` alone as a model: its constant inputs kept, the other inputs made model inputs."""
    import flatbuffers

    if op.builtinOptions is not None and any(
        hasattr(op.builtinOptions, attr) for attr in ("condSubgraphIndex", "thenSubgraphIndex", "initSubgraphIndex")
    ):
        raise _NotProfiled("calls other subgraphs")
    buffers = [schema.BufferT()]
    tensors, remap, feeds = [], {}, []

    def add(index: int, is_input: bool) -> int:
        if index < 0:
            return index
        if index in remap:
            return remap[index]
        tensor = copy.copy(graph.tensors[index])
        source = model.buffers[tensor.buffer] if tensor.buffer else None
        constant = source is not None and source.data is not None and len(source.data) > 0
        if constant:
            buffers.append(source)
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
            if is_input:
                feeds.append(index)
        if tensor.isVariable:
            raise _NotProfiled("reads a variable tensor")
        tensors.append(tensor)
        remap[index] = len(tensors) - 1
        return remap[index]

    single_op = copy.copy(op)
    single_op.opcodeIndex = 0
    single_op.inputs = [add(int(i), True) for i in (op.inputs if op.inputs is not None else [])]
    single_op.outputs = [add(int(i), False) for i in (op.outputs if op.outputs is not None else [])]
    if op.intermediates is not None and len(op.intermediates):
        single_op.intermediates = [add(int(i), False) for i in op.intermediates]
    sub = schema.SubGraphT()
    sub.tensors = tensors
    sub.inputs = [remap[i] for i in feeds]
    sub.outputs = list(single_op.outputs)
    sub.operators = [single_op]
    out = schema.ModelT()
    out.version = model.version
    out.operatorCodes = [model.operatorCodes[op.opcodeIndex]]
    out.subgraphs = [sub]
    out.buffers = [AlignedBuffer(schema, b) for b in buffers]
    builder = flatbuffers.Builder(1024)
    builder.Finish(out.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), feeds


def _by_type(ops: list[dict]) -> list[dict]:
    totals: dict[str, list] = {}
    for op in ops:
        if op["median_ms"] is None:
            continue
        entry = totals.setdefault(op["op"], [0, 0.0])
        entry[0] += 1
        entry[1] += op["median_ms"]
    total = sum(t for _, t in totals.values()) or 1.0
    rows = [{"op": name, "count": n, "ms": round(t, 4), "percent": round(100 * t / total, 2)}
            for name, (n, t) in totals.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def _runtime_version(backend: str) -> str | None:
    dist = {"ai-edge-litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
            "tensorflow.lite": "tensorflow"}.get(backend)
    try:
        return metadata.version(dist) if dist else None
    except metadata.PackageNotFoundError:
        return None


# -- text report ---------------------------------------------------------------------------
def format_report(report: dict, top: int = 15) -> str:
    inp = report["input"]
    lines = [
        (f"{report['model']}: {report['model_size_mb']:.2f} MB, input {inp['dtype']} {inp['shape']}, "
         f"output {inp['output']}"),
        (f"runtime {report['runtime']} {report['runtime_version'] or ''} on {report['machine']}; "
         f"{report['runs']} timed runs after {report['warmup']} warm-up"),
        "",
        (f"{'threads':>7}  {'xnnpack':>7}  {'XNNPACK ops':>11}  {'median ms':>9}  {'p90 ms':>8}  {'min ms':>8}  "
         f"{'peak RSS MB':>11}  {'Δ load+run MB':>13}"),
    ]
    for s in report["settings"]:
        peak = f"{s['peak_rss_mb']:.1f}" if s["peak_rss_mb"] is not None else "-"
        delta = f"{s['peak_rss_delta_mb']:.1f}" if s["peak_rss_delta_mb"] is not None else "-"
        taken = f"{s['xnnpack_ops']}/{s['ops']}" if s.get("ops") is not None else "unknown"
        lines.append(f"{s['threads']:>7}  {'on' if s['xnnpack'] else 'off':>7}  {taken:>11}  {s['median_ms']:>9.3f}  "
                     f"{s['p90_ms']:>8.3f}  {s['min_ms']:>8.3f}  {peak:>11}  {delta:>13}")
    ref = report.get("reference")
    if ref:
        lines.append(f"reference {ref['model']} ({ref['model_size_mb']:.2f} MB), timed right after each setting:")
        for s, r in zip(report["settings"], ref["settings"]):
            lines.append(f"  {_label(s)}: {r['median_ms']:.3f} ms median (this model {s['median_ms']:.3f} ms, "
                         f"{s['median_ms'] / r['median_ms']:.2f}×)")
    lines.append(f"memory: {report['memory_method']}")
    requested = [s for s in report["settings"] if s["xnnpack"]]
    if any(s.get("xnnpack_applied") is False for s in requested):
        lines.append("XNNPACK was requested but not applied: every op ran on TFLite's builtin kernels")
    on = next((s for s in requested if s.get("builtin_ops")), None)
    if on:
        lines.append("ops on TFLite's builtin kernels with XNNPACK on: " +
                     ", ".join(f"{count}× {label}" for label, count in on["builtin_ops"].items()))
    if report.get("speed_note"):
        lines.append(report["speed_note"])
    prof = report.get("profile")
    if prof:
        setting = prof["setting"]
        lines += [
            "",
            (f"per-op profile (threads={setting['threads']}, xnnpack={'on' if setting['xnnpack'] else 'off'}; "
             f"each op timed alone): sum {prof['sum_of_ops_ms']:.3f} ms vs whole model "
             f"{prof['whole_model_median_ms']:.3f} ms"),
            f"{'op type':<24} {'count':>5} {'ms':>9} {'%':>6}",
        ]
        for row in prof["by_type"]:
            lines.append(f"{row['op']:<24} {row['count']:>5} {row['ms']:>9.3f} {row['percent']:>6.1f}")
        slowest = sorted((o for o in prof["ops"] if o["median_ms"] is not None), key=lambda o: -o["median_ms"])
        lines += ["", f"slowest {min(top, len(slowest))} ops:",
                  f"{'#':>4} {'op':<24} {'output':<20} {'kernel':<8} {'ms':>9} {'%':>6}"]
        for o in slowest[:top]:
            lines.append(f"{o['index']:>4} {o['op']:<24} {o['output_shape']!s:<20} {o['kernel']:<8} "
                         f"{o['median_ms']:>9.3f} {o['percent']:>6.1f}")
        skipped = [o for o in prof["ops"] if o["median_ms"] is None]
        if skipped:
            lines.append(f"{len(skipped)} op(s) not measured alone: " +
                         "; ".join(f"#{o['index']} {o['op']} ({o['note']})" for o in skipped[:3]))
    return "\n".join(lines)
