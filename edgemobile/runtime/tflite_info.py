"""``edgemobile info MODEL.tflite`` / ``em.info(model)``: what a .tflite file carries — its
precision, input/output tensors and their quantization, the preprocessing and labels in its
metadata, where it came from (edgemobile's provenance), its ops and how many of them XNNPACK
takes. Works on any .tflite (third-party files without edgemobile metadata too), with the
runtime install alone: no TensorFlow."""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

from edgemobile.metadata.reader import read_model
from edgemobile.runtime.delegation import xnnpack_delegation
from edgemobile.runtime.interpreter import open_interpreter
from edgemobile.tflite.model import TensorInfo

SHOWN_LABELS = 5  # labels printed (and written to --json) besides their count
_INTEGER = ("int8", "uint8", "int16")


@dataclasses.dataclass
class TFLiteInfo:
    """What one .tflite file carries; prints as the ``edgemobile info`` report."""

    source: str
    size_bytes: int
    name: str
    metadata: str  # "edgemobile" (edgemobile.json), "tflite" (TFLite metadata only) or "none"
    precision: str  # float32, float16, dynamic, int8, uint8, int16x8
    precision_source: str  # "edgemobile metadata" or "tensor types"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    subgraphs: int
    description: str = ""
    preprocess: dict | None = None  # a PreprocessSpec as a dict
    preprocess_text: str | None = None
    preprocess_source: str | None = None
    labels: list[str] = dataclasses.field(default_factory=list)
    labels_file: str | None = None
    provenance: dict = dataclasses.field(default_factory=dict)  # edgemobile.json's "provenance"
    ops: dict[str, int] | None = None  # op type → count, most frequent first (None: the runtime cannot list them)
    xnnpack: dict | None = None  # Delegation.as_dict() (None: the runtime cannot tell)
    runtime: str = ""

    def as_dict(self) -> dict:
        return {
            "model": self.source, "size_bytes": self.size_bytes, "name": self.name, "metadata": self.metadata,
            "precision": self.precision, "precision_source": self.precision_source,
            "inputs": [_tensor_dict(t) for t in self.inputs], "outputs": [_tensor_dict(t) for t in self.outputs],
            "subgraphs": self.subgraphs, "description": self.description,
            "preprocess": self.preprocess, "preprocess_source": self.preprocess_source,
            "labels": {"count": len(self.labels), "file": self.labels_file, "first": self.labels[:SHOWN_LABELS]},
            "provenance": self.provenance, "ops": self.ops, "xnnpack": self.xnnpack, "runtime": self.runtime,
        }

    def __str__(self) -> str:
        rows: list[tuple[str, str]] = [
            ("name", self.name or "-"),
            ("size", f"{self.size_bytes / 1e6:.2f} MB"),
            ("metadata", {"edgemobile": "edgemobile (preprocessing, labels, provenance)",
                          "tflite": "TFLite metadata only: no edgemobile metadata (no provenance)",
                          "none": "none: no edgemobile metadata, no TFLite metadata"}[self.metadata]),
            ("precision", f"{self.precision} (from {self.precision_source})"),
        ]
        rows += [("input", _tensor_text(t)) for t in self.inputs]
        rows += [("output", _tensor_text(t)) for t in self.outputs]
        if self.subgraphs != 1:
            rows.append(("subgraphs", str(self.subgraphs)))
        if self.preprocess_text:
            rows.append(("preprocessing", f"{self.preprocess_text} (from {self.preprocess_source})"))
        elif self.inputs and self.inputs[0].dtype in _INTEGER:
            rows.append(("preprocessing", ("none stored: eval/predict feed raw pixels as the input quantization "
                                           "says (--mean/--std to override)")))
        else:
            rows.append(("preprocessing", "none stored: give eval/predict --mean/--std"))
        if self.labels:
            shown = ", ".join(f'"{label}"' for label in self.labels[:SHOWN_LABELS])
            more = ", …" if len(self.labels) > SHOWN_LABELS else ""
            rows.append(("labels", f"{len(self.labels)} ({shown}{more})"))
        elif self.outputs and self.outputs[0].shape[-1:] in ((1000,), (1001,)):
            rows.append(("labels", "none stored: eval/predict take the ImageNet classes for 1000/1001 outputs"))
        else:
            rows.append(("labels", "none stored: give eval/predict --labels FILE"))
        rows += _provenance_rows(self.provenance)
        if self.ops is not None:
            total = sum(self.ops.values())
            rows.append(("ops", f"{total}: " + ", ".join(f"{n}× {name}" for name, n in self.ops.items())))
        else:
            rows.append(("ops", f"cannot tell ({self.runtime} does not list them)"))
        rows.append(("XNNPACK", _xnnpack_text(self.xnnpack, self.runtime)))
        rows.append(("runtime", self.runtime))
        width = max(len(key) for key, _ in rows)
        return "\n".join([self.source] + [f"  {key:<{width}}  {value}" for key, value in rows])

    __repr__ = __str__


def tflite_info(model: str | os.PathLike | bytes) -> TFLiteInfo:
    """The :class:`TFLiteInfo` of a .tflite path or its bytes; a one-line
    :class:`~edgemobile.errors.EdgeMobileError` when it is missing or not a (whole) TFLite model."""
    data, source, view, meta = read_model(model)
    backend, interpreter = open_interpreter(data, source, num_threads=1)
    delegation = xnnpack_delegation(interpreter)
    ops = None
    if delegation is not None:
        ops = dict(collections.Counter(op.name for op in delegation.delegated + delegation.fallback).most_common())
    extra = meta.extra if meta is not None else {}
    provenance = extra.get("provenance") if isinstance(extra.get("provenance"), dict) else {}
    precision, precision_source = _precision(provenance, view.inputs, interpreter, delegation)
    info = TFLiteInfo(
        source=source, size_bytes=len(data), name=(meta.name if meta else "") or _stem(source),
        metadata="edgemobile" if extra else "tflite" if meta is not None else "none",
        precision=precision, precision_source=precision_source, inputs=list(view.inputs),
        outputs=list(view.outputs), subgraphs=view.num_subgraphs, description=meta.description if meta else "",
        labels=list(meta.labels) if meta else [], labels_file=meta.labels_file if meta else None,
        provenance=provenance, ops=ops, xnnpack=delegation.as_dict() if delegation else None, runtime=backend)
    if meta is not None and meta.preprocess is not None:
        spec = meta.preprocess
        info.preprocess = {**spec.to_dict(), "mean": list(spec.mean), "std": list(spec.std)}  # as in JSON
        info.preprocess_text = spec.describe()
        info.preprocess_source = ("edgemobile metadata" if isinstance(extra.get("preprocess"), dict) else
                                  "TFLite NormalizationOptions; resize and crop assumed, not stored")
    return info


def _precision(provenance: dict, inputs: list[TensorInfo], interpreter, delegation) -> tuple[str, str]:
    """(precision, where it was read): edgemobile's provenance, else the tensor types."""
    stated = provenance.get("precision")
    if isinstance(stated, str) and stated:
        return stated, "edgemobile metadata"
    tensors = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    computed = {op.dtype for op in delegation.delegated + delegation.fallback
                if op.name not in ("QUANTIZE", "DEQUANTIZE")} if delegation else set()
    input_type = inputs[0].dtype if inputs else ""
    if input_type in ("int8", "uint8"):
        precision = input_type
    elif "int16" in computed:
        precision = "int16x8"
    elif computed & {"int8", "uint8"}:
        precision = "int8 (float input and output)"
    elif "float16" in tensors:
        precision = "float16"
    elif tensors & {"int8", "uint8"}:
        precision = "dynamic"
    else:
        precision = "float32"
    return precision, "tensor types"


def _tensor_dict(t: TensorInfo) -> dict:
    return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "scale": list(t.scale),
            "zero_point": list(t.zero_point)}


def _tensor_text(t: TensorInfo) -> str:
    text = f"{t.name or '(unnamed)'}  {t.dtype} {list(t.shape)}"
    if t.dtype in _INTEGER and t.scale:
        if len(t.scale) == 1:
            text += f"  scale {t.scale[0]:.6g}, zero point {t.zero_point[0] if t.zero_point else 0}"
        else:
            text += f"  per-channel quantization ({len(t.scale)} scales)"
    return text


def _provenance_rows(p: dict) -> list[tuple[str, str]]:
    if not p:
        return [("provenance", "none (not made by edgemobile)")]
    rows = []
    model = p.get("model")
    if model:
        rows.append(("made from", str(model)))
    weights = p.get("weights")
    if isinstance(weights, dict):
        if weights.get("file"):
            rows.append(("weights", f"{weights['file']}, sha256 {weights.get('sha256', '?')}"))
        elif weights.get("source"):
            rows.append(("weights", str(weights["source"])))
    calibration = p.get("calibration")
    if isinstance(calibration, dict):
        rows.append(("calibration", f"{calibration.get('images', '?')} images from {calibration.get('source', '?')}"
                     f", seed {calibration.get('seed', '?')}, {calibration.get('sampling', '')}".rstrip(", ")))
    quantization = p.get("quantization")
    if isinstance(quantization, dict) and quantization.get("techniques"):
        skipped = quantization.get("skipped")
        note = f" ({len(skipped)} pattern(s) skipped)" if isinstance(skipped, list) and skipped else ""
        rows.append(("techniques", f"{quantization['techniques']}{note}"))
    kept = p.get("kept_float")
    if isinstance(kept, list) and kept:
        rows.append(("kept float", ", ".join(str(k.get("layer")) for k in kept if isinstance(k, dict))))
    target = p.get("accuracy_target")
    if isinstance(target, dict) and target.get("chosen"):
        chosen = next((c for c in target.get("candidates") or [] if isinstance(c, dict)
                       and c.get("name") == target["chosen"]), {})
        agreement = chosen.get("agreement")
        rows.append(("accuracy target", f"chose {target['chosen']} of {len(target.get('candidates') or [])} "
                     f"candidates" + (f": agreement {100 * agreement:.1f} % on {target.get('images')} "
                                      f"{target.get('source')}" if isinstance(agreement, (int, float)) else "")))
    rewrite = p.get("rewrite")
    if isinstance(rewrite, dict):
        rows.append(("rewrite", "MobileNetV3 backbone rewritten int8-friendly" if rewrite.get("applied") else
                     f"MobileNetV3 backbone unchanged: {rewrite.get('reason', '?')}"))
    converter = p.get("converter")
    made = f"edgemobile {p.get('edgemobile') or p.get('edgemobile_version') or '?'}"
    if isinstance(converter, dict) and converter:
        made += " with " + ", ".join(f"{k} {v}" for k, v in converter.items())
    if p.get("created"):
        made += f", {p['created']}"
    rows.append(("made by", made))
    return rows


def _xnnpack_text(x: dict | None, runtime: str) -> str:
    if x is None:
        return f"cannot tell ({runtime} does not list the delegated ops)"
    if not x["applied"]:
        return f"takes none of the {x['ops']} ops (not applied by {runtime})"
    text = f"takes {x['delegated_ops']} of {x['ops']} ops ({x['partitions']} partition(s))"
    if x["fallback_ops"]:
        text += "; builtin kernels run " + ", ".join(f"{n}× {label}" for label, n in x["fallback_ops"].items())
    return text


def _stem(source: str) -> str:
    return os.path.splitext(os.path.basename(source))[0] if source != "model bytes" else ""
