"""sha256 of what a .tflite model computes: the flatbuffer re-serialized without its
``Model.metadata`` entries (edgemobile's provenance holds a creation time and durations, so
whole-file bytes differ run to run) and without any file packed after the flatbuffer.

Operators, operator codes, tensors (shapes, types, quantization) and every buffer that is not
metadata are kept, so two models with the same digest compute the same thing.

    python tools/model_digest.py model.tflite [more.tflite ...]
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import flatbuffers
import numpy as np

from edgemobile.tflite.object_api import schema_module


def computation_digest(data: bytes) -> str:
    """sha256 (hex) of the model in ``data`` with its metadata removed.

    Args:
        data: the .tflite file's bytes.
    """
    schema = schema_module()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for entry in model.metadata or []:
        # Keep the buffer list's indices (tensors point into it); empty the metadata's data.
        model.buffers[entry.buffer].data = np.zeros(0, dtype=np.uint8)
    model.metadata = None
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return hashlib.sha256(bytes(builder.Output())).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite files")
    args = parser.parse_args(argv)
    for path in args.models:
        with open(path, "rb") as f:
            print(f"{computation_digest(f.read())}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
