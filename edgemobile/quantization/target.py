"""Convert to an accuracy target: the fastest candidate model whose top-1 agrees with the float
model on at least ``min_agreement`` of images no conversion used (and, with labels, loses at
most ``max_drop`` of top-1).

Candidates, cheapest first, measured until one meets the target:

1. the post-training recipe (the techniques asked for; the default recipe by default);
2. the same plus quantization-aware fine-tuning (unless the recipe already has it);
3. selective precision on the first: the k layers whose int8 costs most kept float, with the
   float model's weights (k = 1, 2, 4, …, then bisected down to the fewest that meet the
   target). Not on the fine-tuned model: fine-tuning tunes every layer for the int8 errors of
   the layers before it, which layers kept float no longer make. Each layer's cost is measured
   on the TFLite interpreter (:mod:`.layer_sensitivity`) on calibration images the conversion
   used, so the candidates' own measurement stays on images nothing was chosen on. A candidate
   on which XNNPACK leaves more ops to the builtin kernels than on the all-integer model is no
   candidate. ``all_integer`` stops before this step (NPUs, Edge TPU, microcontrollers).

16-bit activations are not a candidate: XNNPACK, the runtime edgemobile's models are made
for, has no 16-bit activation kernels, and the converter's quantizer asked for them on a model
calibrated for int8 writes one the runtime refuses (docs/accuracy.md).

Each candidate is timed on the spot, one thread with XNNPACK, interleaved with the float model
(:func:`edgemobile.runtime.delegation.measure_against_float`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization.agreement import Agreement, Judge
from edgemobile.quantization.keras_layers import Layer, float_tensors
from edgemobile.quantization.layer_sensitivity import Conversion, layer_sensitivity, most_sensitive
from edgemobile.runtime.delegation import SLOWER_RATIO, measure_against_float, model_delegation

SENSITIVITY_IMAGES = 64  # conversion calibration images each layer's int8 cost is measured on


@dataclasses.dataclass(frozen=True)
class Target:
    """What the converted model must reach on the held-apart images (fractions)."""

    min_agreement: float | None = None
    max_drop: float | None = None  # float top-1 minus int8 top-1, e.g. 0.01 for one point
    validation: Path | None = None  # images to measure on instead of a held-apart calibration slice
    all_integer: bool = False

    def __post_init__(self):
        if self.min_agreement is None and self.max_drop is None:
            raise EdgeMobileError("an accuracy target needs --min-agreement A and/or --max-drop D")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise EdgeMobileError(f"--min-agreement {self.min_agreement}: give a fraction in (0, 1], e.g. 0.97")
        if self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise EdgeMobileError(f"--max-drop {self.max_drop}: give a fraction in [0, 1), e.g. 0.01 for one "
                                  f"top-1 point")

    @classmethod
    def from_dict(cls, d: dict) -> "Target":
        """The target :meth:`as_dict` wrote."""
        return cls(d["min_agreement"], d["max_drop"], Path(d["validation"]) if d.get("validation") else None,
                   d["all_integer"])

    def met(self, measured: Agreement) -> bool:
        if self.min_agreement is not None and measured.rate < self.min_agreement:
            return False
        return self.max_drop is None or measured.drop <= self.max_drop

    def describe(self) -> str:
        parts = [f"agreement ≥ {100 * self.min_agreement:g} %"] if self.min_agreement is not None else []
        parts += [f"top-1 drop ≤ {100 * self.max_drop:g} points"] if self.max_drop is not None else []
        return " and ".join(parts) + (" (all-integer)" if self.all_integer else "")

    def as_dict(self) -> dict:
        return {"min_agreement": self.min_agreement, "max_drop": self.max_drop, "all_integer": self.all_integer,
                "validation": str(self.validation) if self.validation else None}


@dataclasses.dataclass
class Candidate:
    name: str
    tflite: bytes
    kept_float: tuple[Layer, ...] = ()
    measured: Agreement | None = None
    latency_ms: float | None = None
    float_ms: float | None = None
    refused: str | None = None  # why it is no candidate (XNNPACK leaves ops to the builtin kernels)
    meets: bool = False
    base: str | None = None  # the candidate whose conversion it requantizes (None: its own)

    @property
    def integer(self) -> bool:
        return not self.kept_float

    def as_dict(self) -> dict:
        return {"name": self.name, "kept_float": [layer.name for layer in self.kept_float],
                "size_bytes": len(self.tflite), **(self.measured.as_dict() if self.measured else {}),
                "latency_ms": _round(self.latency_ms), "float_latency_ms": _round(self.float_ms),
                "refused": self.refused, "meets_target": self.meets}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclasses.dataclass
class TargetMissed(EdgeMobileError):
    """No candidate meets the target (the message names the closest; ``search`` has them all)."""

    def __init__(self, message: str, search: "Search"):
        super().__init__(message)
        self.search = search


@dataclasses.dataclass
class Search:
    """The candidates measured, in the order they were tried, and the one chosen."""

    target: Target
    images: int
    source: str  # where the measuring images came from
    candidates: list[Candidate]
    sensitivity: dict | None = None  # layer_sensitivity's result, when selective precision was tried
    chosen: Candidate | None = None
    skipped: list[str] = dataclasses.field(default_factory=list)  # escalation steps not taken, and why
    float_model: bytes = b""
    conversions: dict[str, "Conversion"] = dataclasses.field(default_factory=dict)  # by candidate name

    def conversion(self, candidate: Candidate) -> "Conversion":
        """The conversion ``candidate`` was made from (its report, its float model)."""
        return self.conversions[candidate.base or candidate.name]

    def closest(self) -> Candidate:
        measured = [c for c in self.candidates if c.measured is not None and not (self.target.all_integer and
                                                                                   not c.integer)]
        return max(measured, key=lambda c: (c.measured.rate, -c.measured.error))

    def require_chosen(self) -> Candidate:
        if self.chosen is None:
            best = self.closest()
            low, high = best.measured.interval
            raise TargetMissed(
                f"no candidate reaches {self.target.describe()} on {self.images} held-apart images; closest: "
                f"{best.name}, agreement {100 * best.measured.rate:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"
                + (f", top-1 drop {100 * best.measured.drop:+.1f} points" if best.measured.drop is not None else "")
                + ("" if self.target.all_integer else "; lower the target or give more calibration images"), self)
        return self.chosen

    def table(self) -> str:
        """The candidates as an aligned text table (the CLI prints it)."""
        labeled = any(c.measured is not None and c.measured.top1 is not None for c in self.candidates)
        rows = [_header(labeled)]
        for c in self.candidates:
            m = c.measured
            rows.append(_cells(c.name, labeled, None if m is None else (m.rate, *m.interval, m.top1, m.drop),
                               len(c.tflite), c.latency_ms, c.float_ms, _verdict(c is self.chosen, c.refused, c.meets)))
        return _text_table(_title(self.target, self.images, self.source), rows, self.skipped)

    def as_dict(self) -> dict:
        return {"target": self.target.as_dict(), "images": self.images, "source": self.source,
                "chosen": self.chosen.name if self.chosen else None,
                "candidates": [c.as_dict() for c in self.candidates], "skipped": self.skipped,
                "sensitivity": _brief(self.sensitivity)}


def markdown_table(search: dict) -> str:
    """The candidates of a :meth:`Search.as_dict` (the form a report's JSON keeps) as a
    Markdown table: :meth:`Search.table`'s cells (from the dict's rounded figures)."""
    candidates = search["candidates"]
    labeled = any(c.get("top1") is not None for c in candidates)
    header = _header(labeled)
    header[-1] = "verdict"
    rows = [_cells(c["name"], labeled, None if c.get("agreement") is None else
                   (c["agreement"], *c["agreement_ci95"], c["top1"], c["drop"]), c["size_bytes"], c["latency_ms"],
                   c["float_latency_ms"], _verdict(c["name"] == search["chosen"], c["refused"], c["meets_target"]))
            for c in candidates]
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]  # figures right-aligned, as in the text table
    lines = [_title(Target.from_dict(search["target"]), search["images"], search["source"]) + ":", ""] + [
        "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in [header, align, *rows]]
    return "\n".join(lines + [""] * bool(search["skipped"]) + [f"- not tried: {r}" for r in search["skipped"]])


def _title(target: Target, images: int, source: str) -> str:
    return (f"accuracy target: {target.describe()}, measured on {images} {source} "
            "(1 thread, XNNPACK; float latency timed alongside)")


def _header(labeled: bool) -> list[str]:
    return ["candidate", "agreement % [95 % CI]"] + (["top-1 %", "drop"] if labeled else []) + \
        ["size MB", "latency ms (float)", ""]


def _cells(name: str, labeled: bool, measured: tuple | None, size_bytes: int, latency_ms: float | None,
           float_ms: float | None, verdict: str) -> list[str]:
    """One candidate's cells; ``measured``: (agreement, interval low, high, top-1, drop) as
    fractions, None for a refused candidate."""
    if measured is None:
        cells = [name, "-"] + (["-", "-"] if labeled else [])
    else:
        rate, low, high, top1, drop = measured
        cells = [name, f"{100 * rate:.1f} [{100 * low:.1f}, {100 * high:.1f}]"]
        if labeled:
            cells += [f"{100 * top1:.1f}", f"{100 * drop:+.1f}"]
    latency = "-" if latency_ms is None else f"{latency_ms:.2f} ({float_ms:.2f})"
    return cells + [f"{size_bytes / 1e6:.2f}", latency, verdict]


def _verdict(chosen: bool, refused: str | None, meets: bool) -> str:
    return "chosen" if chosen else (refused or ("meets" if meets else ""))


def _text_table(title: str, rows: list[list[str]], skipped: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 or i == len(row) - 1 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("-" * len(lines[-1]))
    lines += [f"not tried: {reason}" for reason in skipped]
    return "\n".join(lines)


@dataclasses.dataclass
class HeldApart:
    """The images candidates are measured on and their labels (None: no labels)."""

    images: np.ndarray
    labels: Sequence[int] | None
    source: str  # e.g. "held-apart calibration images"


def search(convert: Callable[[bool], Conversion], finetuned_already: bool, target: Target, held: HeldApart,
           sensitivity_images: np.ndarray, spec, progress: bool = True) -> Search:
    """Escalate through the candidates (module docstring) until one meets ``target``.

    Args:
        convert: ``convert(finetune)`` → a new conversion, with fine-tuning added or not.
        finetuned_already: the recipe has fine-tuning (step 2 is then step 1).
        target: what to reach.
        held: the images candidates are measured on (never the conversion's).
        sensitivity_images: calibration images the conversion used (each layer's cost).
        spec: the model's PreprocessSpec.
    """
    first = convert(False)
    float_model = first.full.float_tflite()  # latencies are timed against it; agreement is with it
    judge = Judge(float_model, held.images, spec, held.labels)
    sensitivity_judge = Judge(float_model, sensitivity_images, spec)
    found = Search(target, len(held.images), held.source, [], float_model=float_model)
    reference_fallback = _slow_fallback(first.full.tflite)

    def add(name: str, tflite: bytes, kept: tuple[Layer, ...] = ()) -> Candidate:
        candidate = Candidate(name, tflite, kept)
        slow = _slow_fallback(tflite)
        if slow is not None and reference_fallback is not None and slow > reference_fallback:
            more = slow - reference_fallback
            candidate.refused = f"not a candidate: XNNPACK leaves {more} more ops to builtin kernels"
        else:
            candidate.measured = judge(tflite, source=name)
            latency = measure_against_float(tflite, float_model)
            candidate.latency_ms, candidate.float_ms = latency.model_ms, latency.float_ms
            candidate.meets = target.met(candidate.measured)
        found.candidates.append(candidate)
        return candidate

    label = "post-training" + (" + fine-tuning" if finetuned_already else "")
    add(label, first.full.tflite)
    found.conversions[label] = first
    if not any(c.meets for c in found.candidates) and not finetuned_already:
        found.conversions["+ fine-tuning"] = convert(True)
        add("+ fine-tuning", found.conversions["+ fine-tuning"].full.tflite)
    if not any(c.meets for c in found.candidates):
        if target.all_integer:
            found.skipped.append("layers kept float (--all-integer)")
        else:
            # On the post-training conversion: fine-tuning tunes every layer for the int8 errors of
            # the layers before it, which layers kept float no longer make.
            best = found.candidates[0]
            base = found.conversions[best.name]
            found.sensitivity = layer_sensitivity(base, sensitivity_judge, progress=progress)

            def selective(k: int) -> bool:
                kept = most_sensitive(base.layers, found.sensitivity, k)
                candidate = add(f"{best.name}, {k} layer{'s' if k > 1 else ''} float",
                                base.full.keeping_float(float_tensors(kept)), kept)
                candidate.base = best.name
                return candidate.meets and candidate.refused is None

            missed = 0
            for k in _doublings(len(base.layers)):
                if selective(k):
                    while k - missed > 1:  # bisect down to the fewest layers that still meet it
                        middle = (missed + k) // 2
                        missed, k = (missed, middle) if selective(middle) else (middle, k)
                    break
                missed = k
    found.chosen = fastest([c for c in found.candidates if c.meets and c.refused is None])
    return found


def fastest(candidates: Sequence[Candidate]) -> Candidate | None:
    """The fastest of ``candidates``; those within timing noise of it (:data:`SLOWER_RATIO`)
    count as fast, and of them the one with the fewest layers kept float wins — the host's
    float kernels can match its int8 ones (x86 with AVX2/AVX-512), a phone's cannot."""
    if not candidates:
        return None
    best = min(c.latency_ms for c in candidates)
    return min((c for c in candidates if c.latency_ms <= best * SLOWER_RATIO),
               key=lambda c: (len(c.kept_float), c.latency_ms))


def _brief(sensitivity: dict | None) -> dict | None:
    """The sensitivity without each layer's tensor names (provenance travels in the model)."""
    if sensitivity is None:
        return None
    keep = ("layer", "op", "agreement_loss", "error_added", "share")
    return {**sensitivity, "layers": [{k: row[k] for k in keep} for row in sensitivity["layers"]]}


def _doublings(n: int) -> list[int]:
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n] if n else []


def _slow_fallback(tflite: bytes) -> int | None:
    delegation = model_delegation(tflite)
    return None if delegation is None else len(delegation.slow_fallback)

