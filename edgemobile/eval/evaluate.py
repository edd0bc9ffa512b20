"""Top-1/top-5 of one or more predictors on the same images, and how far apart they are.

Each image is decoded once and prepared by every predictor's own spec; decoding runs in a
thread pool ahead of inference (see :mod:`edgemobile.data.prefetch`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edgemobile.data.prefetch import prefetch_map
from edgemobile.data.preprocessing import load_rgb
from edgemobile.errors import BadImageError, EdgeMobileError
from edgemobile.intervals import mcnemar, paired_difference, wilson
from edgemobile.progress import Progress

_EPS = 1e-7


@dataclasses.dataclass
class Accuracy:
    name: str
    top1: float
    top5: float
    images: int
    details: dict
    top1_ci95: list[float]  # [low, high] %, 95 % Wilson interval
    top5_ci95: list[float]

    @classmethod
    def measure(cls, name: str, probs: np.ndarray, labels: np.ndarray, details: dict) -> "Accuracy":
        return cls(name, images=len(labels), details=details, **accuracy_figures(probs, labels))

    def as_dict(self) -> dict:
        return {"name": self.name, "top1": self.top1, "top5": self.top5, "images": self.images,
                "top1_ci95": self.top1_ci95, "top5_ci95": self.top5_ci95, **self.details}


@dataclasses.dataclass
class Comparison:
    """How a model's outputs differ from a reference's on the same images."""

    top1_delta: float
    top5_delta: float
    top1_agreement: float
    mean_kl: float  # KL(reference ‖ model), nats, averaged over images
    mean_total_variation: float  # ½‖p − q‖₁, averaged over images
    top1_agreement_ci95: list[float]  # % (Wilson)
    top1_delta_ci95: list[float]  # points (Newcombe's paired interval)
    mcnemar_p: float  # exact McNemar test of the top-1 delta
    top1_only_model: int  # images only the model gets right (top-1)
    top1_only_reference: int  # images only the reference gets right

    @property
    def significant(self) -> bool:
        """The top-1 difference is more than these images' noise (McNemar p < 0.05)."""
        return self.mcnemar_p < 0.05

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EvalResult:
    data: str
    accuracies: list[Accuracy]
    comparison: Comparison | None
    seconds: float
    images_per_second: float
    skipped: list[dict] = dataclasses.field(default_factory=list)  # undecodable images left out: image, error
    evaluated: list[tuple[Path, int]] = dataclasses.field(default_factory=list, repr=False)  # (image, label), in order

    def as_dict(self) -> dict:
        result = {
            "data": self.data,
            "images": self.accuracies[0].images,
            "model": self.accuracies[0].as_dict(),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 2),
        }
        if len(self.accuracies) > 1:
            result["reference"] = self.accuracies[1].as_dict()
            result["comparison"] = self.comparison.as_dict() if self.comparison else None
        if self.skipped:
            result["skipped_images"] = self.skipped
            result["note"] = (f"metrics are over the {self.accuracies[0].images} images evaluated; "
                              f"{len(self.skipped)} undecodable images were skipped")
        return result


def _check_classes(predictors: Sequence) -> None:
    first = predictors[0].classes
    for p in predictors[1:]:
        if len(p.classes) != len(first):
            raise EdgeMobileError(
                f"{p.name} has {len(p.classes)} classes but {predictors[0].name} has {len(first)}; "
                "they cannot be compared on the same labels"
            )


def decode_or_skip(item, skipped: list | None, index: int):
    """Decode ``item`` — an image path, or a ``(path, encoded bytes)`` pair already read (cluster
    shards that ship the data). An undecodable image raises :class:`BadImageError`, or — when
    ``skipped`` is a list — is recorded there as ``(index, path, reason)`` and gives None."""
    path, data = item if isinstance(item, tuple) else (item, None)
    try:
        return load_rgb(path, data)
    except EdgeMobileError as exc:
        if skipped is None:
            raise BadImageError(str(exc)) from None
        skipped.append((index, Path(path), str(exc)))
        return None


def run_predictors(predictors: Sequence, items: Sequence, batch_size: int = 16, progress: bool = True,
                   desc: str = "evaluating", workers: int | None = None,
                   skipped: list | None = None) -> list[np.ndarray]:
    """Probabilities of every predictor for every image, shape (images, classes) each.

    An item is an image path or a ``(path, encoded bytes)`` pair (see :func:`decode_or_skip`).
    An undecodable image stops the run (:class:`BadImageError`) unless ``skipped`` is a list:
    then it is left out of the outputs and recorded there."""

    def prepare(item: tuple[int, object]) -> list[np.ndarray] | None:
        # Decode once; crop once per distinct spec; encode per predictor — all off the
        # inference thread.
        image = decode_or_skip(item[1], skipped, item[0])
        if image is None:
            return None
        crops: dict = {}
        for p in predictors:
            if p.spec not in crops:
                crops[p.spec] = p.spec.crop_pixels(image)
        return [p.prepare(crops[p.spec]) for p in predictors]

    outputs: list[list[np.ndarray]] = [[] for _ in predictors]
    bar = Progress(len(items), desc) if progress else None
    pending: list[list[np.ndarray]] = []

    def flush() -> None:
        for k, predictor in enumerate(predictors):
            outputs[k].append(predictor.predict(np.stack([row[k] for row in pending])))
        if bar:
            bar.update(len(pending))
        pending.clear()

    for row in prefetch_map(prepare, enumerate(items), workers=workers, depth=4 * batch_size):
        if row is None:
            if bar:
                bar.update(1)
            continue
        pending.append(row)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if bar:
        bar.close()
    return [np.concatenate(o) if o else np.zeros((0, len(p.classes)), np.float32) for o, p in zip(outputs, predictors)]


def top_k_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores along the last axis, best first; ties go to the lower
    class index, so int8 models' many equal scores rank the same way every time."""
    return np.argsort(-probs, axis=-1, kind="stable")[..., :k]


def topk_hits(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the label among the k highest scores."""
    return np.any(top_k_indices(probs, k) == labels[:, None], axis=1)


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    return float(100.0 * np.mean(topk_hits(probs, labels, k)))


def percent(interval: Sequence[float]) -> list[float]:
    """An interval of proportions as [low, high] in % (4 decimals: far below one image's weight)."""
    return [round(100.0 * bound, 4) for bound in interval]


def percent_interval(successes: int, trials: int) -> list[float]:
    """The 95 % Wilson interval of ``successes/trials``, in %."""
    return percent(wilson(int(successes), int(trials)))


def accuracy_figures(probs: np.ndarray, labels: np.ndarray) -> dict:
    """top1, top5 (%) and their 95 % intervals (top1_ci95, top5_ci95)."""
    n = len(labels)
    hits1, hits5 = topk_hits(probs, labels, 1), topk_hits(probs, labels, 5)
    return {"top1": float(100.0 * np.mean(hits1)), "top5": float(100.0 * np.mean(hits5)),
            "top1_ci95": percent_interval(hits1.sum(), n), "top5_ci95": percent_interval(hits5.sum(), n)}


def compare(model_probs: np.ndarray, ref_probs: np.ndarray, labels: np.ndarray) -> Comparison:
    p = np.clip(ref_probs.astype(np.float64), _EPS, None)
    q = np.clip(model_probs.astype(np.float64), _EPS, None)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    # The paired top-1 table: both right, only the model, only the reference, both wrong.
    model_hit, ref_hit = topk_hits(model_probs, labels, 1), topk_hits(ref_probs, labels, 1)
    both, only_model = int(np.sum(model_hit & ref_hit)), int(np.sum(model_hit & ~ref_hit))
    only_ref, neither = int(np.sum(~model_hit & ref_hit)), int(np.sum(~model_hit & ~ref_hit))
    agree = model_probs.argmax(1) == ref_probs.argmax(1)
    return Comparison(
        top1_delta=topk_accuracy(model_probs, labels, 1) - topk_accuracy(ref_probs, labels, 1),
        top5_delta=topk_accuracy(model_probs, labels, 5) - topk_accuracy(ref_probs, labels, 5),
        top1_agreement=float(100.0 * np.mean(agree)),
        mean_kl=float(np.mean(np.sum(p * np.log(p / q), axis=1))),
        mean_total_variation=float(np.mean(0.5 * np.abs(ref_probs - model_probs).sum(axis=1))),
        top1_agreement_ci95=percent_interval(agree.sum(), len(agree)),
        top1_delta_ci95=percent(paired_difference(both, only_model, only_ref, neither)),
        mcnemar_p=mcnemar(only_model, only_ref),
        top1_only_model=only_model,
        top1_only_reference=only_ref,
    )


def evaluate(predictors: Sequence, pairs: Sequence[tuple[Path, int]], data: str = "", progress: bool = True,
             batch_size: int = 16, skip_bad_images: bool = False, runner=None) -> EvalResult:
    """Evaluate ``predictors[0]`` (and compare it with ``predictors[1]`` when given).

    An undecodable image raises :class:`BadImageError`; with ``skip_bad_images`` the metrics
    are over the images that decode, and the others are listed in ``EvalResult.skipped``.
    ``runner``: what computes the probabilities, :func:`run_predictors` by default (a
    :class:`edgemobile.eval.cluster.RayCluster`'s ``run_predictors`` shards them on Ray)."""
    if not pairs:
        raise EdgeMobileError(f"{data}: no labeled images to evaluate")
    _check_classes(predictors)
    paths = [p for p, _ in pairs]
    labels = np.array([label for _, label in pairs])
    skipped: list | None = [] if skip_bad_images else None
    start = time.perf_counter()
    probs = (runner or run_predictors)(predictors, paths, batch_size=batch_size, progress=progress, skipped=skipped)
    seconds = time.perf_counter() - start
    if skipped:
        skipped.sort()
        keep = np.ones(len(paths), bool)
        keep[[index for index, _, _ in skipped]] = False
        if not keep.any():
            raise EdgeMobileError(f"{data}: none of the {len(paths)} images could be decoded (first: {skipped[0][2]})")
        labels, paths = labels[keep], [p for p, k in zip(paths, keep) if k]
    evaluated = list(zip(paths, labels.tolist()))
    accuracies = [Accuracy.measure(p.name, pr, labels, p.describe()) for p, pr in zip(predictors, probs)]
    comparison = compare(probs[0], probs[1], labels) if len(predictors) > 1 else None
    return EvalResult(data, accuracies, comparison, seconds, len(paths) / seconds if seconds else 0.0,
                      skipped=[{"image": str(path), "error": reason} for _, path, reason in skipped or []],
                      evaluated=evaluated)


def format_interval(ci: Sequence[float], signed: bool = False, digits: int = 1) -> str:
    """``[low, high]`` for printing, e.g. ``[-1.2, +0.3]``."""
    sign = "+" if signed else ""
    return f"[{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"


def format_p(p: float) -> str:
    """A p-value to two significant digits: ``0.27``, ``0.052``, ``3.1e-05``."""
    return f"{p:.2g}"


def format_delta(c: Comparison, model: str = "the model", reference: str = "the reference") -> str:
    """The top-1 delta with its interval, and in words whether it is more than noise."""
    verdict = "significant" if c.significant else "not significant"
    return (f"top-1 delta {c.top1_delta:+.2f} pt {format_interval(c.top1_delta_ci95, signed=True)}, {verdict} "
            f"(McNemar p = {format_p(c.mcnemar_p)}: {c.top1_only_model} images right only for {model}, "
            f"{c.top1_only_reference} only for {reference})")


def format_table(result: EvalResult) -> str:
    """A readable table of the result, each figure with its 95 % interval."""
    rows = [("", "top-1 %", "top-5 %")]
    labels = ["model", "reference"]
    for label, acc in zip(labels, result.accuracies):
        rows.append((f"{label}: {acc.name}", f"{acc.top1:.2f} {format_interval(acc.top1_ci95)}",
                     f"{acc.top5:.2f} {format_interval(acc.top5_ci95)}"))
    c = result.comparison
    if c is not None:
        rows.append(("difference (model - reference)",
                     f"{c.top1_delta:+.2f} {format_interval(c.top1_delta_ci95, True)}", f"{c.top5_delta:+.2f}"))
    width = max(len(r[0]) for r in rows)
    cells = [max(len(r[k]) for r in rows) for k in (1, 2)]
    lines = [f"{r[0]:<{width}}  {r[1]:>{cells[0]}}  {r[2]:>{cells[1]}}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    images = result.accuracies[0].images
    lines.append(f"{images} images from {result.data} (one image is {100 / images:.2g} pt), "
                 f"{result.images_per_second:.1f} images/s; [low, high]: 95 % intervals")
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} undecodable images (listed in --json); the metrics above are "
                     f"over the {images} images actually evaluated")
    if c is not None:
        lines.append(format_delta(c))
        lines.append(f"top-1 agreement {c.top1_agreement:.2f} % {format_interval(c.top1_agreement_ci95)}, "
                     f"mean KL(reference||model) {c.mean_kl:.4f} nats, "
                     f"mean total variation {c.mean_total_variation:.4f}")
    return "\n".join(lines)
