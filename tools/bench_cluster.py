"""Eval throughput in one process vs. on Ray with 1 and 2 worker processes, side by side, plus
the driver overhead per shard and a projection for a 50,000-image eval on 1, 8 and 64 nodes.

    python tools/bench_cluster.py [--model M.tflite ...] [--data DIR] [--limit N] [--shard-size 64]
                                  [--node-cpus 2]

Default models: Google's QAT MobileNetV1 0.25/128 and 0.75/192 from ../shared (a small and a
mid-size int8 model), default data ../shared/imagenet/val (700 images). For every model:

- ``single``: :func:`edgemobile.eval.evaluate.run_predictors` in this process (decode threads
  as ``eval`` uses them);
- ``ray-1`` / ``ray-2``: the same images through the ``eval --cluster local`` machinery
  (:class:`edgemobile.eval.cluster.RayCluster`) on one local Ray with 2 CPUs, images shipped
  as bytes (the default): ray-1 keeps one task in flight, so one worker process computes at a
  time; ray-2 keeps the default window, so both worker processes compute. A warm-up pass
  starts the workers first; start-up of Ray itself is reported apart.
- ``shard-serial``: every shard computed one after another in this process exactly as a Ray
  task computes it (:func:`edgemobile.eval.cluster.eval_shard`, one decode thread). The driver
  overhead per shard = (ray-1 wall − shard-serial wall) / shards: reading and shipping the
  bytes, scheduling, (de)serialising results — the round trip Ray adds to each task.

The four runs are interleaved for ``--rounds`` rounds (medians shown), so load from other
processes on the machine hits them alike, and their probabilities are checked to be identical.
On 2 cores, ray-2 is capped at 2× ray-1, and single already overlaps decoding with inference
on the second core.

Projection (printed, on paper): a shard takes t = shard/r + o on one worker (r: shard-serial
images/s, o: overhead per shard); ``nodes × node_cpus`` workers finish shards at that rate while
the driver handles one shard per o at most (pessimistic: part of o is spent on the workers,
in parallel), so 50,000 images take ``shards × max(t / workers, o)``. It assumes nodes like this one and the decode cost of these
images (227×227 JPEGs; full-size ImageNet JPEGs decode slower).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEMOBILE_SHARED", ROOT.parent / "shared"))
DEFAULT_MODELS = ("weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite",
                  "weights/mobilenet_v1/mobilenet_v1_0.75_192_quant.tflite")
PROJECT_IMAGES = 50_000
PROJECT_NODES = (1, 8, 64)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown CPU"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_model(model: Path, paths: list, shard_size: int, rounds: int) -> dict:
    from edgemobile.eval.cluster import RayCluster, _whole_batches, eval_shard
    from edgemobile.eval.evaluate import run_predictors
    from edgemobile.eval.predictors import TFLitePredictor

    predictor = TFLitePredictor(model)
    n = len(paths)
    size = _whole_batches(shard_size, 16)
    shards = [list(range(s, min(s + size, n))) for s in range(0, n, size)]
    spec = [(predictor.name, predictor.overrides, predictor.num_threads)]
    blob = predictor.model.model_bytes

    def serial():
        out = None
        for ids in shards:
            _, probs, _ = eval_shard(spec, ids, [(str(paths[i]), Path(paths[i]).read_bytes()) for i in ids], 16, False,
                                     blob)
            out = np.zeros((n, probs[0].shape[1]), probs[0].dtype) if out is None else out
            out[ids] = probs[0]
        return out

    def ray_run(window: int):
        cluster.window = window
        return cluster.run_predictors([predictor], paths, progress=False)[0]

    runs = {"single": lambda: run_predictors([predictor], paths, progress=False)[0], "serial": serial,
            "ray1": lambda: ray_run(1), "ray2": lambda: ray_run(2 * cluster.cpus + 2)}
    cluster, t_start = timed(lambda: RayCluster("local", shard_size=size, num_cpus=2,
                                                object_store_memory=128 * 2**20))
    times: dict = {k: [] for k in runs}
    try:
        ray_run(2)  # start both worker processes and load the model in them
        run_predictors([predictor], paths[:16], progress=False)  # warm this process too
        reference = None
        for _ in range(rounds):  # interleaved, so load from other processes hits every run alike
            for key, fn in runs.items():
                probs, seconds = timed(fn)
                times[key].append(seconds)
                reference = probs if reference is None else reference
                if not np.array_equal(reference, probs):
                    raise SystemExit(f"bench_cluster: {key} probabilities differ from single-process ones")
    finally:
        cluster.close()
    row = {f"{k}_s": float(np.median(v)) for k, v in times.items()}
    row.update(images=n, shards=len(shards), shard_size=size, start_s=t_start, identical=True, rounds=rounds)
    row["overhead_per_shard_s"] = (row["ray1_s"] - row["serial_s"]) / len(shards)
    row["mean_file_bytes"] = float(np.mean([Path(p).stat().st_size for p in paths]))
    return row


def projection(row: dict, node_cpus: int) -> list[str]:
    r = row["images"] / row["serial_s"]  # one worker's images/s, Ray excluded
    o = max(row["overhead_per_shard_s"], 0.0)
    size = row["shard_size"]
    shards = -(-PROJECT_IMAGES // size)
    t_shard = size / r + o
    lines = []
    for nodes in PROJECT_NODES:
        workers = nodes * node_cpus
        seconds = shards * max(t_shard / workers, o)
        bound = "driver-bound" if o >= t_shard / workers else "worker-bound"
        lines.append(f"  {nodes:>3} node(s) x {node_cpus} CPUs: {seconds:8.1f} s  ({seconds / 60:5.1f} min, {bound})")
    wire = PROJECT_IMAGES * row["mean_file_bytes"] / 1e9
    lines.append(f"  bytes shipped with --cluster-data bytes: {wire:.2f} GB at these images' mean "
                 f"{row['mean_file_bytes'] / 1e3:.1f} kB (full ImageNet val JPEGs: about 6.3 GB)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help=".tflite model, repeatable (default: two QAT MobileNetV1)")
    parser.add_argument("--data", default=str(SHARED / "imagenet/val"), help="labeled images (default shared val)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--shard-size", type=int, default=64, help="images per Ray task (default 64)")
    parser.add_argument("--node-cpus", type=int, default=2, help="CPUs per node for the projection (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are shown (default 3)")
    args = parser.parse_args(argv)

    from edgemobile.data.datasets import labeled_images
    from edgemobile.data.labels import imagenet_classes

    models = [Path(m) for m in args.model] if args.model else [SHARED / m for m in DEFAULT_MODELS]
    for m in models:
        if not m.is_file():
            sys.exit(f"bench_cluster: {m}: no such model (set EDGEMOBILE_SHARED or pass --model)")
    paths = [p for p, _ in labeled_images(args.data, imagenet_classes())][: args.limit]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {len(paths)} images from {args.data}")
    for model in models:
        row = bench_model(model, paths, args.shard_size, args.rounds)
        rate = {k: row["images"] / row[f"{k}_s"] for k in ("single", "serial", "ray1", "ray2")}
        print(f"\n{model.name}: {row['images']} images, {row['shards']} shards of {row['shard_size']}, "
              f"probabilities identical in all runs: {row['identical']}")
        print(f"  {'run':<34} {'wall s':>7} {'img/s':>7} {'vs single':>9}")
        for key, label in (("single", "single process (eval)"), ("serial", "shards one by one, in-process"),
                           ("ray1", "Ray, 1 task at a time (1 worker)"), ("ray2", "Ray, 2 worker processes")):
            print(f"  {label:<34} {row[f'{key}_s']:7.2f} {rate[key]:7.1f} {rate[key] / rate['single']:8.2f}x")
        print(f"  Ray 2 workers / 1 worker: {rate['ray2'] / rate['ray1']:.2f}x; driver overhead per shard "
              f"{row['overhead_per_shard_s'] * 1e3:.1f} ms ({row['overhead_per_shard_s'] * 1e3 / row['shard_size']:.2f} "
              f"ms/image); Ray start-up {row['start_s']:.1f} s (not in wall); medians of {row['rounds']} rounds")
        print(f"  projection, {PROJECT_IMAGES} images (on paper, from the figures above):")
        print("\n".join(projection(row, args.node_cpus)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
