"""Standard TFLite Model Metadata, written and read without tflite-support or TensorFlow.

A model written by :func:`embed_metadata` carries what MediaPipe Tasks' ImageClassifier and
the TFLite metadata tools read — a ``TFLITE_METADATA`` ModelMetadata flatbuffer (input
ImageProperties RGB + NormalizationOptions + Stats; output FeatureProperties + Stats +
``labels.txt`` as TENSOR_AXIS_LABELS) and the associated files zipped (stored) after the
flatbuffer — plus ``edgemobile.json`` (preprocessing spec, labels info, provenance).

Public API::

    embed_metadata(model: bytes | path, info: ModelInfo) -> bytes
    read_metadata(model: bytes | path) -> ModelInfo | None
    read_associated_files(model: bytes | path) -> dict[str, bytes]

Whether MediaPipe's ImageClassifier accepts a model is Android/MediaPipe policy, checked in
:mod:`edgemobile.deploy.mediapipe_compat`.

Dependencies: reading needs only the standard library; writing needs ``flatbuffers``,
``numpy`` and the TFLite schema code of ``ai-edge-litert`` (imported when writing).
"""

from edgemobile.metadata.info import INFO_FILE, LABELS_FILE, ModelInfo
from edgemobile.metadata.reader import read_associated_files, read_metadata, read_model_metadata
from edgemobile.metadata.writer import embed_metadata

__all__ = [
    "INFO_FILE",
    "LABELS_FILE",
    "ModelInfo",
    "embed_metadata",
    "read_associated_files",
    "read_metadata",
    "read_model_metadata",
]
