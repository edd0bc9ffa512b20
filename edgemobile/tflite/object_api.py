"""Rewriting a ``.tflite`` with the TFLite schema's object API (the generated code the installed
runtime ships): load a model as objects, change them, pack them again as the converter does."""

from __future__ import annotations

import numpy as np

from edgemobile.errors import EdgeMobileError

BUFFER_ALIGNMENT = 16  # the converter aligns buffer data to 16 bytes


def schema_module():
    """The TFLite schema object API: ai_edge_litert's, else TensorFlow's (imported only
    here, never at module import time)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise EdgeMobileError(
                "rewriting a TFLite model needs the TFLite schema code of ai-edge-litert: "
                "pip install ai-edge-litert"
            ) from None
    return schema


class AlignedBuffer:
    """Packs a ``BufferT`` with its data aligned to 16 bytes, as the TFLite converter
    writes it (the generated ``BufferT.Pack`` aligns to 1 only)."""

    def __init__(self, schema, buffer) -> None:
        self._schema, self._buffer = schema, buffer

    def Pack(self, builder):  # noqa: N802 - the object API's method name
        schema, buf = self._schema, self._buffer
        data = None
        if buf.data is not None and len(buf.data):
            array = np.ascontiguousarray(buf.data, dtype=np.uint8)
            builder.Prep(BUFFER_ALIGNMENT, array.size)
            data = builder.CreateNumpyVector(array)
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        if buf.offset:
            schema.BufferAddOffset(builder, buf.offset)
        if buf.size:
            schema.BufferAddSize(builder, buf.size)
        return schema.BufferEnd(builder)
