"""Each image's raw model output, saved by ``eval --outputs FILE`` and compared image by image
by ``eval --reference FILE``: the same model evaluated on a device and on the host.

The file is a NumPy ``.npz`` archive (``np.savez_compressed``, no pickles), because the device
install already has NumPy and nothing else is needed to read or write it, whichever NumPy
major version each side has (docs/raspberry-pi.md). It holds, per image, the output tensor
exactly as the interpreter returned it (int8/uint8 for integer models: one byte a class), the
image id (its path relative to the ``--data``
folder, so copies of the folder on two machines match) and the label; and once, as JSON, what
turns raw values into probabilities (output scale, zero point, softmax, background column) plus
where the outputs came from (model file SHA-256, runtime, machine, NumPy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import platform
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from edgemobile.errors import EdgeMobileError
from edgemobile.eval.evaluate import Accuracy, EvalResult, compare, format_interval, percent_interval, top_k_indices
from edgemobile.eval.predictors import scores_to_probabilities
from edgemobile.inputs import reading
from edgemobile.outputs import check_output, write_atomic
from edgemobile.version import __version__

FORMAT = "edgemobile-eval-outputs"
VERSION = 1
SUFFIX = ".npz"
_KEYS = ("ids", "labels", "raw", "meta")


def is_outputs_file(name: str | os.PathLike) -> bool:
    """True for a name ``--reference`` should read as an outputs file (``.npz``)."""
    return str(name).lower().endswith(SUFFIX)


@dataclasses.dataclass
class ImageOutputs:
    """Raw outputs of one model on a list of images, in evaluation order."""

    ids: list[str]
    labels: np.ndarray  # (images,) class index
    raw: np.ndarray  # (images, outputs) in the output tensor's dtype
    meta: dict  # output quantization and softmax/background handling, provenance

    @property
    def quantized(self) -> bool:
        return self.meta["output_scale"] > 0 and self.raw.dtype.kind in "iu"

    def probabilities(self) -> np.ndarray:
        m = self.meta
        scores = self.raw.astype(np.float32)
        if self.quantized:
            scores = (scores - m["output_zero_point"]) * np.float32(m["output_scale"])
        return scores_to_probabilities(scores, m["outputs_probabilities"], m["class_offset"])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, ids=np.array(self.ids, dtype=np.str_), labels=self.labels.astype(np.int32),
                            raw=self.raw, meta=np.array(json.dumps(self.meta, sort_keys=True)))
        return buffer.getvalue()

    def write(self, path: str | os.PathLike, force: bool = False) -> Path:
        return write_atomic(path, self.to_bytes(), force=force)


def check_outputs_name(path: str | os.PathLike, force: bool = False) -> None:
    """Fail before any work if ``--outputs`` cannot be written or is not a ``.npz`` name."""
    if not is_outputs_file(path):
        raise EdgeMobileError(f"{path}: an outputs file is a NumPy archive; give it a {SUFFIX} name")
    check_output(path, force)


def read_outputs(path: str | os.PathLike) -> ImageOutputs:
    """An outputs file written by ``eval --outputs``, or a one-line error."""
    path = Path(path)
    with reading(path, "outputs file"):
        data = path.read_bytes()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            missing = [k for k in _KEYS if k not in archive.files]
            if missing:
                raise EdgeMobileError(f"{path}: not an edgemobile eval outputs file (no {', '.join(missing)})")
            ids, labels, raw, meta_text = (archive[k] for k in _KEYS)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise EdgeMobileError(f"{path}: not an edgemobile eval outputs file (not a NumPy .npz archive)") from None
    try:
        meta = json.loads(str(meta_text))
    except ValueError:
        raise EdgeMobileError(f"{path}: not an edgemobile eval outputs file (unreadable meta)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EdgeMobileError(f"{path}: not an edgemobile eval outputs file (format {meta.get('format')!r})"
                              if isinstance(meta, dict) else f"{path}: not an edgemobile eval outputs file")
    if meta.get("version", 0) > VERSION:
        raise EdgeMobileError(f"{path}: outputs file version {meta['version']} is newer than this edgemobile "
                              f"reads ({VERSION}); upgrade edgemobile")
    n = len(ids)
    if raw.ndim != 2 or raw.shape[0] != n or labels.shape != (n,):
        raise EdgeMobileError(f"{path}: inconsistent outputs file ({n} ids, {labels.shape[0]} labels, "
                              f"raw outputs of shape {list(raw.shape)})")
    return ImageOutputs([str(i) for i in ids], labels.astype(np.int64), raw, meta)


def image_ids(paths: Sequence[Path], root: str | os.PathLike) -> list[str]:
    """Image ids: paths relative to the data folder, '/'-separated."""
    root = Path(root)
    out = []
    for p in paths:
        try:
            out.append(Path(p).relative_to(root).as_posix())
        except ValueError:
            out.append(Path(p).as_posix())
    return out


class RecordingPredictor:
    """A predictor that keeps every raw output it computes (in call order), otherwise the same
    object: ``eval`` runs it in place of the model to fill an :class:`ImageOutputs`."""

    def __init__(self, inner):
        self.inner = inner
        self._raw: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if hasattr(self.inner, "raw_scores"):
            raw = self.inner.raw_scores(batch)
            self._raw.append(raw)
            return self.inner.probabilities(raw)
        probs = self.inner.predict(batch).astype(np.float32)  # the float Keras model: probabilities
        self._raw.append(probs)
        return probs

    def outputs(self, ids: list[str], labels: np.ndarray) -> ImageOutputs:
        raw = np.concatenate(self._raw) if self._raw else np.zeros((0, len(self.inner.classes)), np.float32)
        if len(raw) != len(ids):
            raise EdgeMobileError(f"recorded {len(raw)} outputs for {len(ids)} images")
        return ImageOutputs(ids, np.asarray(labels), raw, _meta(self.inner))


def _meta(predictor) -> dict:
    meta = {"format": FORMAT, "version": VERSION, "model": predictor.name, "edgemobile": __version__,
            "machine": platform.machine(), "numpy": np.__version__, "classes": len(predictor.classes)}
    model = getattr(predictor, "model", None)
    if hasattr(model, "model_bytes"):  # a .tflite model
        out = model.output
        meta.update(output_dtype=out.dtype.name, output_scale=out.scale if out.quantized else 0.0,
                    output_zero_point=out.zero_point if out.quantized else 0,
                    outputs_probabilities=bool(model.outputs_probabilities), class_offset=predictor.offset,
                    model_sha256=hashlib.sha256(model.model_bytes).hexdigest(),
                    runtime=model.backend, runtime_version=_runtime_version(model.backend))
    else:
        meta.update(output_dtype="float32", output_scale=0.0, output_zero_point=0, outputs_probabilities=True,
                    class_offset=0, model_sha256=None, runtime=getattr(predictor, "kind", "?"), runtime_version=None)
    return meta


def _runtime_version(backend: str) -> str | None:
    dist = {"ai-edge-litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tensorflow.lite": "tensorflow"}
    try:
        return metadata.version(dist.get(backend, backend))
    except metadata.PackageNotFoundError:
        return None


# -- comparison ------------------------------------------------------------------------------
@dataclasses.dataclass
class ImageComparison:
    """The model's outputs against a reference run of (usually) the same model, image by image."""

    reference: str
    reference_meta: dict
    same_model: bool | None  # model files' SHA-256 equal (None: unknown)
    images: int
    top1_agreement: float  # % of images
    top1_agreement_ci95: list[float]  # [low, high] %, 95 % Wilson interval
    top1_ties: int  # images whose top-1 differs only by a tie: the reference's top-1 shares the model's top score
    identical_images: int  # every output value equal
    step: float | None  # one quantization step of the output, when both share the quantization
    max_steps: int | None
    mean_steps: float | None  # mean |difference| over all scores of all images
    max_probability_difference: float
    mean_probability_difference: float  # mean over images of the largest |difference|
    differing: list[dict]  # images whose outputs differ, largest difference first

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare_outputs(model: ImageOutputs, reference: ImageOutputs, reference_name: str) -> ImageComparison:
    """Match ``model``'s images in ``reference`` by id and compare them."""
    index = {image_id: k for k, image_id in enumerate(reference.ids)}
    missing = [i for i in model.ids if i not in index]
    if missing:
        raise EdgeMobileError(
            f"{reference_name}: {len(missing)} of the {len(model.ids)} evaluated images are not in it "
            f"(first: {missing[0]}); evaluate the same images (same --data layout, --limit, --seed)"
        )
    order = np.array([index[i] for i in model.ids], dtype=np.int64)
    ref_raw, ref_labels = reference.raw[order], reference.labels[order]
    if ref_raw.shape[1] != model.raw.shape[1]:
        raise EdgeMobileError(f"{reference_name}: {ref_raw.shape[1]} outputs per image, the model has "
                              f"{model.raw.shape[1]}")
    wrong = np.flatnonzero(ref_labels != model.labels)
    if wrong.size:
        raise EdgeMobileError(f"{reference_name}: {wrong.size} images have other labels there "
                              f"(first: {model.ids[wrong[0]]}); the ground truth differs")
    probs, ref_probs = model.probabilities(), reference.probabilities()[order]
    # Integer outputs on the same grid (same scale; int8 and uint8 twins differ only in zero
    # point) are compared in quantization steps.
    same_grid = (model.quantized and reference.quantized
                 and model.meta["output_scale"] == reference.meta["output_scale"])
    if same_grid:
        diff = np.abs((model.raw.astype(np.int32) - model.meta["output_zero_point"])
                      - (ref_raw.astype(np.int32) - reference.meta["output_zero_point"]))
    else:
        diff = np.abs(model.raw.astype(np.float64) - ref_raw.astype(np.float64))
    per_image = diff.max(axis=1) if diff.size else np.zeros(len(model.ids))
    prob_diff = np.abs(probs.astype(np.float64) - ref_probs.astype(np.float64))
    prob_per_image = prob_diff.max(axis=1) if prob_diff.size else np.zeros(len(model.ids))
    top1, ref_top1 = top_k_indices(probs, 1)[:, 0], top_k_indices(ref_probs, 1)[:, 0]
    rows = np.arange(len(top1))
    # The reference's top-1 has the model's highest score too; the lower class index won the tie.
    tied = (top1 != ref_top1) & (probs[rows, ref_top1] == probs[rows, top1])
    differing = [
        {"id": model.ids[k], "top1": int(top1[k]), "reference_top1": int(ref_top1[k]),
         "top1_differs": bool(top1[k] != ref_top1[k]), "top1_tied": bool(tied[k]),
         "max_probability_difference": float(prob_per_image[k]),
         **({"max_steps": int(per_image[k])} if same_grid else {})}
        for k in np.argsort(-prob_per_image, kind="stable") if per_image[k] > 0
    ]
    sha, ref_sha = model.meta.get("model_sha256"), reference.meta.get("model_sha256")
    n = len(model.ids)
    return ImageComparison(
        reference=reference_name, reference_meta=reference.meta,
        same_model=(sha == ref_sha) if sha and ref_sha else None,
        images=n,
        top1_agreement=float(100.0 * np.mean(top1 == ref_top1)) if n else 0.0,
        top1_agreement_ci95=percent_interval(np.sum(top1 == ref_top1), n),
        top1_ties=int(tied.sum()),
        identical_images=int(np.sum(per_image == 0)),
        step=float(model.meta["output_scale"]) if same_grid else None,
        max_steps=int(per_image.max()) if same_grid and n else (0 if same_grid else None),
        mean_steps=float(diff.mean()) if same_grid and diff.size else (0.0 if same_grid else None),
        max_probability_difference=float(prob_per_image.max()) if n else 0.0,
        mean_probability_difference=float(prob_per_image.mean()) if n else 0.0,
        differing=differing,
    )


def with_reference(result: EvalResult, model: ImageOutputs, reference: ImageOutputs,
                   reference_name: str) -> ImageComparison:
    """Add the reference file's accuracy and the usual comparison to ``result`` (as if the
    reference model had run beside the model) and return the image-by-image comparison."""
    image_comparison = compare_outputs(model, reference, reference_name)
    index = {image_id: k for k, image_id in enumerate(reference.ids)}
    ref_probs = reference.probabilities()[[index[i] for i in model.ids]]
    labels = model.labels
    meta = reference.meta
    details = {"kind": "outputs file", "path": reference_name, "machine": meta.get("machine"),
               "runtime": meta.get("runtime"), "runtime_version": meta.get("runtime_version"),
               "model_sha256": meta.get("model_sha256")}
    result.accuracies[1:] = [Accuracy.measure(f"{meta.get('model')} ({Path(reference_name).name})",
                                              ref_probs, labels, details)]
    result.comparison = compare(model.probabilities(), ref_probs, labels)
    return image_comparison


def format_comparison(c: ImageComparison, limit: int = 10) -> str:
    """The image-by-image comparison as a readable table."""
    m = c.reference_meta
    origin = f"{m.get('model')} on {m.get('machine')}, {m.get('runtime')} {m.get('runtime_version') or ''}".strip()
    same = {True: "same model file", False: "a DIFFERENT model file", None: "model file unknown"}[c.same_model]
    agree = round(c.top1_agreement * c.images / 100)
    rows = [("images compared", f"{c.images}"),
            ("top-1 agreement", f"{agree}/{c.images} ({c.top1_agreement:.2f} %, 95 % interval "
                                f"{format_interval(c.top1_agreement_ci95)})"
             + (f"; {c.top1_ties} more tie the reference's top-1 with another class" if c.top1_ties else "")),
            ("identical outputs", f"{c.identical_images}/{c.images}")]
    if c.step is not None:
        rows += [("max score difference", f"{c.max_steps} quantization steps ({c.max_steps * c.step:.4f})"),
                 ("mean score difference", f"{c.mean_steps:.4f} steps over all scores")]
    rows += [("max probability difference", f"{c.max_probability_difference:.4f}"),
             ("mean per-image max", f"{c.mean_probability_difference:.4f}")]
    width = max(len(r[0]) for r in rows)
    lines = [f"image by image against {c.reference} ({origin}; {same})"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if c.differing:
        lines.append(f"  images that differ ({len(c.differing)}; * = top-1 differs, = a tie), largest first:")
        for d in c.differing[:limit]:
            steps = f"{d['max_steps']:>3} steps  " if "max_steps" in d else ""
            mark = "=" if d["top1_tied"] else "*" if d["top1_differs"] else " "
            lines.append(f"   {mark} {steps}{d['max_probability_difference']:.4f}  {d['id']}"
                         + (f"  (top-1 {d['top1']} vs {d['reference_top1']})" if d["top1_differs"] else ""))
        if len(c.differing) > limit:
            lines.append(f"    … {len(c.differing) - limit} more (all in --json)")
    return "\n".join(lines)
