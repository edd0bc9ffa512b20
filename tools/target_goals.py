"""The accuracy-target goals of docs/accuracy.md, measured: ``convert --int8 --min-agreement A``
for each model with real weights (candidates chosen on held-apart calibration images), the
chosen model evaluated on ``imagenet/val`` (never used for the choice) against the model's
float TFLite; then ``--all-integer`` with a target no integer candidate reaches, which must
fail in one line naming the closest.

    python tools/target_goals.py [--shared ../shared] [--models a25,v3s] [--min-agreement 0.97]
                                 [--unreachable 0.995] [--num-calibration 1000] [--json FILE]

Prints, per model, the candidates table the command prints and a summary row. Heavy (minutes
per model on 2 cores): a tool, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgemobile as em  # noqa: E402
from accuracy_table import MODELS  # noqa: E402
from finetune_goals import setup  # noqa: E402
from edgemobile.outputs import write_atomic  # noqa: E402
from edgemobile.quantization.target import TargetMissed  # noqa: E402
from edgemobile.runtime.delegation import host_cpu  # noqa: E402


def measure(key: str, shared: Path, work: Path, target: float, unreachable: float | None,
            num_calibration: int) -> dict:
    name, label, kwargs, calibration, data, float_path = setup(key, shared, work, num_calibration)
    row = {"model": label, "key": key, "target": target}
    path = work / f"{key}_target.tflite"
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            converted = em.convert(name, "int8", output=path, force=True, min_agreement=target, **calibration,
                                   **kwargs)
        search = converted.search
        row["error"] = None
    except TargetMissed as missed:
        search, converted = missed.search, None
        row["error"] = str(missed)
    row["convert_seconds"] = round(time.perf_counter() - start, 1)
    row["table"] = search.table()
    row["search"] = search.as_dict()
    if converted is not None:
        result = em.evaluate(str(path), data=data, reference=str(float_path), progress=False).as_dict()
        row["val"] = {"images": result["images"], "agreement": result["comparison"]["top1_agreement"],
                      "agreement_ci95": result["comparison"]["top1_agreement_ci95"],
                      "top1": result["model"]["top1"], "float_top1": result["reference"]["top1"]}
    if unreachable is None:
        return row
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            em.convert(name, "int8", min_agreement=unreachable, all_integer=True, **calibration, **kwargs)
        row["all_integer"] = {"target": unreachable, "error": None}
    except TargetMissed as missed:
        row["all_integer"] = {"target": unreachable, "error": str(missed)}
    row["all_integer"]["seconds"] = round(time.perf_counter() - start, 1)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| model | target | chosen (held-apart agreement) | latency ms (float) | val agreement % [95 % CI] "
             "| val top-1 (float) | `--all-integer` at an unreachable target |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        chosen = next((c for c in r["search"]["candidates"] if c["name"] == r["search"]["chosen"]), None)
        if chosen is None:
            picked, latency = f"none: {r['error']}", "-"
        else:
            picked = f"{chosen['name']} ({100 * chosen['agreement']:.1f} %)"
            latency = f"{chosen['latency_ms']:.2f} ({chosen['float_latency_ms']:.2f})"
        val = r.get("val")
        agreement = f"{val['agreement']:.2f} [{val['agreement_ci95'][0]:.1f}, {val['agreement_ci95'][1]:.1f}]" \
            if val else "-"
        top1 = f"{val['top1']:.2f} ({val['float_top1']:.2f})" if val else "-"
        integer = r.get("all_integer")
        refused = f"≥ {100 * integer['target']:g} %: `{integer['error'] or 'met'}`" if integer else "not run"
        lines.append(f"| {r['model']} | ≥ {100 * r['target']:g} % | {picked} | {latency} | {agreement} | {top1} "
                     f"| {refused} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    parser.add_argument("--models", default="a25,v3s", help=f"comma-separated keys from {', '.join(MODELS)}")
    parser.add_argument("--min-agreement", type=float, default=0.97, help="the target (default 0.97)")
    parser.add_argument("--unreachable", type=float, default=0.995,
                        help="the --all-integer target no integer candidate should reach (default 0.995; 0: skip)")
    parser.add_argument("--num-calibration", type=int, default=1000,
                        help="calibration images, 20 %% of them (at most 256) held apart (default 1000)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    shared = Path(args.shared)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            row = measure(key, shared, Path(tmp), args.min_agreement, args.unreachable or None, args.num_calibration)
            print(f"\n{row['model']}:\n{row['table']}", flush=True)
            rows.append(row)
    cpu = host_cpu()
    print(f"\n{cpu.name} ({cpu.arch}); calibration: {args.num_calibration} images of imagenet/calib; "
          f"val: imagenet/val\n")
    print(markdown(rows))
    if args.json:
        write_atomic(args.json, json.dumps(rows, indent=2).encode(), force=True)


if __name__ == "__main__":
    main()
