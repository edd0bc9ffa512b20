"""A small, bounds-checked, read-only FlatBuffers table reader (standard library only).

Reading metadata must work on a bare runtime install (``tflite_runtime`` ships no schema
code), and it must turn a garbage or truncated file into a clean error instead of an
``IndexError`` deep inside generated code — so every offset is checked against the buffer
before it is followed. Only what the two schemas we read need is here: scalars, strings,
sub-tables, vectors of scalars / tables / strings and byte vectors.

FlatBuffers layout in one paragraph: the buffer starts with a uint32 offset to the root
table (then, optionally, a 4-byte file identifier). A table starts with an int32 ``soffset``;
``table_pos - soffset`` is its vtable: uint16 vtable size, uint16 table size, then one
uint16 per field slot giving the field's offset inside the table (0 = absent, use default).
Offset-typed fields (strings, vectors, tables) hold a uint32 relative to their own position;
vectors and strings begin with a uint32 element count.
"""

from __future__ import annotations

import struct


class FlatBufferError(ValueError):
    """The bytes are not a well-formed FlatBuffer (garbage or truncated)."""


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class Table:
    """One FlatBuffers table inside ``buf`` at ``pos``; fields are read by slot number."""

    __slots__ = ("buf", "pos", "_vt", "_vt_len")

    def __init__(self, buf: bytes | memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        _need(buf, pos, 4, "table")
        vt = pos - _I32.unpack_from(buf, pos)[0]
        _need(buf, vt, 4, "vtable")
        vt_len = _U16.unpack_from(buf, vt)[0]
        if vt_len < 4 or vt_len % 2:
            raise FlatBufferError(f"bad vtable size {vt_len} at {vt}")
        _need(buf, vt, vt_len, "vtable")
        self._vt, self._vt_len = vt, vt_len

    # -- raw field access ------------------------------------------------------------------
    def _field(self, slot: int) -> int:
        """Absolute position of field ``slot``'s value, or 0 when the field is absent."""
        entry = 4 + 2 * slot
        if entry >= self._vt_len:
            return 0
        rel = _U16.unpack_from(self.buf, self._vt + entry)[0]
        return self.pos + rel if rel else 0

    def _deref(self, at: int) -> int:
        _need(self.buf, at, 4, "offset")
        return at + _U32.unpack_from(self.buf, at)[0]

    def has(self, slot: int) -> bool:
        return self._field(slot) != 0

    # -- typed accessors -------------------------------------------------------------------
    def scalar(self, slot: int, fmt: str, default: int | float = 0) -> int | float:
        """A scalar field; ``fmt`` is a :mod:`struct` code such as ``"b"``, ``"I"``, ``"Q"``."""
        at = self._field(slot)
        if not at:
            return default
        s = struct.Struct("<" + fmt)
        _need(self.buf, at, s.size, "scalar")
        return s.unpack_from(self.buf, at)[0]

    def string(self, slot: int) -> str | None:
        at = self._field(slot)
        if not at:
            return None
        return _string_at(self.buf, self._deref(at))

    def table(self, slot: int) -> Table | None:
        at = self._field(slot)
        return Table(self.buf, self._deref(at)) if at else None

    def _vector(self, slot: int, elem_size: int) -> tuple[int, int] | None:
        at = self._field(slot)
        if not at:
            return None
        start = self._deref(at)
        _need(self.buf, start, 4, "vector length")
        n = _U32.unpack_from(self.buf, start)[0]
        _need(self.buf, start + 4, n * elem_size, "vector")
        return start + 4, n

    def vector_len(self, slot: int) -> int:
        vec = self._vector(slot, 0)
        return vec[1] if vec else 0

    def scalars(self, slot: int, fmt: str) -> list | None:
        s = struct.Struct("<" + fmt)
        vec = self._vector(slot, s.size)
        if vec is None:
            return None
        start, n = vec
        return [s.unpack_from(self.buf, start + i * s.size)[0] for i in range(n)]

    def bytes_span(self, slot: int) -> tuple[int, int] | None:
        """(absolute start, length) of a ``[ubyte]`` field, without copying it."""
        return self._vector(slot, 1)

    def tables(self, slot: int) -> list[Table]:
        vec = self._vector(slot, 4)
        if vec is None:
            return []
        start, n = vec
        return [Table(self.buf, self._deref(start + 4 * i)) for i in range(n)]

    def table_at(self, slot: int, index: int) -> Table:
        vec = self._vector(slot, 4)
        if vec is None or not 0 <= index < vec[1]:
            raise FlatBufferError(f"index {index} out of range for field {slot}")
        return Table(self.buf, self._deref(vec[0] + 4 * index))

    def strings(self, slot: int) -> list[str]:
        vec = self._vector(slot, 4)
        if vec is None:
            return []
        start, n = vec
        return [_string_at(self.buf, self._deref(start + 4 * i)) for i in range(n)]


def root(buf: bytes | memoryview, identifier: bytes | None = None) -> Table:
    """The root table of a finished buffer, optionally checking its 4-byte file identifier."""
    if len(buf) < 8:
        raise FlatBufferError(f"only {len(buf)} bytes")
    if identifier is not None and bytes(buf[4:8]) != identifier:
        raise FlatBufferError(f"file identifier {bytes(buf[4:8])!r}, expected {identifier!r}")
    return Table(buf, _U32.unpack_from(buf, 0)[0])


def _string_at(buf: bytes | memoryview, start: int) -> str:
    _need(buf, start, 4, "string length")
    n = _U32.unpack_from(buf, start)[0]
    _need(buf, start + 4, n, "string")
    try:
        return bytes(buf[start + 4 : start + 4 + n]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlatBufferError(f"string at {start} is not UTF-8: {exc}") from None


def _need(buf: bytes | memoryview, start: int, size: int, what: str) -> None:
    if start < 0 or size < 0 or start + size > len(buf):
        raise FlatBufferError(
            f"{what} at byte {start} (+{size}) lies outside the {len(buf)}-byte buffer"
        )
