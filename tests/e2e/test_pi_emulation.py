"""Raspberry Pi OS on emulated ARM (opt-in: ``EDGEMOBILE_PI_EMULATION=1``, root and binfmt_misc).

``tools/pi_emulation.py run`` installs the runtime in a Debian bookworm arm64 and armhf rootfs
as docs/raspberry-pi.md tells a Pi user, evaluates an int8 and a uint8 MobileNetV1 α0.25 on this machine
with ``eval --outputs``, then runs predict/eval/bench inside each emulated machine with the
host's outputs as ``--reference``. Asserted per architecture: exit 0, the runtime picked, top-1
identical to this machine on every image, equal top-1/top-5, and score differences within the
bound below (in output quantization steps; one step is 1/256 in probability).

Measured on these 50 images (int8 and uint8 alike): arm64 47/50 bit-identical, at most 1 step,
top-1/top-5 equal. armhf 5/50 identical, up to 13 steps; on 2 images the device's two highest
scores are an exact tie that includes the host's top-1 and the lower class index wins, so
there top-1 is asserted as "the host's top-1 has the device's highest score", and top-1/top-5
equality only on arm64.

The rootfs cache (``EDGEMOBILE_PI_CACHE``, default /var/cache/edgemobile-pi) outlives the run;
the two models are cached there too (made with ``--plain``: device fidelity, not accuracy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT
TOOL = ROOT / "tools" / "pi_emulation.py"
WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"
IMAGES = 50
CACHE = Path(os.environ.get("EDGEMOBILE_PI_CACHE", "/var/cache/edgemobile-pi"))
CANNOT_EMULATE, MIRROR_UNREACHABLE = 3, 4
# Largest |device - host| output difference allowed, in quantization steps. aarch64 runs
# XNNPACK's int8 kernels like x86 (measured: at most 1 step); armv7l's tflite-runtime has no
# XNNPACK, its kernels round differently (measured: 13 steps here, 19 on another 51 images).
MAX_STEPS = {"arm64": 2, "armhf": 24}
RUNTIME = {"arm64": "ai-edge-litert", "armhf": "tflite_runtime"}
MACHINE = {"arm64": "aarch64", "armhf": "armv7l"}

pytestmark = [
    pytest.mark.skipif(os.environ.get("EDGEMOBILE_PI_EMULATION") != "1",
                       reason="emulated Raspberry Pi OS is opt-in: set EDGEMOBILE_PI_EMULATION=1 (root, binfmt_misc)"),
    pytest.mark.convert,
]


def tool(*args, timeout=7200):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def models(shared):
    """int8 and uint8 MobileNetV1 0.25/224 from ../shared weights, cached with the rootfs."""
    from edgemobile.cli.main import main

    folder = CACHE / "models"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for precision in ("int8", "uint8"):
        path = folder / f"mobilenet_v1_0.25_224_{precision}_plain.tflite"
        if not path.exists():
            assert main(["convert", "--model", "mobilenet", "--alpha", "0.25", "--weights", str(shared / WEIGHTS),
                         f"--{precision}", "--plain", "--calibration", str(shared / "imagenet/calib"),
                         "--num-calibration", "200", "-o", str(path), "--quiet"]) == 0
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def emulated(models, shared, tmp_path_factory):
    check = tool("check")
    if check.returncode == CANNOT_EMULATE:
        pytest.skip(check.stderr.strip())
    assert check.returncode == 0, check.stderr
    from edgemobile.data.datasets import find_images, stratified_sample

    val = shared / "imagenet/val"
    images = tmp_path_factory.mktemp("pi") / "images"
    for path in stratified_sample(find_images(val), val, IMAGES, 0):
        (images / path.relative_to(val)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, images / path.relative_to(val))
    out = images.parent / "out"
    proc = tool("run", "--arch", "arm64", "armhf", "--model", *models, "--images", images, "--out", out,
                "--cache", CACHE)
    if proc.returncode == MIRROR_UNREACHABLE:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return models, out, json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_device_install_and_eval_match_this_machine(emulated, arch):
    models, out, summary = emulated
    info = summary["architectures"][arch]
    assert info["machine"] == MACHINE[arch] and info["runtime"] == RUNTIME[arch]
    if arch == "armhf":
        assert info["numpy"].startswith("1.")  # Debian's python3-numpy: tflite-runtime needs NumPy 1.x
    for model in models:
        host = json.loads((out / "host" / f"{model.stem}.eval.json").read_text())
        device = json.loads((out / arch / f"{model.stem}.eval.json").read_text())
        c = device["image_comparison"]
        assert c["same_model"] is True and c["images"] == IMAGES
        flipped = [d for d in c["differing"] if d["top1_differs"]]
        assert all(d["top1_tied"] for d in flipped), flipped  # the host's top-1 is a device top-1
        assert host["model"]["top1"] == device["reference"]["top1"]
        if arch == "arm64":
            assert c["top1_agreement"] == 100.0, flipped
            assert device["model"]["top1"] == host["model"]["top1"]
            assert device["model"]["top5"] == host["model"]["top5"]
        assert device["model"]["runtime"] == RUNTIME[arch]
        assert c["max_steps"] <= MAX_STEPS[arch], (model.name, c["max_steps"], c["differing"][:5])
        predictions = json.loads((out / arch / f"{model.stem}.predict.json").read_text())["predictions"]
        assert len(predictions) == 3 and all(len(p["top"]) == 5 for p in predictions)
        bench = json.loads((out / arch / f"{model.stem}.bench.json").read_text())
        assert bench  # written; its structure is test_bench's business
