"""Accuracy and speed of zoo models as float and int8 TFLite, side by side.

:func:`run_report` converts each model to float32 and to int8 (with the chosen quantization
techniques), evaluates both on the same labeled images, compares the int8 model with the
float one (top-1 delta, top-1 agreement, KL, total variation) and times one-thread
``invoke()`` of each with :func:`edgemobile.deploy.bench.benchmark`. With ``ablation`` every
model is converted once per technique configuration — the plain converter, each technique
alone, all of them — to show what each one buys. Results: a Markdown table
(:func:`markdown`), a JSON-ready dict and a PNG plot of top-1 against latency (:func:`plot`).
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

from edgemobile.errors import EdgeMobileError

SPEC_KEYS = ("alpha", "resolution", "weights", "label", "preprocess", "labels")
_RESOLVED: dict = {}  # ModelSpec → (variant, weights): a user model file is loaded once per process


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A zoo model with its settings, ``NAME[:alpha=A,resolution=R,weights=FILE,label=TEXT]``, or
    your Keras model file, ``FILE.keras[:preprocess=P,labels=FILE,label=TEXT]`` — its
    preprocessing and labels resolved as ``convert --model FILE`` does (:mod:`edgemobile.models.user`)."""

    name: str
    alpha: float | None = None
    resolution: int | None = None
    weights: str = "imagenet"
    label: str | None = None
    preprocess: str | None = None  # the rest: a user model file only
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_fraction: float | None = None
    labels: str | None = None
    label_folder: str | None = None  # class-name folders naming its classes when ``labels`` is not given

    @classmethod
    def parse(cls, text: str, **user_flags) -> "ModelSpec":
        """``user_flags`` (preprocess, mean, std, crop_fraction, labels, label_folder): the
        command's flags for a model file; a spec's own keys take precedence, zoo specs ignore them."""
        from edgemobile.models.user import is_model_file

        name, _, rest = text.partition(":")
        if not name.strip():
            raise EdgeMobileError(f"model spec {text!r}: no model name (NAME[:alpha=A,resolution=R,weights=FILE])")
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in SPEC_KEYS:
                raise EdgeMobileError(f"model spec {text!r}: expected key=value with key one of "
                                      f"{', '.join(SPEC_KEYS)}, got {item!r}")
            try:
                values[key] = float(value) if key == "alpha" else int(value) if key == "resolution" else value
            except ValueError:
                raise EdgeMobileError(f"model spec {text!r}: {key} must be a number, got {value!r}") from None
        if is_model_file(name.strip()):
            values = {**{k: v for k, v in user_flags.items() if v is not None}, **values}
        return cls(name=name.strip(), **values)

    def resolved(self):
        """(variant, weights) — a zoo variant and its weights, or a user model's variant and its file."""
        if self not in _RESOLVED:
            from edgemobile.api import resolve_model
            from edgemobile.models.user import is_model_file

            user = is_model_file(self.name)
            weights = None if user and self.weights == "imagenet" else self.weights
            _RESOLVED[self] = resolve_model(self.name, self.alpha, self.resolution, weights, self.preprocess,
                                            self.mean, self.std, self.crop_fraction, self.labels,
                                            self.label_folder if user else None)
        return _RESOLVED[self]

    def variant(self):
        return self.resolved()[0]

    def display(self) -> str:
        return self.label or self.variant().name


def ablation_configs(default) -> list[tuple[str, Any]]:
    """(label, Recipe) rows: the plain converter, each registered technique alone, the model's
    ``default`` recipe, and every technique together when that is not the default (see
    :func:`edgemobile.quantization.techniques.recipe.ablation_recipes`)."""
    from edgemobile.quantization.techniques.recipe import ablation_recipes

    return ablation_recipes(default)


def _predict(model: bytes, name: str, pairs, progress: bool, threads: int = 1, overrides=None) -> np.ndarray:
    from edgemobile.eval.evaluate import run_predictors
    from edgemobile.eval.predictors import TFLitePredictor

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".tflite")  # labels hold "/" ("min/max")
        path.write_bytes(model)
        predictor = TFLitePredictor(path, overrides, num_threads=threads)
        return run_predictors([predictor], [p for p, _ in pairs], progress=progress, desc=f"evaluating {name}")[0]


def _overrides(variant):
    """The variant's preprocessing as flags, for a model made elsewhere (no edgemobile metadata)."""
    from edgemobile.eval.predictors import PreprocessOverrides

    p = variant.preprocess
    return PreprocessOverrides(mean=p.mean, std=p.std, crop_fraction=p.size / p.resize_shorter)


def _latency(model: bytes, runs: int) -> float | None:
    if runs <= 0:
        return None
    from edgemobile.deploy.bench import benchmark

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        report = benchmark(path, threads=[1], xnnpack=[True], runs=runs, warmup=5, progress=False)
    return float(report["settings"][0]["median_ms"])


def convert_model(spec: ModelSpec, calibration=None, config=None, progress: bool = False) -> tuple[bytes, float]:
    """(.tflite bytes, conversion seconds) of ``spec`` as float32 (``config`` None) or int8 with
    the techniques ``config`` — in this process or in a Ray task (``--cluster``)."""
    from edgemobile.quantization.convert import convert_variant

    start = time.perf_counter()
    variant, weights = spec.resolved()
    if config is None:
        return convert_variant(variant, "float32", weights, progress=progress).tflite, time.perf_counter() - start
    result = convert_variant(variant, "int8", weights, calibration, progress=progress, techniques=config)
    return result.tflite, result.seconds


def run_report(specs: list[ModelSpec], data: str | os.PathLike, calibration, options=None, ablation: bool = False,
               limit: int | None = None, seed: int = 0, bench_runs: int = 30, progress: bool = True,
               cluster=None, conversion_memory_gb: float | None = None, peers=()) -> dict:
    """Evaluate every model as float and int8 (or once per ablation configuration).

    ``options``: the int8 techniques, a Recipe (default ``recipe.DEFAULT``). ``cluster``: a
    :class:`edgemobile.eval.cluster.RayCluster` — every conversion becomes a Ray task and every
    eval is sharded over the cluster; latency is still timed here, on one machine. ``peers``:
    (label, quantize) pairs for other quantizers, ``quantize(variant, weights, images)`` → an
    int8 .tflite (no metadata needed) of the same float model, calibrated on the same images
    (normalized), evaluated like edgemobile's own rows with the variant's preprocessing (e.g.
    ``tools/accuracy_table.py``'s litert-quantizer rows); they run on this machine. A peer
    that refuses a model raises EdgeMobileError: its row carries the message (``error``)."""
    from edgemobile.data.datasets import labeled_images, limit_pairs
    from edgemobile.eval.evaluate import topk_accuracy
    from edgemobile.quantization.techniques.recipe import DEFAULT

    options = options or DEFAULT
    configs = ablation_configs(options) if ablation else [(options.label(), options)]
    pairs = labeled_images(data, _common_classes(specs))
    pairs = limit_pairs(pairs, data, limit, seed)
    labels = np.array([label for _, label in pairs])
    jobs = [(k, label, config) for k in range(len(specs)) for label, config in [("float", None)] + configs]
    if cluster is not None:
        from edgemobile.eval.cluster import DEFAULT_CONVERSION_MEMORY_GB, run_report_jobs

        done = run_report_jobs(cluster, convert_model, specs, jobs, calibration, [p for p, _ in pairs],
                               conversion_memory_gb or DEFAULT_CONVERSION_MEMORY_GB, progress)
        outcome = done.__getitem__
    else:
        def outcome(job):
            k, label, config = job
            model, seconds = convert_model(specs[k], calibration, config, progress)
            precision = "float32" if config is None else "int8"
            return model, seconds, _predict(model, f"{specs[k].variant().name} {precision}", pairs, progress)
    last_job_of = {job[0]: job for job in jobs}  # a model's peer rows follow its own
    rows = []
    for job in jobs:
        k, label, config = job
        spec = specs[k]
        variant, weights = spec.resolved()
        base = {"model": spec.display(), "zoo": variant.name, "weights": str(weights)}
        model, seconds, probs = outcome(job)
        if config is None:
            float_probs = probs
            rows.append(dict(base, config="float", precision="float32", techniques=None,
                             top1=topk_accuracy(probs, labels, 1), top5=topk_accuracy(probs, labels, 5),
                             size_mb=len(model) / 1e6, latency_ms=_latency(model, bench_runs),
                             conversion_seconds=round(seconds, 1)))
        else:
            rows.append(dict(base, config=label, techniques=config.as_dict(),
                             **_int8_row(model, probs, float_probs, labels, seconds, bench_runs)))
        if job != last_job_of[k]:
            continue
        images = None
        for peer_label, quantize in peers:
            if images is None:
                from edgemobile.quantization.pipeline import load_images

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
        "rows": rows,
    }


def _common_classes(specs: list[ModelSpec]):
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
    """An int8 model's columns: accuracy, its comparison with the float model, size, cost."""
    from edgemobile.eval.evaluate import compare, topk_accuracy

    c = compare(probs, float_probs, labels)
    return dict(precision="int8", skipped=_skipped(tflite), top1=topk_accuracy(probs, labels, 1), top5=topk_accuracy(probs, labels, 5),
                top1_drop=-c.top1_delta, top5_drop=-c.top5_delta, agreement=c.top1_agreement,
                kl=c.mean_kl, total_variation=c.mean_total_variation,
                size_mb=len(tflite) / 1e6, latency_ms=_latency(tflite, bench_runs),
                conversion_seconds=round(seconds, 1))


def _skipped(tflite: bytes) -> list[str]:
    """What the int8 techniques left alone in this model (its provenance), one line each."""
    from edgemobile.metadata import read_metadata

    info = read_metadata(tflite)
    provenance = (info.extra or {}).get("provenance") or {} if info is not None else {}
    return list((provenance.get("quantization") or {}).get("skipped", []))


def _num(value, fmt: str = ".2f", signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+{fmt}}" if signed else f"{value:{fmt}}"


def markdown(result: dict) -> str:
    """The result as a Markdown table: per model a float row and its int8 row(s)."""
    if result["ablation"]:
        header = ["model", "configuration", "top-1", "top-5", "top-1 drop", "agreement %", "KL", "convert s"]
        lines = _md_row(header) + [_md_row(["---"] * len(header))[0]]
        for r in result["rows"]:
            int8 = r["precision"] == "int8"
            if r.get("error"):
                lines += _md_row([r["model"], f"{r['config']}: refused ({r['error'].replace('|', '/')})"] + ["-"] * 6)
                continue
            lines += _md_row([r["model"], r["config"] if int8 else "float32", _num(r["top1"]), _num(r["top5"]),
                              _num(r.get("top1_drop"), ".2f", True) if int8 else "",
                              _num(r.get("agreement")) if int8 else "", _num(r.get("kl"), ".3f") if int8 else "",
                              _num(r["conversion_seconds"], ".0f") if int8 else ""])
    else:
        header = ["model", "top-1 float", "top-1 int8", "drop", "top-5 float", "top-5 int8", "agreement %",
                  "KL", "size float / int8 MB", "latency float / int8 ms"]
        lines = _md_row(header) + [_md_row(["---"] * len(header))[0]]
        for f, q in _pairs(result["rows"]):
            lines += _md_row([f["model"], _num(f["top1"]), _num(q["top1"]), _num(q["top1_drop"], ".2f", True),
                              _num(f["top5"]), _num(q["top5"]), _num(q["agreement"]), _num(q["kl"], ".3f"),
                              f"{f['size_mb']:.2f} / {q['size_mb']:.2f}",
                              f"{_num(f['latency_ms'])} / {_num(q['latency_ms'])}"])
    notes = [f"{result['images']} images from {result['data']}"]
    if result.get("calibration"):
        notes.append(f"calibration: {result['calibration']['images']} images from {result['calibration']['source']}")
    if result.get("latency") and not result["ablation"]:
        notes.append(f"latency: {result['latency']}")
    skipped = {f"{r['model']}: {note}" for r in result["rows"] for note in r.get("skipped") or []}
    techniques = "".join(f"- int8 techniques skipped {line}\n" for line in sorted(skipped))
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n" + (f"\n{techniques}" if techniques else "")


def _md_row(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(str(c) for c in cells) + " |"]


def _pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    out, current = [], None
    for r in rows:
        if r["precision"] == "float32":
            current = r
        elif current is not None and not r.get("error"):
            out.append((current, r))
    return out


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
    ax.set_xlabel("latency, ms (1 thread, XNNPACK)")
    ax.set_ylabel(f"top-1 % ({result['images']} images)")
    ax.set_title("top-1 vs latency: float32 (o) and int8 (s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
