"""The fine-tuning goals of docs/accuracy.md, measured: default ``--int8`` against
``--int8 --finetune`` for each model with real weights, both evaluated on ``imagenet/val``
against the model's float TFLite (as ``eval`` feeds them: raw pixels where the input grid is
the normalization).

    python tools/finetune_goals.py [--shared ../shared] [--num-calibration 500]
                                   [--models a25,a50,v3s,s0] [--epochs N] [--json FILE]

Per model: agreement with float (95 % interval) and the top-1 drop, for both; the
fine-tuning's held-apart agreement before/after, the epoch it kept, and the conversion time. Heavy (minutes per model on 2 cores): a tool, not a test.
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
from edgemobile.outputs import write_atomic  # noqa: E402
from edgemobile.runtime.delegation import host_cpu  # noqa: E402

# key (of accuracy_table.MODELS): (goal agreement %, goal |drop| or None)
GOALS = {"a25": (96.0, 0.3), "a50": (98.5, None), "v3s": (95.0, 0.5), "s0": (98.0, None)}


def setup(key: str, shared: Path, work: Path, num_calibration: int) -> tuple:
    """(zoo name, label, model kwargs, calibration kwargs, val folder, float .tflite) of a
    MODELS key, its float model converted into ``work``."""
    name, alpha, resolution, weights, label, provenance = MODELS[key]
    kwargs = dict(alpha=alpha, resolution=resolution, weights=str(shared / "weights" / weights), progress=False)
    calibration = dict(calibration=str(shared / "imagenet" / "calib"), num_calibration=num_calibration)
    float_path = work / f"{key}_float32.tflite"
    with contextlib.redirect_stdout(io.StringIO()):  # Keras' exporter prints every traced tensor
        em.convert(name, "float32", output=float_path, force=True, **kwargs)
    return name, f"{label} ({provenance})", kwargs, calibration, str(shared / "imagenet" / "val"), float_path


def measure(key: str, shared: Path, work: Path, num_calibration: int, epochs: int | None) -> dict:
    goal, drop_goal = GOALS[key]
    name, label, kwargs, calibration, data, float_path = setup(key, shared, work, num_calibration)
    row = {"model": label, "key": key, "goal_agreement": goal, "goal_abs_drop": drop_goal}
    finetune = {"finetune": True, **({"finetune_epochs": epochs} if epochs else {})}
    for mode, techniques in (("default", None), ("finetune", finetune)):
        path = work / f"{key}_{mode}.tflite"
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            converted = em.convert(name, "int8", output=path, force=True, techniques=techniques, **calibration,
                                   **kwargs)
        seconds = time.perf_counter() - start
        result = em.evaluate(str(path), data=data, reference=str(float_path), progress=False).as_dict()
        row[mode] = {"agreement": result["comparison"]["top1_agreement"],
                     "agreement_ci95": result["comparison"]["top1_agreement_ci95"],
                     "top1": result["model"]["top1"], "float_top1": result["reference"]["top1"],
                     "drop": result["reference"]["top1"] - result["model"]["top1"],
                     "convert_seconds": round(seconds, 1),
                     "finetune": (converted.provenance.get("quantization") or {}).get("finetune")}
        row["images"] = result["images"]
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| model | goal | default `--int8`: agreement, drop | `--finetune`: agreement, drop | held-apart "
             "before → after | fine-tuned convert |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        d, f = r["default"], r["finetune"]
        ft = f["finetune"] or {}
        goal = f"≥ {r['goal_agreement']:g} %" + (f", \\|drop\\| ≤ {r['goal_abs_drop']:g}" if r["goal_abs_drop"] else "")
        met = f["agreement"] >= r["goal_agreement"] and (r["goal_abs_drop"] is None
                                                          or abs(f["drop"]) <= r["goal_abs_drop"])
        short = round((r["goal_agreement"] - f["agreement"]) / 100 * r["images"])

        def cell(m):
            lo, hi = m["agreement_ci95"]
            return f"{m['agreement']:.2f} % [{lo:.1f}, {hi:.1f}], {m['drop']:+.2f}"

        lines.append(f"| {r['model']} | {goal} | {cell(d)} | {cell(f)} {'✓' if met else f'({short} images short)'} | "
                     f"{ft.get('held_apart_agreement_before', 0):.1%} → {ft.get('held_apart_agreement_after', 0):.1%}"
                     f" (epoch {ft.get('best_epoch')} of {ft.get('epochs')}) | {f['convert_seconds']:.0f} s |")
    return "\n".join(lines) + f"\n\nDrop: float top-1 − int8 top-1 (points). {host_cpu().describe()}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    parser.add_argument("--num-calibration", type=int, default=500, help="calibration images (default 500)")
    parser.add_argument("--models", default=",".join(GOALS), help=f"comma-separated keys from {', '.join(GOALS)}")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: the technique's)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    shared = Path(args.shared)
    if not (shared / "imagenet" / "val").is_dir():
        sys.exit(f"finetune_goals: {shared}/imagenet/val not found (pass --shared)")
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in GOALS]
    if unknown:
        sys.exit(f"finetune_goals: unknown model keys {unknown}; choose from {', '.join(GOALS)}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for key in keys:
            rows.append(measure(key, shared, Path(work), args.num_calibration, args.epochs))
            print(markdown(rows[-1:]), flush=True)
    print(markdown(rows))
    if args.json:
        write_atomic(args.json, json.dumps(rows, indent=2) + "\n", force=True)


if __name__ == "__main__":
    main()
