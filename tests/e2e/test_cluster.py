"""``--cluster`` on a real two-node Ray cluster on this machine (a head and a second node, each
one CPU and a small object store): eval through Ray gives the same JSON as one process (with
images shipped as bytes and as shared paths), a worker killed mid-run is retried to the same
result, Ctrl-C writes nothing, a float + int8 report completes on the cluster with the same
accuracy figures as without it (also to an accuracy target a model misses), and without
``--cluster`` Ray is never imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemobile.cli.main import main
from edgemobile.eval.cluster import LOOPBACK_ONLY
from support.paths import ROOT
from support.tiny_user_models import accuracy_target_world

# The test cluster's nodes (all on this machine) talk over loopback only; set before Ray is imported.
os.environ.setdefault(LOOPBACK_ONLY, "0")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgemobile[cluster]')")
pytest.importorskip("tensorflow")

WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_128_tf.h5"
REFERENCE = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"
TIMING = ("seconds", "images_per_second")
NODE = {"num_cpus": 1, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster(request):
    """A head and a second node on this machine; workers import this checkout of edgemobile."""
    from ray.cluster_utils import Cluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved]))
    request.addfinalizer(lambda: os.environ.__setitem__("PYTHONPATH", saved) if saved is not None
                         else os.environ.pop("PYTHONPATH", None))
    c = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False))
    request.addfinalizer(c.shutdown)
    c.add_node(**NODE)
    c.wait_for_nodes()
    return c


@pytest.fixture(scope="module")
def int8_model(shared, tmp_path_factory):
    path = tmp_path_factory.mktemp("cluster") / "mobilenet_0.25_128_int8.tflite"
    assert main(["convert", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "128", "--int8", "--plain",
                 "--weights", str(shared / WEIGHTS), "--calibration", str(shared / "imagenet/calib"),
                 "--num-calibration", "32", "-o", str(path), "--quiet"]) == 0
    return path


def _eval_args(shared, model, out: Path, limit: int) -> list[str]:
    return ["eval", str(model), "--data", str(shared / "imagenet/val"), "--reference", str(shared / REFERENCE),
            "--limit", str(limit), "--json", str(out), "--quiet"]


def _cli(*args: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "edgemobile", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _without_timing(path: Path) -> dict:
    result = json.loads(path.read_text())
    for key in TIMING:
        result.pop(key)
    return result


@pytest.fixture(scope="module")
def single_process(shared, int8_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "eval.json"
    assert main(_eval_args(shared, int8_model, out, 256)) == 0
    return _without_timing(out)


@pytest.mark.parametrize("data", ["bytes", "paths"])
def test_eval_on_cluster_is_identical(shared, cluster, int8_model, single_process, tmp_path, data):
    out = tmp_path / "eval.json"
    code, log = _finish(_cli(*_eval_args(shared, int8_model, out, 256), "--cluster", cluster.address,
                             "--cluster-data", data, "--shard-size", "32"))
    assert code == 0, log
    assert _without_timing(out) == single_process
    assert single_process["comparison"]["top1_agreement"] < 100  # two different models: a real comparison
    # the equality above covers the uncertainty too: computed by the same code on the merged outputs
    assert {"top1_ci95", "top5_ci95"} <= set(single_process["model"])
    assert {"top1_agreement_ci95", "top1_delta_ci95", "mcnemar_p"} <= set(single_process["comparison"])


def _running_shard_workers(cluster) -> list[int]:
    """PIDs of this cluster's worker processes that are executing an eval shard right now."""
    raylets = {p.process.pid for node in cluster.list_all_nodes() for p in node.all_processes["raylet"]}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(b"ray::eval_shard") and ppid in raylets:
            pids.append(int(entry.name))
    return pids


def test_killed_worker_is_retried_to_the_same_result(shared, cluster, int8_model, single_process, tmp_path):
    out = tmp_path / "eval.json"
    proc = _cli(*_eval_args(shared, int8_model, out, 256), "--cluster", cluster.address, "--shard-size", "32")
    killed = None
    while proc.poll() is None and killed is None:
        pids = _running_shard_workers(cluster)
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.002)
    code, log = _finish(proc)
    assert killed is not None, "the eval finished before a shard worker could be killed"
    assert code == 0, log
    assert _without_timing(out) == single_process


def test_ctrl_c_cancels_and_writes_nothing(shared, cluster, int8_model, tmp_path):
    out = tmp_path / "eval.json"
    proc = _cli(*_eval_args(shared, int8_model, out, 700), "--cluster", cluster.address, "--shard-size", "16")
    deadline = time.monotonic() + 120
    while proc.poll() is None and not _running_shard_workers(cluster) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the eval finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    code, log = _finish(proc)
    assert code == 130, log
    assert "edgemobile: interrupted" in log and "Traceback" not in log
    assert not out.exists() and not list(tmp_path.glob(".eval.json*"))
    deadline = time.monotonic() + 60  # the interrupted driver's tasks end with it
    while _running_shard_workers(cluster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running_shard_workers(cluster), "shard tasks still running after the eval was interrupted"


def test_report_on_cluster_matches_one_machine(shared, cluster, tmp_path):
    args = ["report", "--model", f"mobilenet:alpha=0.25,resolution=128,weights={shared / WEIGHTS}",
            "--data", str(shared / "imagenet/val"), "--limit", "96", "--calibration", str(shared / "imagenet/calib"),
            "--num-calibration", "16", "--plain", "--bench-runs", "0", "--quiet"]
    code, log = _finish(_cli(*args, "--out", str(tmp_path / "cluster"), "--cluster", cluster.address,
                             "--conversion-memory", "2"), timeout=600)
    assert code == 0, log
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    on_cluster, local = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("cluster", "local"))
    assert [r["precision"] for r in on_cluster["rows"]] == ["float32", "int8"]
    # conversion time, and with it the few bytes of provenance that record it, differ run to run
    varying = ("conversion_seconds", "size_mb")
    strip = lambda result: [{k: v for k, v in r.items() if k not in varying} for r in result["rows"]]  # noqa: E731
    assert strip(on_cluster) == strip(local)
    assert on_cluster["rows"][1]["agreement"] > 50
    assert {"top1_ci95", "top1_drop_ci95", "agreement_ci95", "mcnemar_p"} <= set(on_cluster["rows"][1])


def test_report_to_an_accuracy_target_on_cluster_matches_one_machine(cluster, tmp_path):
    """Conversions to an accuracy target are Ray tasks that return their candidates as plain
    data; a model that misses the target (no model to evaluate) does not stop the report."""
    world = accuracy_target_world(tmp_path)
    args = ["report", "--model", str(world["torn"]), "--data", str(world["val"]),
            "--calibration", str(world["train"]), "--num-calibration", "81", "--preprocess", "mobilenet", "--plain",
            "--min-agreement", "0.9", "--bench-runs", "0", "--quiet"]
    code, log = _finish(_cli(*args, "--out", str(tmp_path / "cluster"), "--cluster", cluster.address,
                             "--conversion-memory", "1"), timeout=600)
    assert code == 0, log
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    on_cluster, local = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("cluster", "local"))
    timed = ("conversion_seconds", "size_mb", "latency_ms", "float_latency_ms")  # differ run to run

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k not in timed}
        return [untimed(v) for v in value] if isinstance(value, list) else value

    assert untimed(on_cluster["rows"]) == untimed(local["rows"])
    float_row, torn = on_cluster["rows"]
    assert float_row["top1"] is not None and "closest: " in torn["error"] and "agreement" not in torn
    assert [c["name"] for c in torn["candidates"]["candidates"]][:2] == ["post-training", "+ fine-tuning"]
    assert (tmp_path / "cluster" / "report_candidates.png").stat().st_size > 20_000


def test_eval_without_cluster_never_imports_ray(shared, int8_model):
    code = (f"import sys; from edgemobile.cli.main import main; "
            f"rc = main({['eval', str(int8_model), '--data', str(shared / 'imagenet/val'), '--limit', '16', '--quiet']!r}); "
            "assert rc == 0; assert 'ray' not in sys.modules, 'ray was imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 0, run.stderr


def test_unreachable_cluster_is_one_line(shared, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", str(shared / REFERENCE), "--data", str(shared / "imagenet/val"), "--limit", "16", "--quiet",
                 "--cluster", "127.0.0.1:1", "--json", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgemobile: error: --cluster 127.0.0.1:1: no Ray head answers there"), err
    assert not out.exists()


def _data_with_bad_image(shared, folder: Path, count: int = 40) -> Path:
    """``count`` val images in synset folders plus one undecodable JPEG among them."""
    images = sorted((shared / "imagenet" / "val").rglob("*.JPEG"))[:count]
    for path in images:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / path.parent.name / path.name).write_bytes(path.read_bytes())
    bad = folder / images[5].parent.name / "ILSVRC2012_val_bad.JPEG"
    bad.write_bytes(images[6].read_bytes()[:300] + b"\x00" * 64)
    return bad


def test_bad_images_on_cluster_as_on_one_machine(shared, cluster, int8_model, tmp_path):
    bad = _data_with_bad_image(shared, tmp_path / "val")
    args = ["eval", str(int8_model), "--data", str(tmp_path / "val"), "--quiet"]
    code, log = _finish(_cli(*args, "--json", str(tmp_path / "stop.json"), "--cluster", cluster.address,
                             "--shard-size", "16"))
    assert code == 2 and str(bad) in log and "--skip-bad-images" in log, log
    assert not (tmp_path / "stop.json").exists()
    code, log = _finish(_cli(*args, "--skip-bad-images", "--json", str(tmp_path / "cluster.json"),
                             "--cluster", cluster.address, "--shard-size", "16"))
    assert code == 0, log
    assert main([*args, "--skip-bad-images", "--json", str(tmp_path / "local.json")]) == 0
    on_cluster, local = _without_timing(tmp_path / "cluster.json"), _without_timing(tmp_path / "local.json")
    assert on_cluster == local
    assert [s["image"] for s in local["skipped_images"]] == [str(bad)] and local["images"] == 40
