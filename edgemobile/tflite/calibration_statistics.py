"""The min/max statistics a calibrated TFLite model records per tensor (the converter's
calibration output, which its quantizer reads): where they sit in the flatbuffer, reading them,
and overwriting them in place."""

from __future__ import annotations

import struct

from edgemobile.tflite.flatbuf import root


def statistic_slots(buf: bytearray) -> dict[int, tuple[str, int, int]]:
    """Tensor index → (name, byte offset of its recorded min, of its recorded max)."""
    model = root(bytes(buf))
    subgraph = model.tables(2)[0]
    slots = {}
    for index, tensor in enumerate(subgraph.tables(0)):
        q = tensor.table(4)
        if q is None:
            continue
        mins, maxs = q._vector(0, 4), q._vector(1, 4)
        if mins and maxs and mins[1] == 1 and maxs[1] == 1:
            slots[index] = (tensor.string(3) or str(index), mins[0], maxs[0])
    return slots


def recorded_statistics(buf: bytearray, slots: dict) -> dict[int, tuple[float, float]]:
    """Tensor index → its recorded (min, max), at the ``slots`` :func:`statistic_slots` found."""
    return {i: (struct.unpack_from("<f", buf, lo)[0], struct.unpack_from("<f", buf, hi)[0])
            for i, (_, lo, hi) in slots.items()}


def write_statistics(buf: bytearray, lo_at: int, hi_at: int, lo: float, hi: float) -> None:
    """Overwrite one tensor's recorded (min, max) in place, at its slots' byte offsets."""
    struct.pack_into("<f", buf, lo_at, lo)
    struct.pack_into("<f", buf, hi_at, hi)
