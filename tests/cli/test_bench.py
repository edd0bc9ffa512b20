"""``edgemobile bench``: settings, flags, JSON and the per-op profile — structure only, never
times (any latency is a valid latency on a loaded CI machine)."""

from __future__ import annotations

import json

import pytest

from edgemobile.cli.main import main
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.cli_run import run

# Google's QAT uint8 MobileNetV1 0.25/128: a small third-party model with no edgemobile metadata.
MODEL = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"
FAST = ["--runs", "3", "--warmup", "1", "--quiet"]


@pytest.fixture(scope="module")
def model(shared):
    return shared / MODEL


def test_every_setting_is_measured_and_written_as_json(model, tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    code, out, err = run(capsys, "bench", model, "--threads", "1", "2", "--xnnpack", "on", "off", *FAST,
                         "--json", report_path)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert [(s["threads"], s["xnnpack"]) for s in report["settings"]] == [(1, True), (2, True), (1, False), (2, False)]
    assert report["model_size_mb"] == pytest.approx(model.stat().st_size / 1e6, abs=1e-3)
    assert report["runs"] == 3 and report["warmup"] == 1 and report["runtime"]
    assert report["input"]["dtype"] == "uint8" and report["input"]["shape"] == [1, 128, 128, 3]
    for s in report["settings"]:
        assert 0 <= s["min_ms"] <= s["median_ms"] <= s["p90_ms"] <= s["max_ms"]
        assert s["peak_rss_mb"] is None or s["peak_rss_mb"] > 0
    assert report["settings"][0]["peak_rss_delta_mb"] is not None or report["memory_method"] == "unavailable"
    assert report["memory_method"] and "profile" not in report
    assert "median ms" in out and "p90 ms" in out and len([line for line in out.splitlines()
                                                           if line.strip().startswith(("1 ", "2 "))]) == 4


def test_xnnpack_flags(model, capsys, tmp_path):
    report_path = tmp_path / "off.json"
    code, _, err = run(capsys, "bench", model, "--no-xnnpack", *FAST, "--json", report_path)
    assert code == 0, err
    assert [s["xnnpack"] for s in json.loads(report_path.read_text())["settings"]] == [False]
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(model), "--no-xnnpack", "--xnnpack", "on"])
    assert exc.value.code == 2


def test_each_setting_reports_what_xnnpack_took(shared, tmp_path, capsys):
    """Not the flag that was asked for: Google's uint8 MobileNetV3 keeps its HARD_SWISH ops on
    the builtin kernels even with XNNPACK on."""
    v3 = shared / "weights/mobilenet_v3/v3-small_224_1.0_uint8.tflite"
    report_path = tmp_path / "v3.json"
    code, out, err = run(capsys, "bench", v3, "--xnnpack", "on", "off", *FAST, "--json", report_path)
    assert code == 0, err
    on, off = json.loads(report_path.read_text())["settings"]
    ops = len(TFLiteClassifier(v3, use_xnnpack=False).graph_ops())
    assert on["xnnpack_applied"] is True and 0 < on["xnnpack_ops"] < on["ops"] == ops
    assert on["builtin_ops"]["HARD_SWISH (uint8)"] > 0
    assert sum(on["builtin_ops"].values()) == ops - on["xnnpack_ops"]
    assert off["xnnpack_applied"] is False and off["xnnpack_ops"] == 0 and off["ops"] == ops
    assert f"{on['xnnpack_ops']}/{ops}" in out and f"0/{ops}" in out and "HARD_SWISH (uint8)" in out


def test_profile_times_every_op_alone(model, tmp_path, capsys):
    report_path = tmp_path / "profile.json"
    code, out, err = run(capsys, "bench", model, "--profile", *FAST, "--json", report_path)
    assert code == 0, err
    profile = json.loads(report_path.read_text())["profile"]
    ops = TFLiteClassifier(model).graph_ops()
    assert [p["op"] for p in profile["ops"]] == [op["op_name"] for op in ops]
    measured = [p for p in profile["ops"] if p["median_ms"] is not None]
    assert len(measured) == len(ops), [p["note"] for p in profile["ops"] if p["note"]]
    assert {p["kernel"] for p in measured} <= {"xnnpack", "builtin"}
    assert any(p["kernel"] == "xnnpack" for p in measured if p["op"] == "CONV_2D")
    assert sum(p["percent"] for p in measured) == pytest.approx(100, abs=0.5)
    assert {row["op"] for row in profile["by_type"]} == {op["op_name"] for op in ops}
    assert profile["setting"] == {"threads": 1, "xnnpack": True} and "timed alone" in profile["method"]
    assert "per-op profile" in out and "CONV_2D" in out


def test_bad_input_is_one_line(model, tmp_path, capsys):
    existing = tmp_path / "exists.json"
    existing.write_text("{}")
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_text("hello")
    for argv, expected in [
        (["bench", model, "--json", existing], "--force"),
        (["bench", not_a_model], "not a TFLite model"),
        (["bench", tmp_path / "missing.tflite"], "no such model file"),
        (["bench", model, "--reference", tmp_path / "float.tflite"], "no such model file"),
    ]:
        code, _, err = run(capsys, *argv, *FAST)
        assert code == 2 and err.startswith("edgemobile: error: ") and err.count("\n") == 1, err
        assert expected in err
    assert existing.read_text() == "{}"
    for bad in (["--runs", "0"], ["--threads", "0"], ["--warmup", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main(["bench", str(model), *bad])
        assert exc.value.code == 2


def test_reference_is_timed_setting_by_setting(model, shared, tmp_path, capsys):
    """Two 8-bit models: both timed under every setting, and no int8-against-float note."""
    v3 = shared / "weights/mobilenet_v3/v3-small_224_1.0_uint8.tflite"
    report_path = tmp_path / "ref.json"
    code, out, err = run(capsys, "bench", model, "--reference", v3, "--threads", "1", "2", *FAST,
                         "--json", report_path)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    ref = report["reference"]
    assert ref["model"] == str(v3) and ref["model_size_mb"] == pytest.approx(v3.stat().st_size / 1e6, abs=1e-3)
    assert [(s["threads"], s["xnnpack"]) for s in ref["settings"]] == [(1, True), (2, True)]
    assert all(s["median_ms"] > 0 and s["compute_dtype"] == "uint8" for s in report["settings"] + ref["settings"])
    assert report["speed_note"] is None and "int8 ran slower" not in out
    assert f"reference {v3}" in out and "threads=2 xnnpack=on:" in out


def test_speed_note_only_for_int8_timed_slower_than_its_float_reference():
    from edgemobile.deploy.bench import speed_note

    def setting(threads, median, dtype):
        return {"threads": threads, "xnnpack": True, "median_ms": median, "compute_dtype": dtype}

    report = {"settings": [setting(1, 0.42, "int8"), setting(2, 0.20, "int8")],
              "reference": {"settings": [setting(1, 0.36, "float32"), setting(2, 0.25, "float32")]}}
    note = speed_note(report)
    assert note.startswith("int8 ran slower than float on this machine (threads=1 xnnpack=on: 0.42 vs 0.36 ms)")
    assert "threads=2" not in note
    report["reference"]["settings"][0]["compute_dtype"] = "int8"  # not a float reference: nothing to say
    assert speed_note(report) is None and speed_note({"settings": report["settings"]}) is None
