"""``edgemobile info MODEL.tflite``: what a .tflite file carries — precision, input/output
tensors and quantization, preprocessing, labels, provenance, ops and XNNPACK coverage.
Runtime install only, no TensorFlow; third-party files without edgemobile metadata too."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.console import add_json_flags, check_json, write_json


def register(sub, prep) -> None:
    p = sub.add_parser(
        "info", help="what a .tflite carries: precision, tensors, preprocessing, labels, provenance, ops",
        description="Describe a .tflite file: precision, input/output dtype, shape and quantization, the "
        "preprocessing and labels in its metadata, its provenance (weights sha256, techniques, calibration, "
        "edgemobile version), op counts by type and how many ops XNNPACK takes. Needs only the runtime install.",
    )
    p.add_argument("model", help=".tflite file")
    add_json_flags(p, "the description")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_json(args)
    result = api.info(args.model)
    print(result)
    write_json(args, result.as_dict())
    return 0
