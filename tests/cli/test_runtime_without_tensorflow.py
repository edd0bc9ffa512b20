"""The Raspberry Pi runtime: ``predict``, ``eval``, ``bench`` and ``info`` run where
TensorFlow (and Keras) cannot be imported. The model is converted here, with TensorFlow; the
CLI then runs in a subprocess whose PYTHONPATH starts with stand-in ``tensorflow``/``keras``
packages that log the attempt and raise ImportError — so even a caught import attempt is seen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from support.paths import ROOT
BLOCKED = ("tensorflow", "keras", "tf_keras")
HEAVY = BLOCKED + ("tensorboard", "jax", "torch", "mediapipe", "h5py")

# Any network use is logged like a blocked import (and fails): nothing here may download.
NO_NETWORK = """
import os, socket, sys
def _no_network(*args, **kwargs):
    with open(os.environ["EDGEMOBILE_TEST_IMPORT_LOG"], "a") as _log:
        _log.write("network " + repr(args[:2]) + "\\n")
    raise OSError("network blocked by test_runtime_without_tensorflow")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = _no_network
# As pip leaves them in the runtime install: find_spec() None, import fails (no stand-in to find).
for _name in filter(None, os.environ.get("EDGEMOBILE_TEST_NOT_INSTALLED", "").split(",")):
    sys.modules[_name] = None
"""

# Runs the CLI (or, with -c, the Python code given), then reports which heavy packages ended up imported.
RUNNER = NO_NETWORK + f"""
import json, sys
from edgemobile.cli.main import main
if sys.argv[1:2] == ["-c"]:  # Python code that sets ``code``
    scope = {{}}
    exec(sys.argv[2], scope)
    code = scope["code"]
else:
    code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print("HEAVY_MODULES=" + json.dumps(heavy))
sys.exit(code)
"""

BLOCKER = """
import os
with open(os.environ["EDGEMOBILE_TEST_IMPORT_LOG"], "a") as _log:
    _log.write(__name__ + "\\n")
raise ImportError(__name__ + " is not installed (blocked by test_runtime_without_tensorflow)")
"""


@pytest.fixture(scope="module")
def uint8_model(mobilenet_uint8):
    return mobilenet_uint8


@pytest.fixture()
def no_tensorflow(tmp_path):
    """Environment for a subprocess in which tensorflow/keras (and optionally more) fail."""

    def make(*also_blocked: str) -> tuple[dict, Path]:
        shim = tmp_path / "blocked"
        for name in BLOCKED + also_blocked:
            (shim / name).mkdir(parents=True, exist_ok=True)
            (shim / name / "__init__.py").write_text(BLOCKER)
        log = tmp_path / "import_attempts.log"
        log.write_text("")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(shim), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["EDGEMOBILE_TEST_IMPORT_LOG"] = str(log)
        return env, log

    return make


def run_cli(env, *argv, cwd) -> tuple[int, str, str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, argv)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)
    heavy = None
    for line in proc.stdout.splitlines():
        if line.startswith("HEAVY_MODULES="):
            heavy = json.loads(line.split("=", 1)[1])
    assert heavy is not None, proc.stderr[-2000:]
    return proc.returncode, proc.stdout, proc.stderr, heavy


def test_blocker_works(no_tensorflow, tmp_path):
    env, log = no_tensorflow()
    proc = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "blocked by test_runtime_without_tensorflow" in proc.stderr
    assert log.read_text().split() == ["tensorflow"]


def test_predict_eval_bench_info_without_tensorflow(shared, uint8_model, no_tensorflow, tmp_path):
    env, log = no_tensorflow()
    image = min((shared / "imagenet/val/n01440764").iterdir())
    code, out, err, heavy = run_cli(env, "predict", uint8_model, image, "--top-k", "3", cwd=tmp_path)
    assert code == 0, err
    assert "1." in out and "%" in out and heavy == []
    assert "XNNPACK delegate" not in err, err  # LiteRT's per-interpreter notice is dropped

    report = tmp_path / "eval.json"
    code, out, err, heavy = run_cli(env, "eval", uint8_model, "--data", shared / "imagenet/val", "--limit", "12",
                                    "--json", report, "--quiet", cwd=tmp_path)
    assert code == 0, err
    result = json.loads(report.read_text())
    assert result["images"] == 12 and result["model"]["runtime"] == "ai-edge-litert" and heavy == []

    bench = tmp_path / "bench.json"
    code, out, err, heavy = run_cli(env, "bench", uint8_model, "--threads", "1", "2", "--xnnpack", "on", "off",
                                    "--runs", "3", "--warmup", "1", "--profile", "--json", bench, "--quiet",
                                    cwd=tmp_path)
    assert code == 0, err
    report = json.loads(bench.read_text())
    assert len(report["settings"]) == 4 and report["profile"]["ops"] and heavy == []

    info = tmp_path / "info.json"
    code, out, err, heavy = run_cli(env, "info", uint8_model, "--json", info, cwd=tmp_path)
    assert code == 0, err
    described = json.loads(info.read_text())
    assert described["precision"] == "uint8" and described["xnnpack"]["ops"] > 0 and heavy == []
    assert log.read_text() == "", "something tried to import TensorFlow/Keras"


CONVERTER_ONLY = {
    "convert": ["convert", "--model", "mobilenet", "--alpha", "0.25", "--uint8", "-o", "m.tflite"],
    "convert --android": ["convert", "--model", "mobilenet", "--android", "-o", "bundle_m"],
    "bundle zoo": ["bundle", "mobilenet", "--out", "bundle_m"],
    "bundle keras": ["bundle", "flowers.keras", "--out", "bundle_m"],
    "inspect": ["inspect", "mobilenet", "--alpha", "0.25"],
    "report": ["report", "--model", "mobilenet:alpha=0.25", "--data", "val", "--out", "report"],
    "em.convert": ["-c", "import sys, edgemobile as em\nfrom edgemobile.errors import MissingInstallError\n"
                   "try:\n    em.convert('mobilenet', 'int8', alpha=0.25)\nexcept MissingInstallError as exc:\n"
                   "    print(f'edgemobile: error: {exc}', file=sys.stderr)\n    code = 2"],
}


@pytest.mark.parametrize("argv", CONVERTER_ONLY.values(), ids=CONVERTER_ONLY.keys())
def test_converter_work_in_the_runtime_install_is_one_line_before_any_download(argv, no_tensorflow, tmp_path):
    """Zoo models need their weights and the default calibration images downloaded: the
    runtime install must stop before that, online (no EDGEMOBILE_OFFLINE) and with an empty cache."""
    env, log = no_tensorflow()
    env["EDGEMOBILE_TEST_NOT_INSTALLED"] = ",".join(BLOCKED)
    env.pop("EDGEMOBILE_OFFLINE", None)
    env["KERAS_HOME"] = str(tmp_path / "keras_home")
    (tmp_path / "flowers.keras").write_bytes(b"")
    code, out, err, heavy = run_cli(env, *argv, cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("edgemobile: error: ") and "needs the converter install (pip install 'edgemobile[convert]')" in err
    assert "Traceback" not in err and not (tmp_path / "keras_home").exists()
    assert not any(line.startswith("network") for line in log.read_text().splitlines()), log.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "flowers.keras", "import_attempts.log"]


def test_no_runtime_at_all_is_one_line_error(uint8_model, no_tensorflow, tmp_path):
    env, _ = no_tensorflow("ai_edge_litert", "tflite_runtime")
    code, _, err, _ = run_cli(env, "bench", uint8_model, "--runs", "1", "--quiet", cwd=tmp_path)
    assert code == 2 and err.startswith("edgemobile: error: no TFLite runtime installed") and err.count("\n") == 1


def test_runtime_install_brings_no_tensorflow():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower()
             for dep in project["dependencies"] + project["optional-dependencies"]["runtime"]}
    assert names == {"numpy", "pillow", "flatbuffers", "ai-edge-litert"}
