"""Accuracy and speed of zoo models as float and int8 TFLite, side by side.

:func:`run_report` converts each model to float32 and to int8 (with the chosen quantization
techniques), evaluates both on the same labeled images, compares the int8 model with the
float one (top-1 delta, top-1 agreement, KL, total variation) and times one-thread
``invoke()`` of each with :func:`edgemobile.deploy.bench.benchmark`. With ``ablation`` every
model is converted once per technique configuration — the plain converter, each technique
alone, all of them — to show what each one buys. Results: a Markdown table
(:func:`markdown`), a JSON-ready dict and a PNG plot of top-1 against latency (:func:`plot`).

With an accuracy target (:class:`~edgemobile.quantization.target.Target`) each model's int8
conversion is the fastest candidate that meets it; every model's candidates go into the
result (its int8 row's ``candidates``), the Markdown (one table per model) and a Pareto plot
of held-apart agreement against latency (:func:`candidates_plot`). A model no candidate
brings to the target keeps its float row; its int8 row has the one-line ``error`` instead.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgemobile.data.datasets import labeled_images, limit_pairs
from edgemobile.deploy.bench import benchmark
from edgemobile.errors import EdgeMobileError
from edgemobile.eval.cluster import DEFAULT_CONVERSION_MEMORY_GB, run_report_jobs
from edgemobile.eval.evaluate import accuracy_figures, compare, format_interval, format_p, run_predictors
from edgemobile.eval.predictors import PreprocessOverrides, TFLitePredictor
from edgemobile.metadata import read_metadata
from edgemobile.networks.request import ModelRequest
from edgemobile.quantization.convert import convert_variant
from edgemobile.quantization.pipeline import load_images
from edgemobile.quantization.target import Target, TargetMissed, markdown_table
from edgemobile.quantization.techniques.recipe import DEFAULT, ablation_recipes
from edgemobile.runtime.delegation import host_cpu, int8_slower_note

REPORT_FILES = ("report.md", "report.json", "report.png", "report_candidates.png")
_RESOLVED: dict = {}  # ModelSpec → (variant, weights): a user model file is loaded once per process


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One ``report --model`` row: a :class:`~edgemobile.networks.request.ModelRequest` (a zoo
    model with its settings, or your Keras model file with its preprocessing and labels) and
    the ``label`` its rows carry (default: the model's name)."""

    request: ModelRequest
    label: str | None = None

    @classmethod
    def parse(cls, text: str, **user_flags) -> "ModelSpec":
        """``NAME[:alpha=A,resolution=R,weights=FILE,label=TEXT]`` or
        ``FILE.keras[:preprocess=P,labels=FILE,label=TEXT]``; ``user_flags``: the command's
        flags for a model file (see :meth:`ModelRequest.parse`)."""
        return cls(*ModelRequest.parse(text, **user_flags))

    @property
    def name(self) -> str:
        return self.request.name

    def resolved(self):
        """(variant, weights) — a zoo variant and its weights, or a user model's variant and its file."""
        if self not in _RESOLVED:
            _RESOLVED[self] = self.request.resolve()
        return _RESOLVED[self]

    def fetch_weights(self) -> None:
        """A zoo model's weights file, downloaded (once) now, so that errors name the spec key."""
        if self.request.is_zoo_name:
            variant, weights = self.resolved()
            variant.weights_path(weights, f"{self.name}:weights=FILE")

    def variant(self):
        return self.resolved()[0]

    def display(self) -> str:
        return self.label or self.variant().name


def ablation_configs(default) -> list[tuple[str, Any]]:
    """(label, Recipe) rows: the plain converter, each registered technique alone, the model's
    ``default`` recipe, and every technique together when that is not the default (see
    :func:`edgemobile.quantization.techniques.recipe.ablation_recipes`)."""
    return ablation_recipes(default)


def _predict(model: bytes, name: str, pairs, progress: bool, threads: int = 1, overrides=None) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".tflite")  # labels hold "/" ("min/max")
        path.write_bytes(model)
        predictor = TFLitePredictor(path, overrides, num_threads=threads)
        return run_predictors([predictor], [p for p, _ in pairs], progress=progress, desc=f"evaluating {name}")[0]


def _overrides(variant):
    """The variant's preprocessing as flags, for a model made elsewhere (no edgemobile metadata)."""
    p = variant.preprocess
    return PreprocessOverrides(mean=p.mean, std=p.std, crop_fraction=p.size / p.resize_shorter)


def _latency(model: bytes, runs: int) -> float | None:
    if runs <= 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        report = benchmark(path, threads=[1], xnnpack=[True], runs=runs, warmup=5, progress=False)
    return float(report["settings"][0]["median_ms"])


@dataclasses.dataclass(frozen=True)
class ReportConversion:
    """One conversion of a report, as plain data (it comes back from a Ray task with
    ``--cluster``): the .tflite (None: no candidate met the accuracy target), its conversion
    seconds and, with a target, the candidates (:meth:`~edgemobile.quantization.target.Search.as_dict`)
    and the one-line error of a missed target."""

    tflite: bytes | None
    seconds: float
    candidates: dict | None = None
    error: str | None = None


def convert_model(spec: ModelSpec, calibration=None, config=None, progress: bool = False,
                  target: Target | None = None) -> ReportConversion:
    """``spec`` as float32 (``config`` None) or int8 with the techniques ``config`` (and
    ``target``, an accuracy target) — in this process or in a Ray task (``--cluster``)."""
    start = time.perf_counter()
    variant, weights = spec.resolved()
    if config is None:
        return ReportConversion(convert_variant(variant, "float32", weights, progress=progress).tflite,
                                time.perf_counter() - start)
    try:
        result = convert_variant(variant, "int8", weights, calibration, progress=progress, techniques=config,
                                 target=target)
    except TargetMissed as missed:  # the model's row says so; the report goes on
        return ReportConversion(None, time.perf_counter() - start, missed.search.as_dict(), str(missed))
    return ReportConversion(result.tflite, result.seconds, result.search.as_dict() if result.search else None)


def run_report(specs: list[ModelSpec], data: str | os.PathLike, calibration, options=None, ablation: bool = False,
               limit: int | None = None, seed: int = 0, bench_runs: int = 30, progress: bool = True,
               cluster=None, conversion_memory_gb: float | None = None, peers=(),
               target: Target | None = None) -> dict:
    """Evaluate every model as float and int8 (or once per ablation configuration).

    ``options``: the int8 techniques, a Recipe (default ``recipe.DEFAULT``). ``target``: an
    accuracy target each int8 conversion is made to (module docstring). ``cluster``: a
    :class:`edgemobile.eval.cluster.RayCluster` — every conversion becomes a Ray task and every
    eval is sharded over the cluster; latency is still timed here, on one machine. ``peers``:
    (label, quantize) pairs for other quantizers, ``quantize(variant, weights, images)`` → an
    int8 .tflite (no metadata needed) of the same float model, calibrated on the same images
    (normalized), evaluated like edgemobile's own rows with the variant's preprocessing (e.g.
    ``tools/accuracy_table.py``'s litert-quantizer rows); they run on this machine. A peer
    that refuses a model raises EdgeMobileError: its row carries the message (``error``)."""
    options = options or DEFAULT
    configs = ablation_configs(options) if ablation else [(options.label(), options)]
    pairs = labeled_images(data, common_classes(specs))
    pairs = limit_pairs(pairs, data, limit, seed)
    labels = np.array([label for _, label in pairs])
    jobs = [(k, label, config) for k in range(len(specs)) for label, config in [("float", None)] + configs]
    if cluster is not None:
        done = run_report_jobs(cluster, convert_model, specs, jobs, calibration, [p for p, _ in pairs],
                               conversion_memory_gb or DEFAULT_CONVERSION_MEMORY_GB, progress, target=target)
        outcome = done.__getitem__
    else:
        def outcome(job):
            k, label, config = job
            converted = convert_model(specs[k], calibration, config, progress, target)
            if converted.tflite is None:
                return converted, None
            precision = "float32" if config is None else "int8"
            return converted, _predict(converted.tflite, f"{specs[k].variant().name} {precision}", pairs, progress)
    last_job_of = {job[0]: job for job in jobs}  # a model's peer rows follow its own
    rows = []
    for job in jobs:
        k, label, config = job
        spec = specs[k]
        variant, weights = spec.resolved()
        base = {"model": spec.display(), "zoo": variant.name, "weights": str(weights)}
        converted, probs = outcome(job)
        model, seconds = converted.tflite, converted.seconds
        if config is None:
            float_probs = probs
            rows.append(dict(base, config="float", precision="float32", techniques=None,
                             **accuracy_figures(probs, labels), size_mb=len(model) / 1e6,
                             latency_ms=_latency(model, bench_runs), conversion_seconds=round(seconds, 1)))
        elif model is None:  # no candidate met the target
            rows.append(dict(base, config=label, techniques=config.as_dict(), precision="int8",
                             error=converted.error, candidates=converted.candidates))
        else:
            rows.append(dict(base, config=label, techniques=config.as_dict(),
                             **_int8_row(model, probs, float_probs, labels, seconds, bench_runs),
                             **({"candidates": converted.candidates} if converted.candidates else {})))
        if job != last_job_of[k]:
            continue
        images = None
        for peer_label, quantize in peers:
            if images is None:
                images = load_images(calibration.paths, variant.preprocess, progress)
            start = time.perf_counter()
            try:
                tflite = quantize(variant, weights, images)
            except EdgeMobileError as refused:  # one model the peer can't quantize: say so, go on
                rows.append(dict(base, config=peer_label, techniques=None, precision="int8", error=str(refused)))
                continue
            seconds = time.perf_counter() - start
            probs = _predict(tflite, f"{variant.name} {peer_label}", pairs, progress, overrides=_overrides(variant))
            rows.append(dict(base, config=peer_label, techniques=None,
                             **_int8_row(tflite, probs, float_probs, labels, seconds, bench_runs)))
        del images
    return {
        "data": str(data),
        "images": int(len(pairs)),
        "calibration": calibration.describe() if calibration is not None else None,
        "ablation": ablation,
        "latency": f"median of {bench_runs} one-thread invokes, XNNPACK on" if bench_runs > 0 else None,
        "machine": host_cpu().describe(),
        "speed_note": _speed_note(rows, ablation),
        "target": target.as_dict() if target is not None else None,
        "rows": rows,
    }


def _speed_note(rows: list[dict], ablation: bool) -> str | None:
    """The line saying where int8 timed slower than float in this run (None where none did)."""
    timings = [(f"{q['model']} ({q['config']})" if ablation else q["model"], q["latency_ms"], f["latency_ms"])
               for f, q in _pairs(rows)]
    return int8_slower_note(timings, host_cpu())


def common_classes(specs: list[ModelSpec]):
    """The one class list every model is evaluated with (the report compares them on the same images)."""
    classes = [spec.variant().classes for spec in specs]
    for spec, other in zip(specs[1:], classes[1:]):
        if tuple(other.names) != tuple(classes[0].names):
            raise EdgeMobileError(
                f"report compares models on the same images, but {spec.display()} has {len(other)} classes "
                f"({', '.join(other.names[:5])}{', …' if len(other) > 5 else ''}) and {specs[0].display()} has "
                f"{len(classes[0])} ({', '.join(classes[0].names[:5])}{', …' if len(classes[0]) > 5 else ''}); "
                "report them separately")
    return classes[0]


def _int8_row(tflite: bytes, probs, float_probs, labels, seconds: float, bench_runs: int) -> dict:
    """An int8 model's columns: accuracy, its comparison with the float model, size, cost. The
    intervals are those of eval's (the drop's is the top-1 delta's, negated)."""
    c = compare(probs, float_probs, labels)
    return dict(precision="int8", skipped=_skipped(tflite), **accuracy_figures(probs, labels),
                top1_drop=-c.top1_delta,
                top1_drop_ci95=[0.0 - c.top1_delta_ci95[1], 0.0 - c.top1_delta_ci95[0]],  # 0.0 - x: never -0.0
                mcnemar_p=c.mcnemar_p, top1_only_int8=c.top1_only_model, top1_only_float=c.top1_only_reference,
                top5_drop=-c.top5_delta, agreement=c.top1_agreement, agreement_ci95=c.top1_agreement_ci95,
                kl=c.mean_kl, total_variation=c.mean_total_variation,
                size_mb=len(tflite) / 1e6, latency_ms=_latency(tflite, bench_runs),
                conversion_seconds=round(seconds, 1))


def _skipped(tflite: bytes) -> list[str]:
    """What the int8 techniques left alone in this model (its provenance), one line each."""
    info = read_metadata(tflite)
    provenance = (info.extra or {}).get("provenance") or {} if info is not None else {}
    return list((provenance.get("quantization") or {}).get("skipped", []))


def _num(value, fmt: str = ".2f", signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+{fmt}}" if signed else f"{value:{fmt}}"


def _ci(row: dict, key: str, signed: bool = False) -> str:
    """A figure and its 95 % interval, ``54.69 [45.9, 63.2]`` (the figure alone in a report
    written before intervals)."""
    interval = row.get(f"{key}_ci95")
    return _num(row.get(key), ".2f", signed) + (f" {format_interval(interval, signed)}" if interval else "")


def _p(row: dict) -> str:
    return "-" if row.get("mcnemar_p") is None else format_p(row["mcnemar_p"])


def markdown(result: dict) -> str:
    """The result as a Markdown table: per model a float row and its int8 row(s)."""
    if result["ablation"]:
        header = ["model", "configuration", "top-1", "top-5", "top-1 drop", "McNemar p", "agreement %", "KL",
                  "convert s"]
        lines = _md_row(header) + [_md_row(["---"] * len(header))[0]]
        for r in result["rows"]:
            int8 = r["precision"] == "int8"
            if r.get("error"):
                lines += _md_row([r["model"], f"{r['config']}: refused ({r['error'].replace('|', '/')})"]
                                 + ["-"] * (len(header) - 2))
                continue
            lines += _md_row([r["model"], r["config"] if int8 else "float32", _ci(r, "top1"), _num(r["top5"]),
                              _ci(r, "top1_drop", True) if int8 else "", _p(r) if int8 else "",
                              _ci(r, "agreement") if int8 else "", _num(r.get("kl"), ".3f") if int8 else "",
                              _num(r["conversion_seconds"], ".0f") if int8 else ""])
    else:
        header = ["model", "top-1 float", "top-1 int8", "drop", "McNemar p", "top-5 float", "top-5 int8",
                  "agreement %", "KL", "size float / int8 MB", "latency float / int8 ms"]
        lines = _md_row(header) + [_md_row(["---"] * len(header))[0]]
        for f, q in _pairs(result["rows"], errors=True):
            if q.get("error"):  # no int8 model (a missed target, a peer's refusal): the line under the table says why
                lines += _md_row([f["model"], _ci(f, "top1"), "-", "-", "-", _num(f["top5"]), "-", "-", "-",
                                  f"{f['size_mb']:.2f} / -", f"{_num(f['latency_ms'])} / -"])
                continue
            lines += _md_row([f["model"], _ci(f, "top1"), _ci(q, "top1"), _ci(q, "top1_drop", True), _p(q),
                              _num(f["top5"]), _num(q["top5"]), _ci(q, "agreement"), _num(q["kl"], ".3f"),
                              f"{f['size_mb']:.2f} / {q['size_mb']:.2f}",
                              f"{_num(f['latency_ms'])} / {_num(q['latency_ms'])}"])
    notes = [f"{result['images']} images from {result['data']} (one image is {100 / result['images']:.2g} pt)"]
    if result.get("calibration"):
        notes.append(f"calibration: {result['calibration']['images']} images from {result['calibration']['source']}")
    if result.get("latency") and not result["ablation"]:
        notes.append(f"latency: {result['latency']}" + (f" on {result['machine']}" if result.get("machine") else ""))
    notes.append("[low, high]: 95 % intervals (Wilson; the drop's: Newcombe's for paired data); McNemar p: exact "
                 "test of the top-1 drop on these images, p >= 0.05: not significant, within their noise; both "
                 "models saw the same images, so judge int8 against float by the drop's interval, narrower than "
                 "the two top-1 intervals suggest")
    skipped = {f"{r['model']}: {note}" for r in result["rows"] for note in r.get("skipped") or []}
    techniques = "".join(f"- int8 techniques skipped {line}\n" for line in sorted(skipped))
    if not result["ablation"]:  # the ablation table has the errors in its rows
        techniques += "".join(f"- {r['model']}, no int8 model ({r['config']}): {r['error']}\n"
                              for r in result["rows"] if r.get("error"))
    speed = f"\n{result['speed_note']}.\n" if result.get("speed_note") else ""
    searches = "".join(f"\n**{_series_label(r, result['ablation'])}** — {markdown_table(r['candidates'])}\n"
                       for r in result["rows"] if r.get("candidates"))
    return ("\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n" + speed + (f"\n{techniques}" if techniques else "")
            + searches)


def _series_label(row: dict, ablation: bool) -> str:
    """An int8 row's name in the candidates tables and plot: the model (and configuration)."""
    return f"{row['model']} ({row['config']})" if ablation else row["model"]


def _md_row(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(str(c) for c in cells) + " |"]


def _pairs(rows: list[dict], errors: bool = False) -> list[tuple[dict, dict]]:
    """(float row, int8 row) per int8 row; rows without an int8 model (``error``) only with ``errors``."""
    out, current = [], None
    for r in rows:
        if r["precision"] == "float32":
            current = r
        elif current is not None and (errors or not r.get("error")):
            out.append((current, r))
    return out


def plottable(result: dict) -> bool:
    """Whether :func:`plot` has points: latency was timed and some model has an int8 model."""
    return bool(result.get("latency")) and bool(_pairs(result["rows"]))


def plot(result: dict) -> bytes:
    """PNG: top-1 against one-thread latency, float (circles) and int8 (squares) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    pairs = _pairs(result["rows"])
    if not pairs or any(p[0]["latency_ms"] is None for p in pairs):
        plt.close(fig)
        raise EdgeMobileError("no latency measured (bench runs 0): nothing to plot")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (f, q) in enumerate(pairs):
        color = colors[k % len(colors)]
        ax.plot([f["latency_ms"], q["latency_ms"]], [f["top1"], q["top1"]], color=color, lw=1, alpha=0.6)
        ax.scatter([f["latency_ms"]], [f["top1"]], color=color, marker="o", label=f"{f['model']} float32")
        ax.scatter([q["latency_ms"]], [q["top1"]], color=color, marker="s",
                   label=f"{q['model']} int8" + (f" ({q['config']})" if result["ablation"] else ""))
        for r in (f, q):
            if r.get("top1_ci95"):  # a report written before intervals has none
                low, high = r["top1_ci95"]
                ax.errorbar([r["latency_ms"]], [r["top1"]], yerr=[[r["top1"] - low], [high - r["top1"]]],
                            fmt="none", ecolor=color, elinewidth=1, capsize=3, alpha=0.6)
    ax.set_xlabel("latency, ms (1 thread, XNNPACK)")
    ax.set_ylabel(f"top-1 % ({result['images']} images; bars: 95 % interval)")
    ax.set_title("top-1 vs latency: float32 (o) and int8 (s)")
    return _png(fig, ax)


def _png(fig, ax) -> bytes:
    """The figure with a grid and a legend, as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def pareto_front(points) -> list[int]:
    """Indices of the ``(latency, agreement)`` points no other point beats on both — at most as
    slow and at least as agreeing, better in one — fastest first."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(u <= x and v >= y and (u < x or v > y) for u, v in points)]
    return sorted(front, key=lambda i: points[i])


def candidates_plot(result: dict) -> bytes:
    """PNG: every accuracy-target candidate's held-apart agreement against its one-thread
    XNNPACK latency (bars: 95 % interval), a colour and marker per model, each model's Pareto
    front joined, the chosen candidate ringed, the float model's latency dotted, the target
    dashed. Refused candidates (no latency) are left out, and the legend says how many."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    searched = [r for r in result["rows"] if r.get("candidates")]
    if not searched:
        raise EdgeMobileError("no accuracy-target candidates in this report: nothing to plot")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    target = Target.from_dict(searched[0]["candidates"]["target"])  # the report's one target
    for k, row in enumerate(searched):
        search, color, marker = row["candidates"], colors[k % len(colors)], markers[k % len(markers)]
        timed = [c for c in search["candidates"] if c["latency_ms"] is not None]
        refused = len(search["candidates"]) - len(timed)
        x = [c["latency_ms"] for c in timed]
        y = [100 * c["agreement"] for c in timed]
        low = [100 * c["agreement_ci95"][0] for c in timed]
        high = [100 * c["agreement_ci95"][1] for c in timed]
        label = _series_label(row, result["ablation"]) + ("" if search["chosen"] else ": target missed") + \
            (f" ({refused} refused by XNNPACK, not shown)" if refused else "")
        ax.errorbar(x, y, yerr=[[a - b for a, b in zip(y, low)], [b - a for a, b in zip(y, high)]], fmt=marker,
                    color=color, ecolor=color, elinewidth=1, capsize=3, alpha=0.85, label=label)
        front = pareto_front(list(zip(x, y)))
        ax.plot([x[i] for i in front], [y[i] for i in front], color=color, lw=1.2)
        for c, cx, cy in zip(timed, x, y):
            if c["name"] == search["chosen"]:
                ax.scatter([cx], [cy], s=260, facecolors="none", edgecolors=color, linewidths=1.6, zorder=3)
        ax.axvline(float(np.median([c["float_latency_ms"] for c in timed])), color=color, ls=":", lw=1,
                   label=f"{_series_label(row, result['ablation'])} float32 (timed alongside, median)")
    if target.min_agreement is not None:
        ax.axhline(100 * target.min_agreement, color="0.3", ls="--", lw=1,
                   label=f"target: agreement ≥ {100 * target.min_agreement:g} %")
    if any(row["candidates"]["chosen"] for row in searched):
        ax.scatter([], [], s=160, facecolors="none", edgecolors="0.3", linewidths=1.6, label="chosen (ringed)")
    ax.set_xlabel("latency, ms (1 thread, XNNPACK)")
    ax.set_ylabel(f"agreement with float, % ({searched[0]['candidates']['images']} held-apart images)")
    ax.set_title(f"accuracy-target candidates ({target.describe()}); lines: Pareto fronts; bars: 95 % interval",
                 fontsize=8)
    return _png(fig, ax)
