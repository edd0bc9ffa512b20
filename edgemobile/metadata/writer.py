"""Embed TFLite Model Metadata into a .tflite, the way tflite-support's MetadataPopulator
does, without tflite-support (it pins protobuf<4) and without importing TensorFlow.

Steps:

1. describe the model (stdlib flatbuffer reader) and check it is a one-input image
   classifier;
2. build the ``ModelMetadata`` flatbuffer (:mod:`edgemobile.metadata.schema`);
3. rebuild the Model flatbuffer with the object API of the TFLite schema code that ships in
   ``ai_edge_litert`` (``schema_py_generated``), putting the metadata in a buffer named by a
   ``TFLITE_METADATA`` entry of ``Model.metadata`` (replacing an existing one in place);
   any zip appended to the input is dropped by the rebuild;
4. append the associated files as an uncompressed zip (MediaPipe maps files straight out of
   the model buffer and rejects compressed entries), so the .tflite is also a valid zip.

Conventions copied from tflite-support's image classifier writer: input tensor "image" with
ImageProperties(RGB) and NormalizationOptions; input Stats = the normalized pixel range
(float input) or 0/255 (uint8 input); output tensor "probability" with FeatureProperties,
Stats 0/1 (float) or 0/255 (uint8) and the labels file as TENSOR_AXIS_LABELS.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

from edgemobile.errors import EdgeMobileError
from edgemobile.metadata.info import INFO_FILE, INFO_FORMAT, LABELS_FILE, ModelInfo
from edgemobile.metadata.schema import (
    FILE_TENSOR_AXIS_LABELS,
    FILE_UNKNOWN,
    METADATA_NAME,
    FileMeta,
    ModelMeta,
    TensorMeta,
    build_model_metadata,
)
from edgemobile.tflite.flatbuf import FlatBufferError
from edgemobile.tflite.model import (
    TFLITE_FILE_IDENTIFIER,
    ModelView,
    TensorInfo,
    load_model_bytes,
    parse_model,
)
from edgemobile.tflite.object_api import AlignedBuffer, schema_module
from edgemobile.version import __version__

INPUT_TENSOR_NAME = "image"
OUTPUT_TENSOR_NAME = "probability"
# Zip entries get a fixed timestamp so that the same inputs give byte-identical models.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def embed_metadata(model: bytes | str | os.PathLike, info: ModelInfo) -> bytes:
    """Return a copy of the .tflite ``model`` with ``info`` as TFLite Model Metadata.

    ``model`` is the .tflite content (or a path to it); metadata and packed files already
    in it are replaced. Raises :class:`EdgeMobileError` when the model is not a TFLite
    flatbuffer, is not a one-input/one-output image classifier, or ``info`` does not fit it
    (label count ≠ number of classes, a float input without mean/std, ...).
    """
    data, source = load_model_bytes(model)
    try:
        view = parse_model(data)
    except FlatBufferError as exc:
        raise EdgeMobileError(f"{source}: not a valid TFLite model ({exc})") from None
    if view.has_external_buffers:
        raise EdgeMobileError(
            f"{source}: stores tensor data outside the flatbuffer (a >2 GB model); "
            "metadata cannot be embedded in it"
        )
    meta = model_meta(view, info, source)
    files = {}
    if info.labels:
        files[LABELS_FILE] = ("\n".join(info.labels) + "\n").encode("utf-8")
    files[INFO_FILE] = _info_document(info, source)
    flatbuffer = _rebuild_with_metadata(data, build_model_metadata(meta))
    return _append_zip(flatbuffer, files)


def model_meta(view: ModelView, info: ModelInfo, source: str = "model bytes") -> ModelMeta:
    """The ModelMetadata record for ``info`` on the model ``view`` (validated)."""
    if view.num_subgraphs != 1 or len(view.inputs) != 1 or len(view.outputs) != 1:
        raise EdgeMobileError(
            f"{source}: metadata is written for image classifiers with one subgraph, one "
            f"input and one output; this model has {view.num_subgraphs} subgraph(s), "
            f"{len(view.inputs)} input(s), {len(view.outputs)} output(s)"
        )
    image, scores = view.inputs[0], view.outputs[0]
    if len(image.shape) != 4 or image.shape[3] != 3:
        raise EdgeMobileError(
            f"{source}: input {image.name!r} has shape {list(image.shape)}; expected an RGB "
            "image tensor [1, height, width, 3]"
        )
    num_classes = scores.shape[-1] if scores.shape else 0
    _check_labels(info.labels, num_classes, source)
    norm = _normalization(info, source)
    if image.dtype == "float32" and norm is None:
        raise EdgeMobileError(
            f"{source}: the input is float32, so the metadata needs the input normalization "
            "(set ModelInfo.preprocess or ModelInfo.normalization); MediaPipe refuses float "
            "models without it"
        )
    height, width = image.shape[1], image.shape[2]
    input_meta = TensorMeta(
        name=INPUT_TENSOR_NAME,
        description=f"Input image to be classified: RGB, {width}x{height} pixels.",
        content="image",
        color_space="RGB",
        normalization=norm,
        stats=_input_stats(image, norm),
    )
    output_meta = TensorMeta(
        name=OUTPUT_TENSOR_NAME,
        description=f"Probabilities of the {num_classes} labels respectively.",
        content="feature",
        stats=_output_stats(scores),
    )
    if info.labels:
        output_meta.files.append(
            FileMeta(
                name=LABELS_FILE,
                description="Labels for categories that the model can recognize.",
                type=FILE_TENSOR_AXIS_LABELS,
            )
        )
    return ModelMeta(
        name=info.name,
        description=info.description,
        version=info.version,
        author=info.author,
        license=info.license,
        inputs=[input_meta],
        outputs=[output_meta],
        files=[
            FileMeta(
                name=INFO_FILE,
                description="edgemobile: preprocessing, labels and provenance (JSON).",
                type=FILE_UNKNOWN,
            )
        ],
    )


# -- validation and conventions ------------------------------------------------------------
def _check_labels(labels: list[str], num_classes: int, source: str) -> None:
    if not labels:
        return
    if len(labels) != num_classes:
        raise EdgeMobileError(
            f"{source}: {len(labels)} labels given for a model with {num_classes} classes"
        )
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise EdgeMobileError(f"label {i} is empty")
        if "\n" in label or "\r" in label:
            raise EdgeMobileError(f"label {i} ({label!r}) contains a line break")


def _normalization(info: ModelInfo, source: str):
    if info.preprocess is not None and info.normalization is not None:
        spec = (tuple(info.preprocess.mean), tuple(info.preprocess.std))
        given = tuple(tuple(float(v) for v in part) for part in info.normalization)
        if _expand(given) != _expand(spec):
            raise EdgeMobileError(
                f"{source}: ModelInfo.normalization {given} disagrees with "
                f"ModelInfo.preprocess mean/std {spec}"
            )
    norm = info.mean_std()
    if norm is None:
        return None
    mean, std = norm
    if len(mean) != len(std) or len(mean) not in (1, 3):
        raise EdgeMobileError(f"normalization needs 1 or 3 mean and std values, got {norm}")
    if min(std) <= 0:
        raise EdgeMobileError(f"normalization std must be > 0, got {std}")
    return mean, std


def _expand(norm):
    return tuple(tuple(part) * 3 if len(part) == 1 else tuple(part) for part in norm)


def _input_stats(image: TensorInfo, norm):
    """tflite-support convention: uint8 → max 255 / min 0; float32 → the normalized range
    of pixel values 0..255 per channel; other types → no Stats."""
    if image.dtype == "uint8":
        return (255.0,), (0.0,)
    if image.dtype == "float32" and norm is not None:
        mean, std = norm
        return (
            tuple((255.0 - m) / s for m, s in zip(mean, std, strict=True)),
            tuple((0.0 - m) / s for m, s in zip(mean, std, strict=True)),
        )
    return None


def _output_stats(scores: TensorInfo):
    """tflite-support convention: uint8 → 255 / 0; float32 → 1 / 0 (probabilities)."""
    if scores.dtype == "uint8":
        return (255.0,), (0.0,)
    if scores.dtype == "float32":
        return (1.0,), (0.0,)
    return None


def _info_document(info: ModelInfo, source: str) -> bytes:
    doc = dict(info.extra)
    doc["format"] = INFO_FORMAT
    doc["preprocess"] = info.preprocess.to_dict() if info.preprocess is not None else None
    labels = dict(doc.get("labels") or {})
    labels.update(file=LABELS_FILE if info.labels else None, count=len(info.labels))
    doc["labels"] = labels
    provenance = dict(doc.get("provenance") or {})
    provenance["edgemobile_version"] = __version__
    doc["provenance"] = provenance
    try:
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise EdgeMobileError(
            f"{source}: ModelInfo.extra is not JSON-serializable: {exc}"
        ) from None
    return (text + "\n").encode("utf-8")


# -- model surgery -------------------------------------------------------------------------
def _rebuild_with_metadata(data: bytes, metadata: bytes) -> bytes:
    import flatbuffers
    import numpy as np

    schema = schema_module()
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    buffers = list(model.buffers or [])
    entries = list(model.metadata or [])
    new_buffer = schema.BufferT()
    new_buffer.data = np.frombuffer(metadata, dtype=np.uint8)

    ours = [i for i, m in enumerate(entries) if _text(m.name) == METADATA_NAME]
    if ours:
        # Replace in place (as MetadataPopulator does); drop any duplicate entries.
        index = entries[ours[0]].buffer
        buffers[index] = new_buffer
        dropped = {entries[i].buffer for i in ours[1:]} - {index}
        entries = [m for i, m in enumerate(entries) if i not in ours[1:]]
        used = _referenced_buffers(model, entries)
        for stale in dropped - used:
            buffers[stale] = schema.BufferT()
    else:
        buffers.append(new_buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(buffers) - 1
        entries.append(entry)
    model.metadata = entries
    model.buffers = [AlignedBuffer(schema, b) for b in buffers]

    builder = flatbuffers.Builder(len(data) + len(metadata) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _referenced_buffers(model, entries) -> set[int]:
    used = {m.buffer for m in entries}
    for subgraph in model.subgraphs or []:
        used.update(t.buffer for t in subgraph.tensors or [])
    return used


def _append_zip(flatbuffer: bytes, files: dict[str, bytes]) -> bytes:
    """flatbuffer + a zip of ``files`` (stored, offsets relative to the file start): the
    byte layout MetadataPopulator produces with ``zipfile`` in append mode."""
    out = io.BytesIO()
    out.write(flatbuffer)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in files.items():
            entry = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            entry.compress_type = zipfile.ZIP_STORED
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, payload)
    return out.getvalue()


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
