"""Seeded, bounded fuzzing of every file edgemobile reads, through its command line.

Each kind runs ``tools/fuzz.py`` in a fresh subprocess (so nothing this test process imported,
TensorFlow included, is inherited by the forked cases); every mutated input must end in success
or in one ``edgemobile: error:`` line — no traceback, no crash signal, no hang, no half-written
output. ``python tools/fuzz.py --cases 5000`` runs the same at scale.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import shared_path

from support.paths import ROOT
TOOL = ROOT / "tools" / "fuzz.py"
# Cases per kind: a few hundred, sized so that all kinds together stay under two minutes on two
# shared cores (cases run in batches in forked children: ~10 ms of CPU each).
CASES = dict.fromkeys(("manifest", "tofu", "tflite_meta", "metadata_json", "tflite_third_party", "jpeg", "png",
                       "labels", "ground_truth"), 300)
WITHOUT_SHARED = ("manifest", "tofu")


def _load_tool():
    spec = importlib.util.spec_from_file_location("edgemobile_fuzz_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", list(CASES))
def test_fuzzed_inputs_end_cleanly(kind, tmp_path):
    shared = shared_path()
    if kind not in WITHOUT_SHARED and not (shared / "weights").is_dir():
        pytest.skip(f"shared data not found at {shared} (set EDGEMOBILE_SHARED to its location)")
    out = tmp_path / "fuzz.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "EDGEMOBILE_SHARED": str(shared)}
    proc = subprocess.run([sys.executable, str(TOOL), "--cases", str(CASES[kind]), "--kinds", kind, "--seed", "0",
                           "--json", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stderr[-2000:]
    result = json.loads(out.read_text())[kind]
    assert sum(result["counts"].values()) == CASES[kind]
    assert result["counts"]["other"] == 0, json.dumps(result["other"][:5], indent=1)
    assert proc.returncode == 0
    # The seed is not so gentle that nothing fails, nor so rough that nothing runs.
    assert result["counts"]["clean error"] > 0
    if kind not in ("png", "tofu", "ground_truth"):  # CRCs / strict formats: almost every edit is refused
        assert result["counts"]["ok"] > 0


# -- the harness itself sees what it must ---------------------------------------------------
def _crash(argv):
    os.kill(os.getpid(), signal.SIGSEGV)


def _traceback(argv):
    raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


def _half_json(argv):
    Path(argv[0]).write_text('{"top1": 7')
    return 0


def _clean_error(argv):
    print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", file=sys.stderr)
    print("edgemobile: error: x.tflite: not a valid TFLite model", file=sys.stderr)
    return 2


def _two_errors(argv):
    print("edgemobile: error: one\nedgemobile: error: two", file=sys.stderr)
    return 2


def _ok(argv):
    Path(argv[0]).write_text('{"top1": 7}')
    print("done")
    return 0


@pytest.mark.parametrize("entry, expected, detail", [
    (_crash, "other", "SIGSEGV"), (_traceback, "other", "traceback: UnicodeDecodeError"),
    (_half_json, "other", "half-written"), (_clean_error, "clean error", "not a valid TFLite"),
    (_two_errors, "other", "exit 2"), (_ok, "ok", ""),
])
def test_harness_classifies_outcomes(entry, expected, detail, tmp_path):
    fuzz = _load_tool()
    out = tmp_path / "out"
    out.mkdir()
    code, sig, _, stderr = fuzz.run_forked(entry, [str(out / "r.json")], tmp_path, timeout=30)
    outcome, text = fuzz.classify(code, sig, stderr, out)
    assert outcome == expected and detail in text


def _crash_on_case_3(argv):
    if argv[-1] == "3":
        os.kill(os.getpid(), signal.SIGSEGV)
    if argv[-1] == "5":
        raise KeyError("boom")
    return 2 if int(argv[-1]) % 2 else 0


def test_batch_child_crash_is_recorded_and_the_next_case_runs(tmp_path):
    fuzz = _load_tool()
    kind = fuzz.Kind("k", "f.bin", b"seed", argv=lambda f, out, i: [str(f), str(i)])
    outcomes = list(fuzz.run_batch(kind, range(8), 0, tmp_path, timeout=30, batch=4, entry=_crash_on_case_3))
    assert [o.case for o in outcomes] == list(range(8))
    assert [o.outcome for o in outcomes] == ["ok", "other", "ok", "other", "ok", "other", "ok", "other"]
    assert outcomes[3].detail == "killed by SIGSEGV" and "KeyError" in outcomes[5].detail
    assert "exit 2" in outcomes[1].detail  # exit 2 without an "edgemobile: error:" line is not clean


def test_mutations_are_seeded():
    fuzz = _load_tool()
    data = bytes(range(256)) * 8
    a = [fuzz.mutate(data, fuzz.random.Random(fuzz.case_seed(0, "k", i))) for i in range(20)]
    b = [fuzz.mutate(data, fuzz.random.Random(fuzz.case_seed(0, "k", i))) for i in range(20)]
    assert a == b and all(m != data for m in a) and len(set(a)) == 20


# -- what the fuzzing found -------------------------------------------------------------------
def test_model_with_a_corrupted_tensor_name_is_one_line(shared, tmp_path, capsys):
    """Found by fuzzing: a tensor name that is not UTF-8 made the interpreter's TensorName raise
    UnicodeDecodeError; the project's own flatbuffer reader now refuses the model first."""
    from edgemobile.cli.main import main

    data = bytearray((shared / "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite").read_bytes())
    at = data.find(b"MobilenetV1/Predictions/Reshape_1")
    assert at > 0
    data[at + 3] = 0xFF
    bad = tmp_path / "bad_name.tflite"
    bad.write_bytes(bytes(data))
    image = sorted((shared / "imagenet" / "val").rglob("*.JPEG"))[0]
    assert main(["predict", str(bad), str(image)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("INFO:")]
    assert len(err) == 1 and err[0].startswith(f"edgemobile: error: {bad}: not a valid TFLite model")
    assert "not UTF-8" in err[0]


def test_manifest_path_too_long_for_a_file_system_is_one_line(tmp_path):
    """Found by fuzzing: a 300-character file name ended in OSError (File name too long)."""
    from edgemobile.data import calibration_manifest as cs
    from edgemobile.errors import EdgeMobileError

    data = {"format": cs.FORMAT, "version": cs.VERSION, "name": "long", "root": str(tmp_path),
            "files": [{"path": "x" * 300 + ".JPEG", "sha256": "0" * 64, "size": 1}]}
    with pytest.raises(EdgeMobileError, match="longer than 255 bytes"):
        cs.validate_manifest(data, "m.json")


def _edited_model(shared, edit) -> bytes:
    """Google's uint8 MobileNetV1 0.25/128 with ``edit(schema, model)`` applied, repacked."""
    import flatbuffers

    from edgemobile.tflite.object_api import schema_module

    schema = schema_module()
    model = schema.ModelT.InitFromPackedBuf((shared / "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite")
                                            .read_bytes(), 0)
    edit(schema, model)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _first_op(schema, model, name):
    code = getattr(schema.BuiltinOperator, name)
    graph = model.subgraphs[0]
    return next(op for op in graph.operators
                if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                       model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == code)


def _missing_filter(schema, model):  # found by fuzzing: SIGSEGV inside the interpreter
    op = _first_op(schema, model, "DEPTHWISE_CONV_2D")
    op.inputs = [int(op.inputs[0]), -1, *map(int, op.inputs[2:])]


def _filter_without_data(schema, model):  # found by fuzzing: "Input tensor N lacks data" traceback
    graph = model.subgraphs[0]
    graph.tensors[_first_op(schema, model, "CONV_2D").inputs[1]].buffer = 0


@pytest.mark.parametrize("edit, reason", [(_missing_filter, "lacks a required input or output tensor"),
                                          (_filter_without_data, "holds no data")])
def test_model_the_interpreter_chokes_on_is_refused_first(shared, tmp_path, capsys, edit, reason):
    from edgemobile.cli.main import main

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_edited_model(shared, edit))
    image = sorted((shared / "imagenet" / "val").rglob("*.JPEG"))[0]
    assert main(["predict", str(bad), str(image)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("INFO:")]
    assert len(err) == 1 and err[0].startswith(f"edgemobile: error: {bad}: not a valid TFLite model") and reason in err[0]
