"""``edgemobile report --model SPEC … --data DIR --out DIR``: float vs int8 accuracy, size and
latency of zoo models in one Markdown table, a JSON file and a top-1-vs-latency plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgemobile.errors import EdgeMobileError

FILES = ("report.md", "report.json", "report.png")


def register(sub, prep) -> None:
    from edgemobile.cli.arguments import positive_int
    from edgemobile.cli.main import add_calibration_flags, add_cluster_flags, add_user_model_flags
    from edgemobile.eval.cluster import DEFAULT_CONVERSION_MEMORY_GB

    p = sub.add_parser(
        "report", help="float vs int8 top-1/top-5, agreement, size and latency of models: Markdown, JSON, plot",
        description="Convert each model to float32 and int8, evaluate both on the same labeled images, time "
        "one-thread inference, and write report.md (table), report.json and report.png (top-1 vs latency) "
        "to --out. --ablation converts each model once per technique configuration instead (plain converter, "
        "each technique alone, all) to show what each one buys.",
    )
    p.add_argument("--model", dest="models", action="append", required=True, metavar="SPEC",
                   help="zoo model with settings, repeatable: NAME[:alpha=A,resolution=R,weights=FILE,label=TEXT], "
                   "e.g. mobilenet:alpha=0.25,weights=mobilenet_2_5_224_tf.h5; or your Keras model file "
                   "FILE.keras[:preprocess=P,labels=FILE,label=TEXT] (default: the --preprocess/--mean/--std/"
                   "--labels flags below; every model must have the same classes)")
    p.add_argument("--data", required=True, help="labeled images (synset subfolders, <synset>_*.JPEG files or "
                   "class-name folders)")
    p.add_argument("--out", required=True, help="folder for report.md, report.json and report.png (created)")
    add_calibration_flags(p, "seed for calibration and --limit draws")
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
    p.set_defaults(func=cmd_report)


def check_out_dir(out: str, force: bool) -> Path:
    """Fail before any work if the report files cannot be written."""
    from edgemobile.outputs import check_output, check_output_folder

    folder = check_output_folder(out)
    if folder.exists():
        for name in FILES:
            check_output(folder / name, force)
    return folder


def write_report(folder: Path, result: dict, force: bool, with_plot: bool = True) -> list[Path]:
    from edgemobile.eval.report import markdown, plot
    from edgemobile.outputs import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    written = [write_atomic(folder / "report.md", markdown(result), force=force),
               write_atomic(folder / "report.json", json.dumps(result, indent=2) + "\n", force=force)]
    if with_plot:
        written.append(write_atomic(folder / "report.png", plot(result), force=force))
    return written


def cmd_report(args: argparse.Namespace) -> int:
    from edgemobile.converter_install import quiet_keras, require_converter
    from edgemobile.cli.main import calibration_from_args, cluster_from_args, options_from_args
    from edgemobile.eval.report import ModelSpec, markdown, run_report
    from edgemobile.models.user import is_model_file

    if args.bench_runs < 0:
        raise EdgeMobileError(f"--bench-runs must be 0 or more, got {args.bench_runs}")
    folder = check_out_dir(args.out, args.force)
    # a user model's labels: --labels, else the class-name folders of --calibration, else of --data
    label_folder = args.calibration if args.calibration and Path(args.calibration).is_dir() else args.data
    flags = {k: getattr(args, k) for k in ("preprocess", "mean", "std", "crop_fraction", "labels")}
    specs = [ModelSpec.parse(text, **flags, label_folder=label_folder) for text in args.models]
    given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
    if given and not any(is_model_file(spec.name) for spec in specs):
        raise EdgeMobileError(f"{', '.join(given)}: only for your own Keras model files (--model FILE.keras); "
                              "zoo models have their own preprocessing and labels")
    require_converter(specs[0].name, "report (converting to float32 and int8)")
    with quiet_keras():
        for spec in specs:
            spec.variant()  # unknown names, bad files and settings fail before any work
    calibration = calibration_from_args(args, "int8")
    options = options_from_args(args)
    if args.conversion_memory <= 0:
        raise EdgeMobileError(f"--conversion-memory must be positive, got {args.conversion_memory:g}")
    with quiet_keras(), cluster_from_args(args) as cluster:
        result = run_report(specs, args.data, calibration, options, ablation=args.ablation, limit=args.limit,
                            seed=args.seed, bench_runs=args.bench_runs, progress=not args.quiet,
                            cluster=cluster, conversion_memory_gb=args.conversion_memory)
    print(markdown(result))
    for path in write_report(folder, result, args.force, with_plot=args.bench_runs > 0):
        print(f"wrote {path}")
    return 0
