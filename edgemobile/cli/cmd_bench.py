"""``edgemobile bench MODEL``: latency (median, p90) per threads × XNNPACK setting, model
size, peak memory and an optional per-op profile — runtime install only, no TensorFlow."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.arguments import positive_int
from edgemobile.cli.console import add_json_flags, check_json, write_json


def register(sub, prep) -> None:
    p = sub.add_parser(
        "bench", help="latency, model size and peak memory of a .tflite (threads, XNNPACK on/off)",
        description="Time Interpreter.invoke() on a fixed input for every --threads × --xnnpack setting: "
        "median and p90 latency, model size, peak resident memory of loading + running; --profile adds a "
        "per-op breakdown (each op timed alone). Needs only the runtime install.",
    )
    p.add_argument("model", help=".tflite file")
    p.add_argument("--threads", type=positive_int, nargs="+", default=[1],
                   help="interpreter thread counts to try (default: 1), e.g. --threads 1 2 4")
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs per setting (default 50)")
    p.add_argument("--warmup", type=_non_negative_int, default=5, help="untimed runs first (default 5)")
    xnn = p.add_mutually_exclusive_group()
    xnn.add_argument("--xnnpack", nargs="+", choices=("on", "off"), default=None,
                     help="XNNPACK delegate settings to try (default: on), e.g. --xnnpack on off")
    xnn.add_argument("--no-xnnpack", dest="xnnpack", action="store_const", const=["off"],
                     help="same as --xnnpack off (reference kernels only)")
    p.add_argument("--reference", metavar="FLOAT.tflite",
                   help="also time this model (e.g. the float model an int8 one was made from) under the same "
                   "settings, each right after MODEL's, and say where int8 ran slower than float")
    p.add_argument("--profile", action="store_true",
                   help="per-op breakdown for the first setting (each op cut out and timed alone)")
    add_json_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    check_json(args)
    xnnpack = [choice == "on" for choice in (args.xnnpack or ["on"])]
    result = api.bench(args.model, threads=args.threads, xnnpack=xnnpack, runs=args.runs, warmup=args.warmup,
                       profile=args.profile, reference=args.reference, progress=not args.quiet)
    print(result)
    write_json(args, result.as_dict())
    return 0
