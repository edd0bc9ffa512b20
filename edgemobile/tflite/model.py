"""Just enough of the TFLite model schema (``tensorflow/lite/schema/schema.fbs``, file
identifier ``"TFL3"``) to find the metadata buffer and describe the main subgraph's inputs
and outputs — read with the stdlib reader, so it works on a bare ``tflite_runtime``.

Slots used::

    table Model { 0 version:uint; 1 operator_codes; 2 subgraphs:[SubGraph];
                  3 description:string; 4 buffers:[Buffer]; 5 metadata_buffer:[int];
                  6 metadata:[Metadata]; 7 signature_defs; ... }
    table SubGraph { 0 tensors:[Tensor]; 1 inputs:[int]; 2 outputs:[int]; 3 operators;
                     4 name:string; }
    table Tensor { 0 shape:[int]; 1 type:TensorType(byte); 2 buffer:uint; 3 name:string;
                   4 quantization:QuantizationParameters; }
    table QuantizationParameters { 0 min:[float]; 1 max:[float]; 2 scale:[float];
                                   3 zero_point:[long]; }
    table Buffer { 0 data:[ubyte]; 1 offset:ulong; 2 size:ulong; }
                 // offset > 1: data lives at that file offset, outside the flatbuffer
    table Metadata { 0 name:string; 1 buffer:uint; }
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from edgemobile.errors import BadModelFileError
from edgemobile.inputs import reading
from edgemobile.tflite.flatbuf import FlatBufferError, Table, root

TFLITE_FILE_IDENTIFIER = b"TFL3"

# enum TensorType (subset we name in messages; the rest print as numbers)
TENSOR_TYPE_NAMES = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    5: "string",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float64",
}

_MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 2, 4, 6
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS = 0, 1, 2
_T_SHAPE, _T_TYPE, _T_NAME, _T_QUANT = 0, 1, 3, 4
_Q_SCALE, _Q_ZERO_POINT = 2, 3
_BUF_DATA, _BUF_OFFSET, _BUF_SIZE = 0, 1, 2
_MD_NAME, _MD_BUFFER = 0, 1


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor of the main subgraph."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "float32", "uint8", "int8", ...
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()


@dataclasses.dataclass
class ModelView:
    """The parts of a .tflite file that metadata handling needs."""

    num_subgraphs: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: list[tuple[str, int]]  # Model.metadata entries: (name, buffer index)
    buffer_spans: list[tuple[int, int]]  # (start, length) of each Buffer's bytes
    has_external_buffers: bool  # some Buffer stores its data at a file offset (> 2 GB models)

    def metadata_buffer(self, name: str) -> tuple[int, int] | None:
        """(start, length) of the buffer named ``name`` in Model.metadata, if any."""
        for entry, index in self.metadata:
            if entry == name:
                if not 0 <= index < len(self.buffer_spans):
                    raise FlatBufferError(f"metadata {name!r} points to missing buffer {index}")
                return self.buffer_spans[index]
        return None


def parse_model(buf: bytes | memoryview) -> ModelView:
    """Read the model table; :class:`FlatBufferError` if this is not a well-formed TFLite
    flatbuffer (wrong identifier, or offsets running past the end: a truncated file)."""
    model = root(buf, TFLITE_FILE_IDENTIFIER)
    spans: list[tuple[int, int]] = []
    external = False
    for b in model.tables(_MODEL_BUFFERS):
        offset = int(b.scalar(_BUF_OFFSET, "Q", 0))
        if offset > 1:
            external = True
            size = int(b.scalar(_BUF_SIZE, "Q", 0))
            if offset + size > len(buf):
                raise FlatBufferError(f"buffer data at {offset} (+{size}) past end of file")
            spans.append((offset, size))
            continue
        spans.append(b.bytes_span(_BUF_DATA) or (0, 0))
    metadata = []
    for md in model.tables(_MODEL_METADATA):
        metadata.append((md.string(_MD_NAME) or "", int(md.scalar(_MD_BUFFER, "I", 0))))
    subgraphs = model.tables(_MODEL_SUBGRAPHS)
    if not subgraphs:
        raise FlatBufferError("model has no subgraph")
    main = subgraphs[0]
    inputs = [_tensor(main, i) for i in main.scalars(_SG_INPUTS, "i") or []]
    outputs = [_tensor(main, i) for i in main.scalars(_SG_OUTPUTS, "i") or []]
    return ModelView(
        num_subgraphs=len(subgraphs),
        inputs=inputs,
        outputs=outputs,
        metadata=metadata,
        buffer_spans=spans,
        has_external_buffers=external,
    )


_MODEL_OPERATOR_CODES, _MODEL_SIGNATURE_DEFS = 1, 7
_OPCODE_CUSTOM, _SG_OPERATORS, _SG_NAME = 1, 3, 4
_SIG_INPUTS, _SIG_OUTPUTS, _SIG_KEY, _TMAP_NAME = 0, 1, 2, 0


def check_strings(buf: bytes | memoryview) -> None:
    """:class:`FlatBufferError` unless every string the interpreter's Python API decodes —
    tensor and subgraph names, custom op codes, signature keys and names — is in bounds and
    UTF-8 (a corrupted name otherwise ends in a ``UnicodeDecodeError`` from ``TensorName``)."""
    model = root(buf, TFLITE_FILE_IDENTIFIER)
    for code in model.tables(_MODEL_OPERATOR_CODES):
        code.string(_OPCODE_CUSTOM)
    for sg in model.tables(_MODEL_SUBGRAPHS):
        sg.string(_SG_NAME)
        for tensor in sg.tables(_SG_TENSORS):
            tensor.string(_T_NAME)
    for sig in model.tables(_MODEL_SIGNATURE_DEFS):
        sig.string(_SIG_KEY)
        for slot in (_SIG_INPUTS, _SIG_OUTPUTS):
            for entry in sig.tables(slot):
                entry.string(_TMAP_NAME)


_T_BUFFER, _T_IS_VARIABLE, _OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS = 2, 5, 0, 1, 2
_OPCODE_DEPRECATED_BUILTIN, _OPCODE_BUILTIN = 0, 3
# CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV: input 1 (weights / filter) is
# required; the kernels dereference it without a check and crash on a missing (-1) one.
_WEIGHTS_REQUIRED = {3, 4, 9, 67}


def check_constants(buf: bytes | memoryview) -> None:
    """:class:`FlatBufferError` unless every op has its required tensors — no missing (-1)
    output or first input, no missing weights of a conv/fully-connected op — and every op input
    that nothing computes (not a subgraph input, no op's output, not a variable) has data in its
    buffer. (Otherwise the model loads, then fails at ``invoke()`` with "Input tensor N lacks
    data" or crashes the process.)"""
    view = parse_model(buf)
    model = root(buf, TFLITE_FILE_IDENTIFIER)
    codes = [max(int(c.scalar(_OPCODE_DEPRECATED_BUILTIN, "b", 0)), int(c.scalar(_OPCODE_BUILTIN, "i", 0)))
             for c in model.tables(_MODEL_OPERATOR_CODES)]
    for g, sg in enumerate(model.tables(_MODEL_SUBGRAPHS)):
        tensors = sg.tables(_SG_TENSORS)
        computed = set(sg.scalars(_SG_INPUTS, "i") or [])
        operators = sg.tables(_SG_OPERATORS)
        for op in operators:
            computed.update(op.scalars(_OP_OUTPUTS, "i") or [])
        for k, op in enumerate(operators):
            inputs, outputs = op.scalars(_OP_INPUTS, "i") or [], op.scalars(_OP_OUTPUTS, "i") or []
            opcode = int(op.scalar(_OP_OPCODE, "I", 0))
            if opcode >= len(codes):
                raise FlatBufferError(f"op {k} of subgraph {g} has operator code {opcode}, which does not exist")
            required = 2 if codes[opcode] in _WEIGHTS_REQUIRED else 1
            if any(t < 0 for t in outputs) or len(inputs) < required or any(t < 0 for t in inputs[:required]):
                raise FlatBufferError(f"op {k} of subgraph {g} lacks a required input or output tensor")
            for t in inputs:
                if t < 0 or t in computed:
                    continue
                if t >= len(tensors):
                    raise FlatBufferError(f"op {k} of subgraph {g} reads tensor {t}, which does not exist")
                tensor = tensors[t]
                if tensor.scalar(_T_IS_VARIABLE, "B", 0):
                    continue
                index = int(tensor.scalar(_T_BUFFER, "I", 0))
                if not 0 < index < len(view.buffer_spans) or view.buffer_spans[index][1] == 0:
                    raise FlatBufferError(f"op {k} of subgraph {g} reads constant tensor {t}, whose buffer "
                                          f"{index} holds no data")


def constant_spans(buf: bytes | memoryview) -> dict[int, tuple[int, int]]:
    """Tensor index (main subgraph) → (start, length) in ``buf`` of its constant data, for every
    tensor whose buffer holds data (weights, biases, shapes)."""
    spans = parse_model(buf).buffer_spans
    main = root(buf, TFLITE_FILE_IDENTIFIER).tables(_MODEL_SUBGRAPHS)[0]
    found = {}
    for index, tensor in enumerate(main.tables(_SG_TENSORS)):
        buffer = int(tensor.scalar(_T_BUFFER, "I", 0))
        if 0 < buffer < len(spans) and spans[buffer][1]:
            found[index] = spans[buffer]
    return found


def _tensor(subgraph: Table, index: int) -> TensorInfo:
    t = subgraph.table_at(_SG_TENSORS, index)
    dtype = int(t.scalar(_T_TYPE, "b", 0))
    q = t.table(_T_QUANT)
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    if q is not None:
        scale = tuple(q.scalars(_Q_SCALE, "f") or ())
        zero_point = tuple(q.scalars(_Q_ZERO_POINT, "q") or ())
    return TensorInfo(
        name=t.string(_T_NAME) or "",
        shape=tuple(t.scalars(_T_SHAPE, "i") or ()),
        dtype=TENSOR_TYPE_NAMES.get(dtype, f"type{dtype}"),
        scale=scale,
        zero_point=zero_point,
    )


def load_model_bytes(
    model: bytes | bytearray | memoryview | str | os.PathLike,
) -> tuple[bytes, str]:
    """(content, name for messages) of a model given as bytes or a path."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "model bytes"
    return read_tflite(model), str(model)


def read_tflite(path: str | os.PathLike) -> bytes:
    """The bytes of a .tflite file, or a one-line error if it is not one."""
    path = Path(path)
    with reading(path, "model file"):
        data = path.read_bytes()
    if len(data) < 8 or data[4:8] != TFLITE_FILE_IDENTIFIER:
        raise BadModelFileError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    return data


def check_flatbuffer(data: bytes, source: str) -> None:
    """Reject, with one line, a model whose flatbuffer the interpreter or its Python API would
    choke on in ways it does not report cleanly: offsets past the end, names that are not UTF-8,
    constant op inputs without data.
    Stdlib reader only; the interpreter's own verifier checks the rest."""
    try:
        check_strings(data)
        check_constants(data)
    except FlatBufferError as exc:
        raise BadModelFileError(f"{source}: not a valid TFLite model ({exc})") from None
