"""``inspect`` and ``report`` take your own Keras model file (``--model FILE.keras``) with the
same preprocessing/label flags as ``convert``; a file spec works next to a zoo spec in one
report. Tiny real models (32 px), generated images, no ../shared."""

from __future__ import annotations

import json

import pytest
from support.cli_run import run, run_ok
from support.images import write_images
from support.tiny_user_models import CLASSES, accuracy_target_world, tiny_model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_world")
    return {"train": write_images(root / "train", CLASSES, per_class=3, size=40),
            "val": write_images(root / "val", [c.upper() for c in CLASSES], per_class=2, size=40),
            "model": tiny_model(root / "pets.keras", len(CLASSES), grouped=True),
            "other": tiny_model(root / "pets_b.keras", len(CLASSES), seed=1), "root": root}


def test_inspect_a_user_model(capsys, world, tmp_path):
    code, out, err = run(capsys, "inspect", world["model"], "--calibration", world["train"], "--preprocess",
                         "mobilenet", "--images", 4, "--technique-images", 8, "--json", tmp_path / "d.json",
                         "--quiet")
    assert code == 0, err
    diagnosis = json.loads((tmp_path / "d.json").read_text())
    assert diagnosis["model"] == "pets_32" and diagnosis["compared_on_images"] == 4
    assert any(row["op"] == "CONV_2D" for row in diagnosis["tensors"])
    assert "pets_32 int8" in out
    # the grouped conv is left to the converter, and the user is told so
    warnings = [line for line in err.splitlines() if line.startswith("edgemobile: warning:")]
    assert len(warnings) == 1 and "grouped convolution" in warnings[0], err


def test_report_of_user_models_with_their_classes(capsys, world, tmp_path):
    out = run_ok(capsys, "report", "--model", world["model"], "--model", f"{world['other']}:label=second model",
                 "--data", world["val"], "--calibration", world["train"], "--preprocess", "mobilenet", "--plain",
                 "--equalize", "--bench-runs", 0, "--out", tmp_path / "r", "--quiet")
    result = json.loads((tmp_path / "r" / "report.json").read_text())
    assert result["images"] == 6
    assert [(r["model"], r["precision"]) for r in result["rows"]] == [
        ("pets_32", "float32"), ("pets_32", "int8"), ("second model", "float32"), ("second model", "int8")]
    assert result["rows"][0]["weights"] == str(world["model"])
    assert "| pets_32 |" in out and "| second model |" in out
    # pets has a grouped conv: named in its int8 row and under the table
    assert [len(r.get("skipped", [])) for r in result["rows"]] == [0, 1, 0, 0]
    assert "- int8 techniques skipped pets_32: conv2d" in out and "grouped convolution" in out


def test_report_file_spec_next_to_a_zoo_spec(capsys, tmp_path):
    """A user's 1000-class ImageNet model compared with a zoo model on synset-labelled images."""
    from support.images import write_images as images

    val = images(tmp_path / "val", ["n01440764", "n01443537"], per_class=2, size=40)
    model = tiny_model(tmp_path / "mine.keras", 1000)
    run_ok(capsys, "report", "--model", f"{model}:preprocess=mobilenet",
           "--model", "mobilenet:alpha=0.25,resolution=128,weights=none", "--data", val, "--calibration", val,
           "--plain", "--bench-runs", 0, "--out", tmp_path / "r", "--quiet")
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["mine_32", "mine_32", "mobilenet_v1_0.25_128", "mobilenet_v1_0.25_128"]


def test_report_to_an_accuracy_target_keeps_going_past_a_model_that_misses_it(capsys, tmp_path):
    """``report --min-agreement``: each model's int8 model is the fastest candidate that meets
    the target; its candidates are in the JSON, the Markdown and report_candidates.png. "torn"
    (see accuracy_target_world) misses the target: its row says so, the report completes."""
    from PIL import Image

    world = accuracy_target_world(tmp_path)
    out = run_ok(capsys, "report", "--model", world["sure"], "--model", world["torn"], "--data", world["val"],
                 "--calibration", world["train"], "--num-calibration", 81, "--preprocess", "mobilenet", "--plain",
                 "--min-agreement", 0.9, "--bench-runs", 2, "--out", tmp_path / "r", "--quiet")
    result = json.loads((tmp_path / "r" / "report.json").read_text())
    assert result["target"] == {"min_agreement": 0.9, "max_drop": None, "all_integer": False, "validation": None}
    float_sure, int8_sure, float_torn, int8_torn = result["rows"]
    assert float_torn["precision"] == "float32" and float_torn["top1"] is not None  # its float row stays
    # sure: the first candidate meets the target; its int8 row is that model, evaluated as always
    search = int8_sure["candidates"]
    assert search["chosen"] == "post-training" and search["images"] == 16
    assert [c["name"] for c in search["candidates"]] == ["post-training"]
    assert int8_sure["agreement"] == 100 and "error" not in int8_sure
    # torn: post-training and fine-tuning measured, none chosen; no int8 figures, the one-line error
    assert "top1" not in int8_torn and "agreement" not in int8_torn and int8_torn["candidates"]["chosen"] is None
    error = int8_torn["error"]
    assert "\n" not in error and error.startswith("no candidate reaches agreement ≥ 90 % on 16 held-apart images; "
                                                   "closest: ") and "agreement 0.0 %" in error
    torn_candidates = int8_torn["candidates"]["candidates"]
    assert [c["name"] for c in torn_candidates][:2] == ["post-training", "+ fine-tuning"]
    for c in search["candidates"] + torn_candidates:  # measured on the spot, against the float model
        assert c["latency_ms"] > 0 and c["float_latency_ms"] > 0 and c["refused"] is None
        assert c["agreement_ci95"][0] <= c["agreement"] <= c["agreement_ci95"][1]
    assert all(c["agreement"] == 0 and not c["meets_target"] for c in torn_candidates)
    # the Markdown (printed and written): one candidates table per model, the miss under the main table
    md = (tmp_path / "r" / "report.md").read_text()
    assert md.strip() in out
    assert "**sure_32** — accuracy target: agreement ≥ 90 %, measured on 16 held-apart calibration images" in md
    assert "| candidate | agreement % [95 % CI] | top-1 % | drop | size MB | latency ms (float) | verdict |" in md
    assert "| post-training | 100.0 [80.6, 100.0] |" in md and "| + fine-tuning | 0.0 [0.0, 19.4] |" in md
    assert f"- torn_32, no int8 model (plain converter (min/max)): {error}" in md
    assert "| torn_32 | " in md  # its float figures
    png = tmp_path / "r" / "report_candidates.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < png.stat().st_size < 500_000
    assert Image.open(png).size == (900, 576)


@pytest.mark.parametrize("argv, words", [
    (["inspect", "{missing}", "--preprocess", "mobilenet"], "no such Keras model file"),
    (["inspect", "{bad}", "--preprocess", "mobilenet"], "not a loadable Keras model"),
    (["inspect", "{model}", "--calibration", "{train}"], "say how its inputs are normalized"),
    (["inspect", "{model}", "--calibration", "{train}", "--preprocess", "mobilenet", "--alpha", "0.5"],
     "alpha: only for zoo models"),
    (["inspect", "mobilenet", "--preprocess", "mobilenet"], "only for your own Keras models"),
    (["report", "--model", "{model}", "--model", "mobilenet", "--data", "{val}", "--calibration", "{train}",
      "--preprocess", "mobilenet", "--out", "{out}"], "report compares models on the same images"),
    (["report", "--model", "{model}:alpha=0.5", "--data", "{val}", "--preprocess", "mobilenet", "--out", "{out}"],
     "alpha: only for zoo models"),
    (["report", "--model", "mobilenet", "--data", "{val}", "--labels", "{train}", "--out", "{out}"],
     "labels: only for your own Keras model files"),
    (["report", "--model", "{model}", "--data", "{val}", "--calibration", "{train}", "--preprocess", "mobilenet",
      "--labels", "{labels}", "--out", "{out}"], "2 labels"),
    (["report", "--model", "{model}", "--data", "{val}", "--calibration", "{train}", "--preprocess", "mobilenet",
      "--all-integer", "--out", "{out}"], "--validation and --all-integer go with an accuracy target"),
    (["report", "--model", "{model}", "--data", "{val}", "--calibration", "{train}", "--preprocess", "mobilenet",
      "--min-agreement", "0.9", "--out", "{out}"],
     "an accuracy target holds 16 of the 9 calibration images apart: give --num-calibration 80 or more"),
])
def test_bad_user_model_flags_fail_in_one_line(capsys, world, tmp_path, argv, words):
    (tmp_path / "bad.keras").write_text("not a model")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    names = {"missing": tmp_path / "nope.keras", "bad": tmp_path / "bad.keras", "model": world["model"],
             "train": world["train"], "val": world["val"], "out": tmp_path / "out", "labels": tmp_path / "labels.txt"}
    code, out, err = run(capsys, *[a.format(**{k: str(v) for k, v in names.items()}) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("edgemobile: error: "), err
    assert words in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
