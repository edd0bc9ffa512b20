"""eval over data with an undecodable image, and eval interrupted by Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgemobile.cli.main import main

from support.paths import ROOT
MODEL = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"


@pytest.fixture()
def data_with_bad_image(shared, tmp_path):
    images = sorted((shared / "imagenet" / "val").rglob("*.JPEG"))[:3]
    data = tmp_path / "val"
    for path in images:
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, data / path.parent.name / path.name)
    bad = data / images[0].parent.name / "ILSVRC2012_val_bad.JPEG"
    bad.write_bytes(images[1].read_bytes()[:300] + b"\x00" * 64)  # a JPEG header, then nothing decodable
    return data, bad


def test_eval_stops_at_bad_image_by_default(shared, data_with_bad_image, tmp_path, capsys):
    data, bad = data_with_bad_image
    out = tmp_path / "eval.json"
    assert main(["eval", str(shared / MODEL), "--data", str(data), "--json", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgemobile: error: ")
    assert str(bad) in err[0] and "--skip-bad-images" in err[0]
    assert not out.exists()


def test_skip_bad_images_evaluates_the_rest(shared, data_with_bad_image, tmp_path, capsys):
    data, bad = data_with_bad_image
    out = tmp_path / "eval.json"
    assert main(["eval", str(shared / MODEL), "--data", str(data), "--json", str(out), "--quiet",
                 "--skip-bad-images"]) == 0
    table = capsys.readouterr().out
    assert "skipped 1 undecodable images" in table and "over the 3 images actually evaluated" in table
    result = json.loads(out.read_text())
    assert result["images"] == 3 and result["model"]["images"] == 3
    assert [s["image"] for s in result["skipped_images"]] == [str(bad)]
    assert "3 images evaluated" in result["note"]
    # The metrics are those of the good images alone.
    good = tmp_path / "good"
    shutil.copytree(data, good)
    (good / bad.relative_to(data)).unlink()
    assert main(["eval", str(shared / MODEL), "--data", str(good), "--json", str(tmp_path / "good.json"),
                 "--quiet"]) == 0
    alone = json.loads((tmp_path / "good.json").read_text())
    assert alone["model"]["top1"] == result["model"]["top1"] and alone["model"]["top5"] == result["model"]["top5"]
    assert "skipped_images" not in alone


def test_only_bad_images_is_one_error(shared, tmp_path, capsys):
    data = tmp_path / "val" / "n01440764"
    data.mkdir(parents=True)
    (data / "a.JPEG").write_bytes(b"not a jpeg")
    assert main(["eval", str(shared / MODEL), "--data", str(tmp_path / "val"), "--skip-bad-images", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of the 1 images could be decoded" in err[0]


@pytest.mark.parametrize("sig, code, message", [(signal.SIGINT, 130, "edgemobile: interrupted (Ctrl-C)"),
                                                (signal.SIGTERM, 143, "edgemobile: terminated (SIGTERM)")])
def test_interrupted_eval_leaves_no_json(shared, tmp_path, sig, code, message):
    """The eval runs in a subprocess whose stderr is a terminal, so the progress bar shows as
    soon as images are being evaluated; then the signal arrives."""
    data = tmp_path / "data"  # 20 links to each val image: long enough to be interrupted
    for image in (shared / "imagenet" / "val").rglob("*.JPEG"):
        (data / image.parent.name).mkdir(parents=True, exist_ok=True)
        for k in range(20):
            (data / image.parent.name / f"{k}_{image.name}").symlink_to(image)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "eval.json"
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "edgemobile", "eval", str(shared / MODEL),
                             "--data", str(data), "--json", str(out)],
                            stdout=subprocess.DEVNULL, stderr=slave, env=env, cwd=work)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b"evaluating" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 1.0)[0]:
                seen += os.read(master, 4096)
        assert b"evaluating" in seen, seen.decode(errors="replace")
        proc.send_signal(sig)
        # Read while it exits: an unread pty fills up, and a full one blocks the child's
        # progress bar and closing message, so that it never exits.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child is gone and its side closed
                    chunk = b""
                seen += chunk
                if chunk:
                    continue
            if proc.poll() is not None:
                break
        assert proc.poll() == code, (proc.poll(), seen[-2000:].decode(errors="replace"))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    lines = [line.strip() for line in seen.decode(errors="replace").replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == message
    assert not any("Traceback" in line for line in lines)
    assert list(work.iterdir()) == []  # no JSON, no temp file
