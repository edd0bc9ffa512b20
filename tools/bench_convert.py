"""Cost of the default ``--int8`` next to the plain converter's, measured side by side.

    python tools/bench_convert.py [--shared ../shared] [--num-calibration 500] [--models v1,s0]
                                  [--repeat N] [--json FILE]

Each conversion is ``python -m edgemobile convert … --int8 [--plain]`` in its own child
process; its wall time and peak resident memory (the child's ``ru_maxrss`` from
``os.wait4``, which includes importing TensorFlow) are recorded, and per model the two ratios
default / plain are printed. Models: MobileNetV1 1.0/224 with random weights (cost does not
depend on the weights, and there are no 1.0 weights in the shared folder) and MobileOne-S0
with ``weights/mobileone/mobileone_s0.pth.tar``. Calibration: ``--num-calibration`` images
of ``imagenet/calib`` (the CLI default, 500). Targets (issue 10): default ≤ 2.0× plain in
both wall time and peak memory, aim 1.5×. With ``--repeat N`` (odd) each model runs N plain/default
pairs, alternating, and the ratios are the medians of the pairs' ratios (a machine whose speed
drifts between runs moves a single pair's ratio by ±15 %; neighbouring runs drift together).
Heavy (minutes per model and pair): a tool, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# key: (label, convert flags, weights under shared/weights or None for random weights)
MODELS = {
    "v1": ("MobileNetV1 1.0/224 (random weights)", ["--model", "mobilenet", "--alpha", "1.0"], None),
    "s0": ("MobileOne-S0", ["--model", "mobileone_s0"], "mobileone/mobileone_s0.pth.tar"),
}
MODES = (("plain", ["--plain"]), ("default", []))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_conversion(flags: list[str], weights: str, calibration: Path, num: int, out: Path,
                   precision: str = "int8") -> dict:
    """One ``convert --{precision}`` in a child process: wall seconds, peak RSS (MB), its final
    line (``calibration``/``num`` are passed for full-integer precisions only)."""
    full_integer = precision in ("int8", "uint8")
    cal = ["--calibration", str(calibration), "--num-calibration", str(num)] if full_integer else []
    cmd = [sys.executable, "-m", "edgemobile", "convert", *flags, f"--{precision}", "--weights", weights, *cal,
           "-o", str(out), "--quiet", "--force"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out_text, err_text = stdout.read(), stderr.read()
    if child.returncode != 0:
        raise SystemExit(f"{Path(sys.argv[0]).stem}: {' '.join(cmd)} failed:\n{err_text[-2000:]}")
    lines = [line for line in out_text.splitlines() if line.startswith("wrote ")]
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "convert_says": lines[-1] if lines else None}


def median_pair(label: str, pairs: list[dict], base: str = "plain", other: str = "default") -> dict:
    """One model's row: the figures of the pair whose wall ratio ``other`` / ``base`` (their modes'
    keys in each pair) is the median (an odd number of pairs), the median wall ratio and the
    median peak-RSS ratio, and every pair alongside when there are several."""
    for p in pairs:
        p["wall_ratio"] = round(p[other]["wall_s"] / p[base]["wall_s"], 2)
        p["rss_ratio"] = round(p[other]["peak_rss_mb"] / p[base]["peak_rss_mb"], 2)
    if len(pairs) % 2 == 0:
        raise ValueError(f"median_pair needs an odd number of pairs, got {len(pairs)}")
    row = {"model": label, **sorted(pairs, key=lambda p: p["wall_ratio"])[len(pairs) // 2]}
    if len(pairs) > 1:
        row["rss_ratio"] = sorted(p["rss_ratio"] for p in pairs)[len(pairs) // 2]
        row["pairs"] = pairs
    return row


def weights_argument(shared: Path, weights: str | None) -> str:
    """``convert --weights``' argument for a MODELS entry: the shared file (it must exist) or
    ``none`` (random weights)."""
    if weights is None:
        return "none"
    path = shared / "weights" / weights
    if not path.is_file():
        sys.exit(f"{Path(sys.argv[0]).stem}: {path} not found")
    return str(path)


def measure_pairs(key: str, label: str, flags: list[str], weights: str, calibration: Path, num: int, repeat: int,
                  folder: Path, modes=MODES) -> dict:
    """One model's row (:func:`median_pair`): ``repeat`` pairs of conversions, each pair the two
    ``modes`` ((name, extra convert flags), the base first) one after the other, each run printed."""
    (base, _), (other, _) = modes
    pairs = []
    for k in range(repeat):
        pair = {}
        for mode, extra in modes:
            pair[mode] = run_conversion(flags + extra, weights, calibration, num, folder / f"{key}_{mode}.tflite")
            print(f"  {label}, {mode}{f' (pair {k + 1})' if repeat > 1 else ''}: "
                  f"{pair[mode]['wall_s']:.1f} s, {pair[mode]['peak_rss_mb']:.0f} MB", flush=True)
        pairs.append(pair)
    return median_pair(label, pairs, base, other)


def print_ratios(results: list[dict], repeat: int, modes=MODES) -> None:
    """The table of :func:`measure_pairs` rows: both modes' wall time and peak RSS, their ratios
    (and every pair's ratios when there were several)."""
    (base, _), (other, _) = modes
    w1, w2, m1, m2 = max(8, len(base) + 2), max(10, len(other) + 2), max(9, len(base) + 3), max(11, len(other) + 3)
    header = (f"{'model':<38} {base + ' s':>{w1}} {other + ' s':>{w2}} {'ratio':>6} {base + ' MB':>{m1}} "
              f"{other + ' MB':>{m2}} {'ratio':>6}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(f"{r['model']:<38} {r[base]['wall_s']:>{w1}.1f} {r[other]['wall_s']:>{w2}.1f} {r['wall_ratio']:>5.2f}x "
              f"{r[base]['peak_rss_mb']:>{m1}.0f} {r[other]['peak_rss_mb']:>{m2}.0f} {r['rss_ratio']:>5.2f}x")
    if repeat > 1:
        for r in results:
            walls = ", ".join(f"{p['wall_ratio']:.2f}x" for p in r["pairs"])
            rss = ", ".join(f"{p['rss_ratio']:.2f}x" for p in r["pairs"])
            print(f"{r['model']}: wall ratios {walls}; peak RSS ratios {rss} (medians above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    parser.add_argument("--num-calibration", type=int, default=500, help="calibration images (default 500)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated keys from {', '.join(MODELS)}")
    parser.add_argument("--repeat", type=int, default=1, help="plain/default pairs per model (default 1): median ratios")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.repeat < 1 or args.repeat % 2 == 0:
        parser.error(f"--repeat must be an odd number >= 1 (a median of pairs), got {args.repeat}")

    shared = Path(args.shared)
    calibration = shared / "imagenet" / "calib"
    if not calibration.is_dir():
        sys.exit(f"bench_convert: {calibration} not found (pass --shared)")
    if args.repeat < 1:
        sys.exit("bench_convert: --repeat must be at least 1")
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        sys.exit(f"bench_convert: unknown model keys {unknown}; choose from {', '.join(MODELS)}")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); {args.num_calibration} calibration images; "
          "each conversion in its own process", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            label, flags, weights = MODELS[key]
            results.append(measure_pairs(key, label, flags, weights_argument(shared, weights), calibration,
                                         args.num_calibration, args.repeat, Path(tmp)))
    print_ratios(results, args.repeat)
    print("targets: default <= 2.0x plain in wall time and in peak RSS (aim 1.5x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
