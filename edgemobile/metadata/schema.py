"""The subset of the TFLite Model Metadata schema that image classifiers use, encoded and
decoded by hand.

The schema is the public ``metadata_schema.fbs`` of tensorflow/tflite-support (also shipped
by MediaPipe as ``mediapipe/tasks/metadata/metadata_schema.fbs``), namespace ``tflite``,
file identifier ``"M001"``, schema version 1.5.0. The field subset written and read here,
with vtable slot numbers (a union field ``x`` takes two slots: ``x_type`` then ``x``)::

    table ModelMetadata {            // root_type
      0 name:string;  1 description:string;  2 version:string;
      3 subgraph_metadata:[SubGraphMetadata];  4 author:string;  5 license:string;
      6 associated_files:[AssociatedFile];  7 min_parser_version:string; }
    table SubGraphMetadata {
      0 name:string;  1 description:string;
      2 input_tensor_metadata:[TensorMetadata];  3 output_tensor_metadata:[TensorMetadata];
      4 associated_files:[AssociatedFile];  (5.. process units, groups, custom: unused) }
    table TensorMetadata {
      0 name:string;  1 description:string;  2 dimension_names:[string];  3 content:Content;
      4 process_units:[ProcessUnit];  5 stats:Stats;  6 associated_files:[AssociatedFile]; }
    table Content { 0 content_properties_type:ubyte; 1 content_properties:ContentProperties;
                    2 range:ValueRange; }
    union ContentProperties { FeatureProperties=1, ImageProperties=2,
                              BoundingBoxProperties=3, AudioProperties=4 }
    table FeatureProperties {}
    table ImageProperties { 0 color_space:ColorSpaceType(byte); 1 default_size:ImageSize; }
    enum ColorSpaceType : byte { UNKNOWN=0, RGB=1, GRAYSCALE=2 }
    table ProcessUnit { 0 options_type:ubyte; 1 options:ProcessUnitOptions; }
    union ProcessUnitOptions { NormalizationOptions=1, ScoreCalibrationOptions=2, ... }
    table NormalizationOptions { 0 mean:[float]; 1 std:[float]; }
    table Stats { 0 max:[float]; 1 min:[float]; }
    table AssociatedFile { 0 name:string; 1 description:string;
                           2 type:AssociatedFileType(byte); 3 locale:string; 4 version:string; }
    enum AssociatedFileType : byte { UNKNOWN=0, DESCRIPTIONS=1, TENSOR_AXIS_LABELS=2,
        TENSOR_VALUE_LABELS=3, TENSOR_AXIS_SCORE_CALIBRATION=4, VOCABULARY=5,
        SCANN_INDEX_FILE=6 }

Writing uses the ``flatbuffers`` package's ``Builder`` (imported lazily); reading uses the
standard-library reader in :mod:`edgemobile.tflite.flatbuf`.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

from edgemobile.tflite.flatbuf import FlatBufferError, Table, root

METADATA_FILE_IDENTIFIER = b"M001"
# Name of the Model.metadata entry whose buffer holds the ModelMetadata flatbuffer.
METADATA_NAME = "TFLITE_METADATA"

# Every field written here exists since schema 1.0.0; tflite-support's
# GetMinimumMetadataParserVersion only raises the version for features we never write
# (VOCABULARY files → 1.0.1, subgraph process units / tensor groups, tokenizer options,
# AudioProperties). ``min_parser_version`` mirrors that rule for our subset.
BASE_PARSER_VERSION = "1.0.0"

# enum AssociatedFileType
FILE_UNKNOWN = 0
FILE_DESCRIPTIONS = 1
FILE_TENSOR_AXIS_LABELS = 2
FILE_TENSOR_VALUE_LABELS = 3
FILE_TENSOR_AXIS_SCORE_CALIBRATION = 4
FILE_VOCABULARY = 5
FILE_SCANN_INDEX_FILE = 6
FILE_TYPE_NAMES = {
    FILE_UNKNOWN: "UNKNOWN",
    FILE_DESCRIPTIONS: "DESCRIPTIONS",
    FILE_TENSOR_AXIS_LABELS: "TENSOR_AXIS_LABELS",
    FILE_TENSOR_VALUE_LABELS: "TENSOR_VALUE_LABELS",
    FILE_TENSOR_AXIS_SCORE_CALIBRATION: "TENSOR_AXIS_SCORE_CALIBRATION",
    FILE_VOCABULARY: "VOCABULARY",
    FILE_SCANN_INDEX_FILE: "SCANN_INDEX_FILE",
}

# enum ColorSpaceType
COLOR_SPACE_NAMES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
_COLOR_SPACE_IDS = {v: k for k, v in COLOR_SPACE_NAMES.items()}

# union ContentProperties
CONTENT_FEATURE = 1
CONTENT_IMAGE = 2
_CONTENT_NAMES = {1: "feature", 2: "image", 3: "bounding_box", 4: "audio"}
# union ProcessUnitOptions
PROCESS_UNIT_NORMALIZATION = 1

# Slot numbers (see the module docstring).
_MM_NAME, _MM_DESCRIPTION, _MM_VERSION, _MM_SUBGRAPHS = 0, 1, 2, 3
_MM_AUTHOR, _MM_LICENSE, _MM_FILES, _MM_MIN_PARSER = 4, 5, 6, 7
_MM_SLOTS = 8
_SG_INPUTS, _SG_OUTPUTS, _SG_FILES = 2, 3, 4
_SG_SLOTS = 10
_TM_NAME, _TM_DESCRIPTION, _TM_CONTENT, _TM_PROCESS_UNITS, _TM_STATS, _TM_FILES = 0, 1, 3, 4, 5, 6
_TM_SLOTS = 7
_CONTENT_TYPE, _CONTENT_PROPS = 0, 1
_CONTENT_SLOTS = 3
_IMAGE_COLOR_SPACE = 0
_IMAGE_SLOTS = 2
_PU_TYPE, _PU_OPTIONS = 0, 1
_PU_SLOTS = 2
_NORM_MEAN, _NORM_STD = 0, 1
_STATS_MAX, _STATS_MIN = 0, 1
_AF_NAME, _AF_DESCRIPTION, _AF_TYPE, _AF_LOCALE = 0, 1, 2, 3
_AF_SLOTS = 5


@dataclasses.dataclass
class FileMeta:
    """An AssociatedFile record: the file itself travels in the zip appended to the model."""

    name: str
    description: str = ""
    type: int = FILE_UNKNOWN
    locale: str = ""


@dataclasses.dataclass
class TensorMeta:
    """A TensorMetadata record.

    ``content`` is ``"image"`` (ImageProperties, with ``color_space``) or ``"feature"``
    (FeatureProperties) or None; ``normalization`` is ``(mean, std)``; ``stats`` is
    ``(max, min)`` — the schema's field order.
    """

    name: str
    description: str = ""
    content: str | None = None
    color_space: str | None = "RGB"
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    files: list[FileMeta] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ModelMeta:
    """A ModelMetadata record with one SubGraphMetadata (TFLite metadata supports one)."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    inputs: list[TensorMeta] = dataclasses.field(default_factory=list)
    outputs: list[TensorMeta] = dataclasses.field(default_factory=list)
    files: list[FileMeta] = dataclasses.field(default_factory=list)
    min_parser_version: str = ""

    def all_files(self) -> list[FileMeta]:
        """Every AssociatedFile record: model level first, then per tensor."""
        found = list(self.files)
        for tensor in self.inputs + self.outputs:
            found.extend(tensor.files)
        return found


def min_parser_version(meta: ModelMeta) -> str:
    """The version tflite-support's MetadataPopulator would record for ``meta``."""
    if any(f.type == FILE_VOCABULARY for f in meta.all_files()):
        return "1.0.1"
    return BASE_PARSER_VERSION


# -- writing ----------------------------------------------------------------------------
def build_model_metadata(meta: ModelMeta) -> bytes:
    """Serialize ``meta`` to a finished ``ModelMetadata`` flatbuffer with identifier M001.

    ``min_parser_version`` is computed (as the MetadataPopulator does), not taken from
    ``meta``.
    """
    import flatbuffers  # lazy: reading never needs it

    b = flatbuffers.Builder(1024)

    def string(text: str | None) -> int | None:
        return b.CreateString(text) if text else None

    def floats(values: Sequence[float]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def offsets(items: Sequence[int]) -> int:
        b.StartVector(4, len(items), 4)
        for off in reversed(items):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def table(num_slots: int, fields: Sequence[tuple[int, str, int | None]]) -> int:
        """fields: (slot, kind, value) with kind "offset" | "byte" | "ubyte"; None skipped."""
        b.StartObject(num_slots)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(slot, value, 0)
            else:
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def file_list(files: Sequence[FileMeta]) -> int | None:
        if not files:
            return None
        built = []
        for f in files:
            name, desc, locale = string(f.name), string(f.description), string(f.locale)
            built.append(
                table(
                    _AF_SLOTS,
                    [
                        (_AF_NAME, "offset", name),
                        (_AF_DESCRIPTION, "offset", desc),
                        (_AF_TYPE, "byte", f.type),
                        (_AF_LOCALE, "offset", locale),
                    ],
                )
            )
        return offsets(built)

    def tensor(t: TensorMeta) -> int:
        name, desc = string(t.name), string(t.description)
        content = None
        if t.content == "image":
            props = table(
                _IMAGE_SLOTS, [(_IMAGE_COLOR_SPACE, "byte", _COLOR_SPACE_IDS[t.color_space])]
            )
            content = table(
                _CONTENT_SLOTS,
                [(_CONTENT_TYPE, "ubyte", CONTENT_IMAGE), (_CONTENT_PROPS, "offset", props)],
            )
        elif t.content == "feature":
            props = table(0, [])
            content = table(
                _CONTENT_SLOTS,
                [(_CONTENT_TYPE, "ubyte", CONTENT_FEATURE), (_CONTENT_PROPS, "offset", props)],
            )
        elif t.content is not None:
            raise ValueError(f"unsupported tensor content {t.content!r}")
        units = None
        if t.normalization is not None:
            mean, std = floats(t.normalization[0]), floats(t.normalization[1])
            norm = table(2, [(_NORM_MEAN, "offset", mean), (_NORM_STD, "offset", std)])
            unit = table(
                _PU_SLOTS,
                [(_PU_TYPE, "ubyte", PROCESS_UNIT_NORMALIZATION), (_PU_OPTIONS, "offset", norm)],
            )
            units = offsets([unit])
        stats = None
        if t.stats is not None:
            smax, smin = floats(t.stats[0]), floats(t.stats[1])
            stats = table(2, [(_STATS_MAX, "offset", smax), (_STATS_MIN, "offset", smin)])
        files = file_list(t.files)
        return table(
            _TM_SLOTS,
            [
                (_TM_NAME, "offset", name),
                (_TM_DESCRIPTION, "offset", desc),
                (_TM_CONTENT, "offset", content),
                (_TM_PROCESS_UNITS, "offset", units),
                (_TM_STATS, "offset", stats),
                (_TM_FILES, "offset", files),
            ],
        )

    inputs = offsets([tensor(t) for t in meta.inputs])
    outputs = offsets([tensor(t) for t in meta.outputs])
    subgraph = table(_SG_SLOTS, [(_SG_INPUTS, "offset", inputs), (_SG_OUTPUTS, "offset", outputs)])
    subgraphs = offsets([subgraph])
    fields = [
        (_MM_NAME, "offset", string(meta.name)),
        (_MM_DESCRIPTION, "offset", string(meta.description)),
        (_MM_VERSION, "offset", string(meta.version)),
        (_MM_SUBGRAPHS, "offset", subgraphs),
        (_MM_AUTHOR, "offset", string(meta.author)),
        (_MM_LICENSE, "offset", string(meta.license)),
        (_MM_FILES, "offset", file_list(meta.files)),
        (_MM_MIN_PARSER, "offset", string(min_parser_version(meta))),
    ]
    b.Finish(table(_MM_SLOTS, fields), file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(b.Output())


# -- reading ----------------------------------------------------------------------------
def parse_model_metadata(buf: bytes | memoryview) -> ModelMeta:
    """Decode a ``ModelMetadata`` flatbuffer; :class:`FlatBufferError` if malformed.

    Only the first SubGraphMetadata is read (the schema says the 0th is the main one).
    """
    mm = root(buf, METADATA_FILE_IDENTIFIER)
    meta = ModelMeta(
        name=mm.string(_MM_NAME) or "",
        description=mm.string(_MM_DESCRIPTION) or "",
        version=mm.string(_MM_VERSION) or "",
        author=mm.string(_MM_AUTHOR) or "",
        license=mm.string(_MM_LICENSE) or "",
        files=_parse_files(mm, _MM_FILES),
        min_parser_version=mm.string(_MM_MIN_PARSER) or "",
    )
    subgraphs = mm.tables(_MM_SUBGRAPHS)
    if subgraphs:
        sg = subgraphs[0]
        meta.inputs = [_parse_tensor(t) for t in sg.tables(_SG_INPUTS)]
        meta.outputs = [_parse_tensor(t) for t in sg.tables(_SG_OUTPUTS)]
        meta.files.extend(_parse_files(sg, _SG_FILES))
    return meta


def _parse_files(table: Table, slot: int) -> list[FileMeta]:
    return [
        FileMeta(
            name=f.string(_AF_NAME) or "",
            description=f.string(_AF_DESCRIPTION) or "",
            type=int(f.scalar(_AF_TYPE, "b", FILE_UNKNOWN)),
            locale=f.string(_AF_LOCALE) or "",
        )
        for f in table.tables(slot)
    ]


def _parse_tensor(t: Table) -> TensorMeta:
    tm = TensorMeta(
        name=t.string(_TM_NAME) or "",
        description=t.string(_TM_DESCRIPTION) or "",
        color_space=None,
        files=_parse_files(t, _TM_FILES),
    )
    content = t.table(_TM_CONTENT)
    if content is not None:
        kind = int(content.scalar(_CONTENT_TYPE, "B", 0))
        tm.content = _CONTENT_NAMES.get(kind)
        props = content.table(_CONTENT_PROPS)
        if kind == CONTENT_IMAGE and props is not None:
            space = int(props.scalar(_IMAGE_COLOR_SPACE, "b", 0))
            tm.color_space = COLOR_SPACE_NAMES.get(space, f"UNKNOWN({space})")
        elif kind == CONTENT_IMAGE:
            tm.color_space = "UNKNOWN"
    for unit in t.tables(_TM_PROCESS_UNITS):
        if int(unit.scalar(_PU_TYPE, "B", 0)) != PROCESS_UNIT_NORMALIZATION:
            continue
        options = unit.table(_PU_OPTIONS)
        if options is None:
            raise FlatBufferError("NormalizationOptions process unit without options")
        mean = _decimal(options.scalars(_NORM_MEAN, "f"))
        std = _decimal(options.scalars(_NORM_STD, "f"))
        tm.normalization = (mean, std)
        break
    stats = t.table(_TM_STATS)
    if stats is not None:
        tm.stats = (
            _decimal(stats.scalars(_STATS_MAX, "f")),
            _decimal(stats.scalars(_STATS_MIN, "f")),
        )
    return tm


def _decimal(values: list[float] | None) -> tuple[float, ...]:
    """float32 values as the shortest decimals that round-trip (123.675, not
    123.67500305175781), so they compare equal to the numbers that were written."""
    out = []
    for v in values or ():
        exact = struct.pack("<f", v)
        for digits in range(6, 10):
            short = float(f"{v:.{digits}g}")
            if struct.pack("<f", short) == exact:
                break
        out.append(short)
    return tuple(out)
