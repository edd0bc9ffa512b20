"""``edgemobile models``: the zoo — alphas and resolutions (defaults marked), preprocessing,
and the weights files ``--weights imagenet`` downloads."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.console import add_json_flags, check_json, write_json


def register(sub, prep) -> None:
    p = sub.add_parser("models", help="list the zoo: alphas, resolutions, defaults, preprocessing, weights files",
                       description="Every zoo family: its alphas and resolutions (* marks the defaults), its "
                       "preprocessing and the weights files --weights imagenet downloads, and where they are cached.")
    add_json_flags(p, "the list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_json(args)
    result = api.models()
    print(result)
    write_json(args, result.as_dict())
    return 0
