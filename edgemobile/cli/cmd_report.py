"""``edgemobile report --model SPEC … --data DIR --out DIR [--min-agreement A]``: float vs int8
accuracy, size and latency of zoo models in one Markdown table, a JSON file and a
top-1-vs-latency plot (with an accuracy target: each model's candidates and their Pareto plot)."""

from __future__ import annotations

import argparse

from edgemobile import api
from edgemobile.cli.arguments import (
    add_calibration_flags,
    add_cluster_flags,
    add_target_flags,
    add_user_model_flags,
    cluster_kwargs,
    options_from_args,
    positive_int,
    target_kwargs,
)
from edgemobile.eval.cluster import DEFAULT_CONVERSION_MEMORY_GB


def register(sub, prep) -> None:
    p = sub.add_parser(
        "report", help="float vs int8 top-1/top-5, agreement, size and latency of models: Markdown, JSON, plot",
        description="Convert each model to float32 and int8, evaluate both on the same labeled images, time "
        "one-thread inference, and write report.md (table), report.json and report.png (top-1 vs latency) "
        "to --out. --ablation converts each model once per technique configuration instead (plain converter, "
        "each technique alone, all) to show what each one buys. With an accuracy target (--min-agreement/"
        "--max-drop) each int8 model is the fastest candidate that meets it, and report_candidates.png plots "
        "every model's candidates (held-apart agreement vs latency, Pareto fronts).",
    )
    p.add_argument("--model", dest="models", action="append", required=True, metavar="SPEC",
                   help="zoo model with settings, repeatable: NAME[:alpha=A,resolution=R,weights=FILE,label=TEXT], "
                   "e.g. mobilenet:alpha=0.25,weights=mobilenet_2_5_224_tf.h5; or your Keras model file "
                   "FILE.keras[:preprocess=P,labels=FILE,label=TEXT] (default: the --preprocess/--mean/--std/"
                   "--labels flags below; every model must have the same classes)")
    p.add_argument("--data", required=True, help="labeled images (synset subfolders, <synset>_*.JPEG files or "
                   "class-name folders)")
    p.add_argument("--out", required=True, help="folder for report.md, report.json and report.png, and "
                   "report_candidates.png with an accuracy target (created)")
    add_calibration_flags(p, "seed for calibration and --limit draws")
    add_target_flags(p, one_model=False)
    p.add_argument("--ablation", action="store_true",
                   help="one int8 model per configuration: plain converter, each technique alone, all")
    p.add_argument("--limit", type=positive_int, help="evaluate only N images, drawn stratified across classes")
    p.add_argument("--bench-runs", type=int, default=30, help="timed runs per model for latency (default 30; 0: skip)")
    p.add_argument("--force", action="store_true", help="overwrite existing report files in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_user_model_flags(p)
    add_cluster_flags(p)
    p.add_argument("--conversion-memory", type=float, default=DEFAULT_CONVERSION_MEMORY_GB, metavar="GB",
                   help="memory each conversion task declares to Ray with --cluster (default "
                   f"{DEFAULT_CONVERSION_MEMORY_GB:g}; the default techniques on MobileNetV1 1.0 peak near 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = api.report(args.models, args.data, args.out, calibration=args.calibration,
                        num_calibration=args.num_calibration, seed=args.seed, techniques=options_from_args(args),
                        ablation=args.ablation, limit=args.limit, bench_runs=args.bench_runs,
                        preprocess=args.preprocess, mean=args.mean, std=args.std, crop_fraction=args.crop_fraction,
                        labels=args.labels, conversion_memory_gb=args.conversion_memory, force=args.force,
                        progress=not args.quiet, **target_kwargs(args), **cluster_kwargs(args))
    print(result)
    for path in result.files:
        print(f"wrote {path}")
    return 0
