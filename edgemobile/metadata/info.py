""":class:`ModelInfo`: what edgemobile writes into, and reads back from, a .tflite's metadata."""

from __future__ import annotations

import dataclasses

from edgemobile.data.preprocessing import PreprocessSpec

# Names of the files packed into the model's zip.
LABELS_FILE = "labels.txt"
INFO_FILE = "edgemobile.json"
# Value of edgemobile.json's "format" key; bump when its layout changes incompatibly.
INFO_FORMAT = "edgemobile-metadata/1"


@dataclasses.dataclass
class ModelInfo:
    """Human and machine readable facts about one image classifier.

    Written by :func:`~edgemobile.metadata.embed_metadata` as standard TFLite Model Metadata
    (what MediaPipe Tasks and the TFLite metadata tools read) plus two packed files,
    ``labels.txt`` and ``edgemobile.json``; returned by
    :func:`~edgemobile.metadata.read_metadata`.

    Attributes:
        name, description, version, author, license: ModelMetadata's text fields
            ("" = not set).
        labels: one class name per model output, in output order (``labels.txt``, attached
            to the output tensor as TENSOR_AXIS_LABELS — MediaPipe's ``category_name``).
        preprocess: the full preprocessing recipe. Its ``mean``/``std`` become the input
            tensor's NormalizationOptions; the whole spec is stored in ``edgemobile.json``.
            On read: from ``edgemobile.json`` when present, otherwise rebuilt from
            NormalizationOptions and a square input size (resize_shorter = size / 0.875,
            a guess), otherwise None.
        normalization: ``(mean, std)`` per channel in 0..255 pixel units, TFLite
            convention ``(pixel - mean) / std``. On write it is only used when
            ``preprocess`` is None (and must agree with it otherwise); on read it is exactly
            what the input tensor's NormalizationOptions say (1 or 3 values each), or None.
        extra: the ``edgemobile.json`` document. On write, any JSON-serializable keys of
            the caller are kept — by convention ``extra["provenance"]`` holds ``model``,
            ``weights``, ``calibration`` and ``precision`` — and edgemobile sets
            ``format``, ``preprocess``, ``labels`` (file name and count) and
            ``provenance["edgemobile_version"]``. On read: the whole document ({} if none).

    Filled by ``read_metadata`` only (ignored on write):
        color_space: the input's ImageProperties color space ("RGB"), or None.
        labels_file: name of the output tensor's TENSOR_AXIS_LABELS file, or None.
        min_parser_version: ModelMetadata.min_parser_version.
    """

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    labels: list[str] = dataclasses.field(default_factory=list)
    preprocess: PreprocessSpec | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    color_space: str | None = None
    labels_file: str | None = None
    min_parser_version: str | None = None

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The normalization to write: from ``preprocess`` if set, else ``normalization``."""
        if self.preprocess is not None:
            return tuple(self.preprocess.mean), tuple(self.preprocess.std)
        if self.normalization is not None:
            mean, std = self.normalization
            return tuple(float(v) for v in mean), tuple(float(v) for v in std)
        return None
