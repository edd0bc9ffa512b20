"""``edgemobile info MODEL.tflite``: what a .tflite file carries — precision, input/output
tensors and quantization, preprocessing, labels, provenance, ops and XNNPACK coverage.
Runtime install only, no TensorFlow; third-party files without edgemobile metadata too."""

from __future__ import annotations

import argparse
import json


def register(sub, prep) -> None:
    p = sub.add_parser(
        "info", help="what a .tflite carries: precision, tensors, preprocessing, labels, provenance, ops",
        description="Describe a .tflite file: precision, input/output dtype, shape and quantization, the "
        "preprocessing and labels in its metadata, its provenance (weights sha256, techniques, calibration, "
        "edgemobile version), op counts by type and how many ops XNNPACK takes. Needs only the runtime install.",
    )
    p.add_argument("model", help=".tflite file")
    p.add_argument("--json", help="also write the description to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from edgemobile import api
    from edgemobile.outputs import check_output, write_atomic

    if args.json:
        check_output(args.json, args.force)
    result = api.info(args.model)
    print(result)
    if args.json:
        write_atomic(args.json, json.dumps(result.as_dict(), indent=2) + "\n", force=args.force)
    return 0
