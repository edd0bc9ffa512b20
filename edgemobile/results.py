"""What the API's functions return: each result prints readably (the CLI prints it) and has
``as_dict()`` for JSON where the command writes one."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from edgemobile.deploy.bench import format_report
from edgemobile.deploy.bundle import write_bundle
from edgemobile.eval.evaluate import format_table
from edgemobile.eval.image_outputs import format_comparison
from edgemobile.eval.report import REPORT_FILES, candidates_plot, markdown, plot, plottable
from edgemobile.outputs import check_output, check_output_folder, write_atomic
from edgemobile.quantization.diagnosis import format_diagnosis


@dataclasses.dataclass
class Converted:
    """A converted model: ``tflite`` bytes (metadata embedded), its provenance and, for
    full-integer models, what each quantization technique did."""

    name: str
    precision: str
    tflite: bytes
    provenance: dict
    seconds: float
    quantization: dict | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. ops XNNPACK leaves to builtin kernels
    # e.g. the MobileNetV3 rewrite, int8 slower than float here
    notes: list[str] = dataclasses.field(default_factory=list)
    search: Any = None  # with an accuracy target: the candidates measured (quantization.target.Search)

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write the .tflite atomically (an existing file only with ``force``)."""
        return write_atomic(path, self.tflite, force=force)

    @property
    def summary(self) -> str:
        cal = self.provenance.get("calibration")
        quant = self.quantization or {}
        how = f", calibrated on {cal['images']} images with {quant.get('techniques', 'the converter')}" if cal else ""
        cost = self.provenance.get("conversion") or {}
        peak = f", peak memory {cost['peak_rss_mb'] / 1024:.2f} GB" if cost.get("peak_rss_mb") is not None else ""
        rewrite = ", MobileNetV3 backbone rewritten int8-friendly" if (self.provenance.get("rewrite") or {}).get(
            "applied") else ""
        return f"{len(self.tflite) / 1e6:.2f} MB, {self.precision}{how}{rewrite}, {self.seconds:.1f} s wall{peak}"

    def __repr__(self) -> str:
        return f"<Converted {self.name} ({self.summary})>"


class _ShownAsText:
    """IPython/Jupyter show a result as the command's output (its ``str``), not its ``repr``."""

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))


@dataclasses.dataclass
class Evaluation(_ShownAsText):
    """Top-1/top-5 of a model (and its comparison with a reference) on labeled images;
    prints as the CLI's table."""

    result: Any  # edgemobile.eval.evaluate.EvalResult
    image_comparison: Any = None  # edgemobile.eval.image_outputs.ImageComparison, against an outputs file
    outputs: Any = None  # edgemobile.eval.image_outputs.ImageOutputs, each evaluated image's raw output

    @property
    def top1(self) -> float:
        return self.result.accuracies[0].top1

    @property
    def top5(self) -> float:
        return self.result.accuracies[0].top5

    @property
    def reference_top1(self) -> float | None:
        return self.result.accuracies[1].top1 if len(self.result.accuracies) > 1 else None

    @property
    def agreement(self) -> float | None:
        """Top-1 agreement with the reference, in %."""
        return self.result.comparison.top1_agreement if self.result.comparison else None

    @property
    def images(self) -> int:
        return self.result.accuracies[0].images

    def as_dict(self) -> dict:
        if self.image_comparison is None:
            return self.result.as_dict()
        return {**self.result.as_dict(), "image_comparison": self.image_comparison.as_dict()}

    def __str__(self) -> str:
        if self.image_comparison is None:
            return format_table(self.result)
        return f"{format_table(self.result)}\n\n{format_comparison(self.image_comparison)}"

    def __repr__(self) -> str:
        ref = f", agreement {self.agreement:.2f} %" if self.agreement is not None else ""
        return f"<Evaluation top-1 {self.top1:.2f} %, top-5 {self.top5:.2f} % on {self.images} images{ref}>"


@dataclasses.dataclass
class Predictions:
    """Top-k classes per image: ``items[i] = {"image": path, "top": [{"name", "id", "index",
    "probability"}, …]}``."""

    model: str
    items: list[dict]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def as_dict(self) -> dict:
        return {"model": self.model, "predictions": self.items}

    def __str__(self) -> str:
        lines = []
        for item in self.items:
            lines.append(str(item["image"]))
            for rank, e in enumerate(item["top"], 1):
                synset = f"  ({e['id']})" if e["id"] != e["name"] else ""
                lines.append(f"  {rank}. {e['probability']:7.2%}  {e['name']}{synset}")
        return "\n".join(lines)

    __repr__ = __str__


@dataclasses.dataclass
class BundleResult:
    """An Android bundle (``bundle.tflite`` + labels), and the folder it was written to."""

    bundle: Any  # edgemobile.deploy.bundle.Bundle
    folder: Path | None

    @property
    def tflite(self) -> bytes:
        return self.bundle.tflite

    @property
    def labels(self) -> list[str]:
        return list(self.bundle.info.labels)

    @property
    def notes(self) -> list[str]:
        """What the user should know about the conversion (the MobileNetV3 rewrite, int8 slower than float here)."""
        return list(self.bundle.notes)

    @property
    def warnings(self) -> list[str]:
        """What the int8 techniques skipped when this bundle's model was converted (from its
        provenance), and ops XNNPACK leaves to the builtin kernels."""
        provenance = (self.bundle.info.extra or {}).get("provenance") or {}
        return skipped_techniques(provenance.get("quantization")) + list(self.bundle.warnings)

    def write(self, folder: str | os.PathLike, force: bool = False) -> Path:
        self.folder = write_bundle(folder, self.bundle, force=force)
        return self.folder

    def __repr__(self) -> str:
        where = f"{self.folder}/ " if self.folder else ""
        return (f"<Bundle {where}({self.bundle.model_file} {len(self.tflite) / 1e6:.2f} MB + labels.txt): "
                f"{self.bundle.describe()}>")


def skipped_techniques(quantization: dict | None) -> list[str]:
    """One warning per pattern the int8 techniques left alone (see quantization.guards)."""
    return [f"int8 techniques skipped {note}" for note in (quantization or {}).get("skipped", [])]


@dataclasses.dataclass
class InspectResult(_ShownAsText):
    """Where int8 loses accuracy, layer by layer (``edgemobile inspect``): ``diagnosis`` is
    the JSON-ready report, ``warnings`` what the user should know (skipped techniques,
    calibration images of other classes), ``notes`` what was done (the MobileNetV3 rewrite)."""

    diagnosis: dict
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. the MobileNetV3 rewrite

    def as_dict(self) -> dict:
        return self.diagnosis

    def __str__(self) -> str:
        return format_diagnosis(self.diagnosis)

    def __repr__(self) -> str:
        tensors = len(self.diagnosis.get("tensors") or ())
        return f"<InspectResult {self.diagnosis.get('model', '')} ({tensors} tensors compared)>"


@dataclasses.dataclass
class BenchResult(_ShownAsText):
    """Latency (median, p90) per setting, model size, peak memory and an optional per-op
    profile (``edgemobile bench``); ``report`` is the JSON-ready dict."""

    report: dict

    def as_dict(self) -> dict:
        return self.report

    def __str__(self) -> str:
        return format_report(self.report)

    def __repr__(self) -> str:
        return f"<BenchResult {self.report.get('model', '')} ({len(self.report.get('settings') or ())} settings)>"


@dataclasses.dataclass
class ReportResult(_ShownAsText):
    """Float vs int8 accuracy, size and latency of several models (``edgemobile report``):
    prints as the Markdown table; :meth:`write` puts report.md, report.json, report.png
    (top-1 vs latency, when latency was timed and an int8 model made) and, with an accuracy target,
    report_candidates.png (the candidates' agreement vs latency) in a folder."""

    result: dict
    files: list[Path] = dataclasses.field(default_factory=list)  # what :meth:`write` wrote

    def as_dict(self) -> dict:
        return self.result

    @property
    def timed(self) -> bool:
        """Whether report.png has points: latency was timed and some model has an int8 model
        (the plot is top-1 against latency)."""
        return plottable(self.result)

    def write(self, folder: str | os.PathLike, force: bool = False) -> list[Path]:
        """The report files in ``folder`` (created; files replaced only with ``force``), all
        made before any is written."""
        folder = check_report_folder(folder, force)
        contents = {"report.md": markdown(self.result), "report.json": json.dumps(self.result, indent=2) + "\n"}
        if self.timed:
            contents["report.png"] = plot(self.result)
        if self.result.get("target"):
            contents["report_candidates.png"] = candidates_plot(self.result)
        self.files = [write_atomic(folder / name, content, force=force) for name, content in contents.items()]
        return self.files

    def __str__(self) -> str:
        return markdown(self.result)

    def __repr__(self) -> str:
        return f"<ReportResult {len(self.result.get('rows') or ())} rows on {self.result.get('images')} images>"


def check_report_folder(folder: str | os.PathLike, force: bool = False) -> Path:
    """Fail before any work if the report files cannot be written to ``folder``."""
    folder = check_output_folder(folder)
    if folder.exists():
        for name in REPORT_FILES:
            check_output(folder / name, force)
    return folder
