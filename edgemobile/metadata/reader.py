"""Read TFLite Model Metadata and packed files back from a .tflite.

Needs only the standard library (the flatbuffers are read by the hand-written reader in
:mod:`edgemobile.tflite.flatbuf`), so it works on a runtime install with
``tflite_runtime`` or ``ai-edge-litert`` alone.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.errors import BadModelFileError, EdgeMobileError
from edgemobile.metadata.info import INFO_FILE, ModelInfo
from edgemobile.metadata.schema import (
    FILE_TENSOR_AXIS_LABELS,
    METADATA_NAME,
    ModelMeta,
    parse_model_metadata,
)
from edgemobile.tflite.flatbuf import FlatBufferError
from edgemobile.tflite.model import ModelView, load_model_bytes, parse_model

ModelSource = bytes | bytearray | memoryview | str | os.PathLike


def read_metadata(model: ModelSource) -> ModelInfo | None:
    """The :class:`ModelInfo` stored in ``model`` (.tflite bytes or path), or None when the
    model has no TFLite metadata.

    Raises :class:`EdgeMobileError` (naming the file) when it is not a TFLite model, is
    truncated, or its metadata or packed files are corrupt.
    """
    return read_model(model)[3]


def read_model(model: ModelSource) -> tuple[bytes, str, ModelView, ModelInfo | None]:
    """(bytes, name for messages, main-subgraph view, :func:`read_metadata`'s result) of
    ``model`` (.tflite bytes or path), read and parsed once; errors as :func:`read_metadata`."""
    data, source = load_model_bytes(model)
    view = _parse(data, source)
    return data, source, view, _model_info(data, view, source)


def _model_info(data: bytes, view: ModelView, source: str) -> ModelInfo | None:
    meta = _metadata(data, view, source)
    if meta is None:
        return None
    files = _packed_files(data, meta, source)
    info = ModelInfo(
        name=meta.name,
        description=meta.description,
        version=meta.version,
        author=meta.author,
        license=meta.license,
        min_parser_version=meta.min_parser_version or None,
    )
    if meta.inputs:
        info.normalization = meta.inputs[0].normalization
        info.color_space = meta.inputs[0].color_space
    if meta.outputs:
        for f in meta.outputs[0].files:
            if f.type == FILE_TENSOR_AXIS_LABELS:  # the first one, as MediaPipe picks it
                info.labels_file = f.name
                info.labels = _lines(files[f.name], source, f.name)
                break
    if INFO_FILE in files:
        info.extra = _json(files[INFO_FILE], source)
    info.preprocess = _preprocess(info, view, source)
    return info


def read_associated_files(model: ModelSource) -> dict[str, bytes]:
    """Every file packed in ``model``'s zip (name → content); {} when there is none.

    Raises :class:`EdgeMobileError` if a file the metadata names is missing (truncated)."""
    data, source = load_model_bytes(model)
    return _packed_files(data, _metadata(data, _parse(data, source), source), source)


def read_model_parts(model: ModelSource) -> tuple[ModelView, ModelMeta | None, dict[str, bytes]]:
    """(main-subgraph view, raw ModelMetadata record or None, packed files) of ``model``
    (.tflite bytes or path), each checked as :func:`read_associated_files` checks them."""
    data, source = load_model_bytes(model)
    view = _parse(data, source)
    meta = _metadata(data, view, source)
    return view, meta, _packed_files(data, meta, source)


def read_model_metadata(model: ModelSource) -> ModelMeta | None:
    """The raw decoded ModelMetadata record (all tensors, all file records), or None."""
    data, source = load_model_bytes(model)
    return _metadata(data, _parse(data, source), source)


# -- helpers -------------------------------------------------------------------------------
def _parse(data: bytes, source: str) -> ModelView:
    try:
        return parse_model(data)
    except FlatBufferError as exc:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise BadModelFileError(f"{source}: not a TFLite model (no TFL3 identifier)") from None
        raise BadModelFileError(f"{source}: corrupt or truncated TFLite model ({exc})") from None


def _metadata(data: bytes, view: ModelView, source: str) -> ModelMeta | None:
    try:
        span = view.metadata_buffer(METADATA_NAME)
        if span is None:
            return None
        start, length = span
        return parse_model_metadata(memoryview(data)[start : start + length])
    except FlatBufferError as exc:
        raise EdgeMobileError(f"{source}: corrupt TFLite metadata ({exc})") from None


def _packed_files(data: bytes, meta: ModelMeta | None, source: str) -> dict[str, bytes]:
    """The zip's files, checked against the files the metadata names."""
    files = _zip_files(data, source)
    missing = [f.name for f in meta.all_files() if f.name not in files] if meta else []
    if missing:
        raise EdgeMobileError(
            f"{source}: metadata names packed file(s) {', '.join(missing)} that the model "
            "does not contain (truncated file?)"
        )
    return files


def _zip_files(data: bytes, source: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {entry.filename: zf.read(entry) for entry in zf.infolist() if not entry.is_dir()}
    except zipfile.BadZipFile:
        return {}  # no packed files (or a damaged zip; callers report missing files)
    except (OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise EdgeMobileError(f"{source}: corrupt packed files ({exc})") from None


def _lines(payload: bytes, source: str, name: str) -> list[str]:
    """Labels as MediaPipe reads them: one per line, a final empty line ignored."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise EdgeMobileError(f"{source}: packed {name} is not UTF-8 text") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _json(payload: bytes, source: str) -> dict:
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeMobileError(f"{source}: packed {INFO_FILE} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EdgeMobileError(f"{source}: packed {INFO_FILE} is not a JSON object")
    return doc


def _preprocess(info: ModelInfo, view: ModelView, source: str) -> PreprocessSpec | None:
    spec = info.extra.get("preprocess")
    if isinstance(spec, dict):
        try:
            return PreprocessSpec.from_dict(spec)
        except EdgeMobileError as exc:
            raise EdgeMobileError(f"{source}: {exc}") from None
    if info.normalization is None or not view.inputs:
        return None
    shape = view.inputs[0].shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] <= 0:
        return None
    mean, std = info.normalization
    try:
        return PreprocessSpec.center_crop(shape[1], mean, std)
    except ValueError:
        return None
