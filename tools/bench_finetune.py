"""What ``--finetune`` costs next to the default ``--int8``, and what its epochs buy.

    python tools/bench_finetune.py [--shared ../shared] [--num-calibration 500] [--models a25,v1,v3s,s0]
                                   [--repeat N] [--json FILE]
    python tools/bench_finetune.py --epochs 1,2,4,8 [--shared ../shared] [--num-calibration 500]
                                   [--models a25] [--limit N] [--json FILE]

Cost (the default): per model, ``convert --int8`` and ``convert --int8 --finetune`` (the
technique's default epochs), one after the other, each in its own child process — wall time
and peak resident memory measured as ``tools/bench_convert.py`` does (its helpers: the child's
``ru_maxrss`` from ``os.wait4``, which includes importing TensorFlow) — and per model the two
ratios finetune / default; ``--repeat N`` (odd) alternates N pairs and reports the medians, as
bench_convert does. Models: MobileNetV1 α0.25/224 (``weights/mobilenet_v1/mobilenet_2_5_224_tf.h5``),
MobileNetV1 α1.0/224 (random weights: cost does not depend on them), MobileNetV3-Small 1.0/224
(``weights/mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5``) and MobileOne-S0
(``weights/mobileone/mobileone_s0.pth.tar``).

Epochs (``--epochs 1,2,4,8``): MobileNetV1 α0.25/224 (``--models`` for others with real
weights) converted with the default ``--int8`` (the "0" row: no fine-tuning) and with
``--int8 --finetune --finetune-epochs E`` for every E, each in its own child process (wall
time, peak RSS); each model's top-1 and top-1 agreement with the float32 conversion of the same
weights on ``imagenet/val`` (``em.evaluate`` against it, 95 % intervals), and what fine-tuning
recorded in the model's provenance (the epoch it kept, its held-apart agreement before and
after). Calibration: ``--num-calibration`` images of ``imagenet/calib`` (the CLI default, 500).
Heavy (fine-tuning takes minutes per conversion on 2 cores): a tool, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench_convert import MODELS as CONVERT_MODELS
from bench_convert import ROOT, cpu_model, measure_pairs, print_ratios, run_conversion, weights_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(ROOT))

from edgemobile.eval.evaluate import format_interval  # noqa: E402

# key: (label, convert flags, weights under shared/weights or None for random weights)
MODELS = {
    "a25": ("MobileNetV1 0.25/224", ["--model", "mobilenet", "--alpha", "0.25"],
            "mobilenet_v1/mobilenet_2_5_224_tf.h5"),
    "v1": CONVERT_MODELS["v1"],
    "v3s": ("MobileNetV3-Small 1.0/224", ["--model", "mobilenet_v3_small"],
            "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5"),
    "s0": CONVERT_MODELS["s0"],
}
MODES = (("default", []), ("finetune", ["--finetune"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    parser.add_argument("--num-calibration", type=int, default=500, help="calibration images (default 500)")
    parser.add_argument("--models", help=f"comma-separated keys from {', '.join(MODELS)} (default: all of them; "
                                         "with --epochs a25)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="cost: default/finetune pairs per model (default 1): median ratios")
    parser.add_argument("--epochs", type=epochs_list,
                        help="instead of the cost table: agreement with float and cost per fine-tuning epochs, "
                             "e.g. 1,2,4,8 (next to the default --int8)")
    parser.add_argument("--limit", type=int, help="--epochs: evaluate only N val images (quick look)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.repeat < 1 or args.repeat % 2 == 0:
        parser.error(f"--repeat must be an odd number >= 1 (a median of pairs), got {args.repeat}")
    if args.epochs is None and args.limit is not None:
        parser.error("--limit only applies to --epochs (the cost table evaluates nothing)")
    if args.epochs is not None and args.repeat != 1:
        parser.error("--repeat only applies to the cost table, not to --epochs")

    shared = Path(args.shared)
    calibration = shared / "imagenet" / "calib"
    if not calibration.is_dir():
        sys.exit(f"bench_finetune: {calibration} not found (pass --shared)")
    keys = [k.strip() for k in (args.models or ("a25" if args.epochs else ",".join(MODELS))).split(",") if k.strip()]
    choices = [k for k in MODELS if MODELS[k][2] is not None] if args.epochs else list(MODELS)
    unknown = [k for k in keys if k not in choices]
    if unknown:
        sys.exit(f"bench_finetune: unknown model keys {unknown}"
                 f"{' for --epochs (real weights only)' if args.epochs else ''}; choose from {', '.join(choices)}")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); {args.num_calibration} calibration images; "
          "each conversion in its own process", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.epochs:
            results = [sweep(key, shared, calibration, args.num_calibration, args.epochs, args.limit, Path(tmp))
                       for key in keys]
            print_sweep(results)
        else:
            results = []
            for key in keys:
                label, flags, weights = MODELS[key]
                row = measure_pairs(key, label, flags, weights_argument(shared, weights), calibration,
                                    args.num_calibration, args.repeat, Path(tmp), MODES)
                row["finetune_record"] = finetune_record(Path(tmp) / f"{key}_finetune.tflite")  # the last pair's
                results.append(row)
            print_ratios(results, args.repeat, MODES)
            for row in results:
                done = row["finetune_record"] or {}
                print(f"{row['model']}: fine-tuning {done.get('epochs')} epochs (kept epoch {done.get('best_epoch')}), "
                      f"{done.get('seconds')} s of the conversion")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "num_calibration": args.num_calibration,
                                               "mode": "epochs" if args.epochs else "cost", "results": results},
                                              indent=2) + "\n")


def epochs_list(text: str) -> list[int]:
    """``--epochs``: comma-separated whole numbers >= 1, e.g. ``1,2,4,8``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, e.g. 1,2,4,8, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"epochs must be 1 or more, got {text!r}")
    return values


def sweep(key: str, shared: Path, calibration: Path, num: int, epochs: list[int], limit: int | None,
          folder: Path) -> dict:
    """One model's ``--epochs`` rows: the default ``--int8`` (epochs 0) and ``--finetune`` with
    each of ``epochs``, timed in child processes, then evaluated against the float32 conversion."""
    import edgemobile as em

    label, flags, weights = MODELS[key]
    weights = weights_argument(shared, weights)
    runs = []
    for n in [0, *epochs]:
        extra = ["--finetune", "--finetune-epochs", str(n)] if n else []
        out = folder / f"{key}_int8_{n}.tflite"
        run = {"epochs": n, **run_conversion(flags + extra, weights, calibration, num, out), "path": out}
        print(f"  {label}, {'default --int8' if n == 0 else f'--finetune-epochs {n}'}: {run['wall_s']:.1f} s, "
              f"{run['peak_rss_mb']:.0f} MB", flush=True)
        runs.append(run)
    reference = folder / f"{key}_float32.tflite"
    run_conversion(flags, weights, calibration, num, reference, precision="float32")
    data = shared / "imagenet" / "val"
    rows = []
    for run in runs:
        path = run.pop("path")
        evaluation = em.evaluate(str(path), data, reference=str(reference), limit=limit, progress=False).as_dict()
        rows.append({**run, "finetune_record": finetune_record(path), "evaluation": evaluation})
    return {"model": label, "key": key, "data": os.path.relpath(data, ROOT), "images": rows[0]["evaluation"]["images"],
            "float": rows[0]["evaluation"]["reference"], "rows": rows}


def finetune_record(path: Path) -> dict | None:
    """What fine-tuning recorded in a converted model's provenance (None without it)."""
    from edgemobile.metadata import read_metadata

    info = read_metadata(path)
    provenance = ((info.extra or {}) if info is not None else {}).get("provenance") or {}
    return (provenance.get("quantization") or {}).get("finetune")


def print_sweep(results: list[dict]) -> None:
    """The ``--epochs`` table: per model and epochs, cost, top-1 and agreement with float (95 %
    intervals), and the epoch fine-tuning kept with its held-apart agreement before → after."""
    header = (f"{'model':<26} {'epochs':>6} {'wall s':>7} {'peak MB':>8} {'top-1 %':>20} {'agreement %':>21} "
              f"{'kept':>5} {'held-apart agreement':>21}")
    print("\n" + header + "\n" + "-" * len(header))
    for result in results:
        for row in result["rows"]:
            model, comparison = row["evaluation"]["model"], row["evaluation"]["comparison"]
            done = row["finetune_record"] or {}
            held = (f"{100 * done['held_apart_agreement_before']:.1f} -> "
                    f"{100 * done['held_apart_agreement_after']:.1f} %" if done else "")
            print(f"{result['model']:<26} {row['epochs']:>6} {row['wall_s']:>7.1f} {row['peak_rss_mb']:>8.0f} "
                  f"{_with_ci(model['top1'], model['top1_ci95']):>20} "
                  f"{_with_ci(comparison['top1_agreement'], comparison['top1_agreement_ci95']):>21} "
                  f"{done.get('best_epoch', ''):>5} {held:>21}")
    for result in results:
        f = result["float"]
        print(f"{result['model']}: float32 top-1 {_with_ci(f['top1'], f['top1_ci95'])} on {result['images']} images "
              f"of {result['data']}; epochs 0: the default --int8, no fine-tuning; agreement: same top-1 as float32; "
              "kept: the epoch fine-tuning kept (0: the post-training weights), by held-apart KL")


def _with_ci(value: float, interval) -> str:
    return f"{value:.2f} {format_interval(interval)}"


if __name__ == "__main__":
    main()
