"""``edgemobile inspect`` and ``edgemobile report`` end to end on a small random-weight
MobileNet and a handful of generated images (inspect also on the shared MobileNetV1 α0.25/128
weights and calibration images); technique flags on ``convert``; one-line errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from edgemobile.cli.main import main
from edgemobile.quantization.diagnosis import format_diagnosis
from support.cli_run import run_ok as run

pytest.importorskip("tensorflow")

SMALL = ["--alpha", "0.25", "--resolution", "128", "--weights", "none"]
SYNSETS = ("n01440764", "n01443537")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """calib/: 8 flat <synset>_*.JPEG images; val/: synset subfolders, 2 images each."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    calib, val = root / "calib", root / "val"
    calib.mkdir()
    for k in range(8):
        pixels = rng.integers(0, 256, (150, 170, 3), dtype=np.uint8)
        pixels[:10] = 0
        pixels[-10:] = 255  # black and white pixels: the input range is the full [-1, 1]
        Image.fromarray(pixels).save(calib / f"{SYNSETS[k % 2]}_{k}.JPEG")
    for synset in SYNSETS:
        (val / synset).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (140, 160, 3), dtype=np.uint8)).save(val / synset / f"{k}.JPEG")
    return calib, val


def test_inspect_reports_every_layer(folders, capsys, tmp_path):
    calib, _ = folders
    report = tmp_path / "inspect.json"
    out = run(capsys, "inspect", "mobilenet", *SMALL, "--calibration", calib, "--num-calibration", 8, "--plain",
              "--images", 4, "--sensitivity", "--sensitivity-images", 4, "--json", report, "--quiet")
    assert "cum SQNR" in out and "dominant" in out
    result = json.loads(report.read_text())
    ops = [t["op"] for t in result["tensors"]]
    assert ops.count("DEPTHWISE_CONV_2D") == 13 and ops[-1] == "SOFTMAX"
    conv = next(t for t in result["tensors"] if t["weights"])
    assert conv["weights"]["per_channel"] and conv["weights"]["channels"] == 8 and conv["weights"]["sqnr"] > 20
    assert result["reference"] == "float model" and result["techniques"] == "plain converter (min/max)"
    sens = result["sensitivity"]
    whats = {(r["layer"], r["what"]) for r in sens["layers"]}
    assert ("conv1", "weights") in whats and ("conv1_relu", "activations") in whats
    assert len(sens["dominant"]) == 5
    tflite = result["layer_sensitivity"]  # per Keras layer, measured on TFLite
    layers = {r["layer"]: r for r in tflite["layers"]}
    assert {"conv1", "conv_dw_1", "conv_pw_13", "conv_preds"} <= set(layers) and "conv1_bn" in layers["conv1"]["fused"]
    costly = [r for r in tflite["layers"] if r["error_added"] > 0]
    assert sum(r["share"] for r in costly) == pytest.approx(1 if costly else 0, abs=0.02)
    assert tflite["all_float"]["output_error"] <= tflite["int8"]["output_error"]
    assert "(DEPTHWISE_CONV_2D)" in out and "the names --keep-float takes" in out


@pytest.fixture(scope="module")
def shared_inspections(shared, tmp_path_factory):
    """inspect --json of MobileNetV1 α0.25/128 (shared weights, 16 calibration images) with the
    default techniques and with --plain."""
    tmp = tmp_path_factory.mktemp("inspect")
    common = ["--alpha", "0.25", "--resolution", "128", "--weights",
              str(shared / "weights/mobilenet_v1/mobilenet_2_5_128_tf.h5"), "--calibration",
              str(shared / "imagenet/calib"), "--num-calibration", "16", "--images", "4", "--quiet"]
    results = {}
    for name, flags in (("default", []), ("plain", ["--plain"])):
        assert main(["inspect", "mobilenet", *common, *flags, "--json", str(tmp / f"{name}.json")]) == 0
        results[name] = json.loads((tmp / f"{name}.json").read_text())
    return results


def test_inspect_compares_with_the_equalized_float_model(shared_inspections):
    """Equalization rescales channels without changing the function: the default inspect
    compares with the float model after it, so conv1 reads as it does with --plain (it read
    12.6 dB cumulative and 13.7 dB weight SQNR against the un-equalized model, --plain 49.7/45.2)."""
    default, plain = shared_inspections["default"], shared_inspections["plain"]
    conv1 = {name: next(t for t in r["tensors"] if t["weights"]) for name, r in shared_inspections.items()}
    assert "conv1" in conv1["default"]["name"] and conv1["plain"]["weights"]["sqnr"] > 40, conv1["plain"]
    assert abs(conv1["default"]["cumulative_sqnr"] - conv1["plain"]["cumulative_sqnr"]) <= 3, conv1
    assert abs(conv1["default"]["weights"]["sqnr"] - conv1["plain"]["weights"]["sqnr"]) <= 3, conv1
    assert default["reference"] == "float model after BatchNorm folding + equalization"
    assert plain["reference"] == "float model"
    assert default["input_feeding"] == plain["input_feeding"] == "raw pixels"  # as eval and devices feed them


def test_inspect_drops_leave_out_the_floored_logits(shared_inspections):
    """The mse ranges clip the logits' bottom on purpose (values that far below the top logit
    give probability 0 on int8 softmax's grid): the largest-drops line does not name them (it
    did, first, at -19 dB); --plain's keeps them."""
    default = shared_inspections["default"]
    drops = {name: next(line for line in format_diagnosis(r).splitlines() if line.startswith("largest SQNR drops"))
             for name, r in shared_inspections.items()}
    assert "conv_preds" not in drops["default"] and "logits left out" in drops["default"], drops
    assert "logits left out" not in drops["plain"], drops
    assert [t["op"] for t in default["tensors"] if t["logits"]] == ["CONV_2D", "RESHAPE"]


def test_convert_with_technique_flags(folders, capsys, tmp_path):
    from edgemobile.metadata import read_metadata

    calib, _ = folders
    out_file = tmp_path / "m.tflite"
    out = run(capsys, "convert", "--model", "mobilenet", *SMALL, "--int8", "--calibration", calib,
              "--num-calibration", 8, "--no-adaround", "--technique-images", 4, "-o", out_file, "--quiet")
    assert "with mse ranges + equalization + bias correction," in out  # the family default minus AdaRound
    provenance = read_metadata(out_file).extra["provenance"]
    quantization = provenance["quantization"]
    assert quantization["options"]["adaround"] is False and quantization["options"]["bias_correction"] is True
    cost = provenance["conversion"]  # wall time and peak memory, also in the final line
    assert cost["seconds"] > 0 and cost["peak_rss_mb"] > 100, cost
    assert f"peak memory {cost['peak_rss_mb'] / 1024:.2f} GB" in out and " s wall" in out


def test_report_writes_table_json_and_plot(folders, capsys, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    calib, val = folders
    out_dir = tmp_path / "report"
    spec = "mobilenet:alpha=0.25,resolution=128,weights=none,label=tiny"
    bars, errorbar = [], Axes.errorbar

    def recorded_errorbar(ax, x, y, yerr=None, **kw):  # the plot's error bars, as drawn
        bars.append((x, y, yerr))
        return errorbar(ax, x, y, yerr=yerr, **kw)

    monkeypatch.setattr(Axes, "errorbar", recorded_errorbar)
    out = run(capsys, "report", "--model", spec, "--data", val, "--out", out_dir, "--calibration", calib,
              "--num-calibration", 8, "--plain", "--bench-runs", 2, "--quiet")
    assert "| tiny |" in out
    result = json.loads((out_dir / "report.json").read_text())
    float_row, int8_row = result["rows"]
    assert float_row["precision"] == "float32" and int8_row["precision"] == "int8"
    assert int8_row["size_mb"] < float_row["size_mb"] and int8_row["latency_ms"] > 0
    assert 0 <= int8_row["agreement"] <= 100 and result["images"] == 4
    assert (out_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "agreement" in (out_dir / "report.md").read_text()
    # Every figure with its 95 % interval (4 images: wide), in the JSON, the table and the plot.
    for row in (float_row, int8_row):
        assert row["top1_ci95"][0] <= row["top1"] <= row["top1_ci95"][1] and row["top5_ci95"][1] >= row["top5"]
    low, high = int8_row["top1_drop_ci95"]
    assert low <= int8_row["top1_drop"] <= high and high - low > 20
    assert int8_row["agreement_ci95"][0] <= int8_row["agreement"] <= int8_row["agreement_ci95"][1]
    assert 0 < int8_row["mcnemar_p"] <= 1 and int8_row["top1_only_int8"] + int8_row["top1_only_float"] <= 4
    assert f"| {int8_row['top1_drop']:+.2f} [{low:+.1f}, {high:+.1f}] |" in out and "McNemar p" in out
    assert f"{float_row['top1']:.2f} [{float_row['top1_ci95'][0]:.1f}, {float_row['top1_ci95'][1]:.1f}]" in out
    assert len(bars) == 2
    for (x, y, yerr), r in zip(bars, (float_row, int8_row)):
        assert x == [r["latency_ms"]] and y == [r["top1"]]
        (below,), (above,) = yerr
        assert [below, above] == pytest.approx([r["top1"] - r["top1_ci95"][0], r["top1_ci95"][1] - r["top1"]])
    # int8 slower than float is said only as measured in this run (either way is a valid timing)
    slower = int8_row["latency_ms"] >= 1.1 * float_row["latency_ms"]
    assert result["machine"] and (result["speed_note"] is not None) == slower
    if slower:
        assert result["speed_note"] in (out_dir / "report.md").read_text()
    # never overwrites without --force
    code = main(["report", "--model", spec, "--data", str(val), "--out", str(out_dir), "--quiet"])
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_report_says_where_int8_timed_slower_than_float():
    from edgemobile.eval.report import _speed_note, markdown

    def rows(*latencies):
        out = []
        for model, (f, q) in zip(("v1", "v3"), latencies):
            out += [{"model": model, "precision": "float32", "config": "float", "top1": 50.0, "top5": 70.0,
                     "size_mb": 1.0, "latency_ms": f},
                    {"model": model, "precision": "int8", "config": "default", "top1": 49.0, "top5": 69.0,
                     "top1_drop": 1.0, "agreement": 90.0, "kl": 0.01, "size_mb": 0.3, "latency_ms": q}]
        return out

    slow = rows((0.90, 1.35), (2.0, 1.0))
    note = _speed_note(slow, ablation=False)
    assert note.startswith("int8 ran slower than float on this machine (v1: 1.35 vs 0.90 ms): ") and "v3" not in note
    result = {"data": "val", "images": 4, "calibration": None, "ablation": False, "latency": "median",
              "machine": "CPU", "speed_note": note, "rows": slow}
    assert f"\n{note}.\n" in markdown(result) and "latency: median on CPU" in markdown(result)
    assert _speed_note(rows((0.90, 0.80), (2.0, 1.0)), ablation=False) is None
    assert _speed_note(rows((None, None)), ablation=False) is None  # --bench-runs 0: nothing timed
    assert "v1 (default): 1.35 vs 0.90 ms" in _speed_note(slow, ablation=True)


def test_pareto_front_keeps_the_candidates_nothing_beats_on_both():
    from edgemobile.eval.report import pareto_front

    points = [(2.0, 90.0), (1.0, 80.0), (1.5, 70.0), (3.0, 90.0), (2.0, 85.0), (0.5, 60.0), (4.0, 95.0), (0.5, 60.0)]
    # (1.5, 70) is slower and less agreeing than (1, 80); (3, 90) only slower than (2, 90); (2, 85) only less
    # agreeing than it; the twin (0.5, 60) points beat each other on neither; fastest first
    assert pareto_front(points) == [5, 7, 1, 0, 6]
    assert pareto_front([(1.0, 50.0)]) == [0] and pareto_front([]) == []


def _searches():
    """Two models' candidates as a report keeps them (Search.as_dict): "a" met the target with its
    third candidate, a fourth was refused; "b" missed it."""
    from edgemobile.quantization.agreement import Agreement
    from edgemobile.quantization.target import Candidate, Search, Target

    target = Target(min_agreement=0.9)
    a = Search(target, 64, "held-apart calibration images", [
        Candidate("post-training", b"x" * 500_000, measured=Agreement(64, 51, 1e-3), latency_ms=1.0, float_ms=2.0),
        Candidate("+ fine-tuning", b"x" * 500_000, measured=Agreement(64, 55, 1e-3), latency_ms=1.2, float_ms=2.2),
        Candidate("+ fine-tuning, top 1 float (2 layers)", b"x" * 600_000, measured=Agreement(64, 60, 1e-4),
                  latency_ms=1.1, float_ms=2.1, meets=True),
        Candidate("+ fine-tuning, top 2 float (3 layers)", b"x" * 700_000,
                  refused="not a candidate: XNNPACK leaves 2 more ops to builtin kernels")])
    a.chosen = a.candidates[2]
    b = Search(target, 64, "held-apart calibration images", [
        Candidate("post-training", b"x" * 300_000, measured=Agreement(64, 30, 1e-2), latency_ms=0.5, float_ms=0.9),
        Candidate("+ fine-tuning", b"x" * 300_000, measured=Agreement(64, 40, 1e-2), latency_ms=0.6, float_ms=1.1)])
    return a, b


def test_candidates_plot_draws_fronts_chosen_float_and_target(monkeypatch):
    from matplotlib.axes import Axes

    from edgemobile.eval.report import candidates_plot

    a, b = _searches()
    result = {"ablation": False, "rows": [
        {"model": "a", "precision": "float32"}, {"model": "a", "precision": "int8", "candidates": a.as_dict()},
        {"model": "b", "precision": "float32"}, {"model": "b", "precision": "int8", "error": "missed",
                                                  "candidates": b.as_dict()}]}
    drawn = {name: [] for name in ("errorbar", "plot", "scatter", "axvline", "axhline")}
    for name in drawn:
        def record(ax, *args, _name=name, _real=getattr(Axes, name), **kw):
            drawn[_name].append((args, kw))
            return _real(ax, *args, **kw)
        monkeypatch.setattr(Axes, name, record)
    png = candidates_plot(result)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (a_x, a_y), a_kw = drawn["errorbar"][0]
    assert a_x == [1.0, 1.2, 1.1] and a_y == pytest.approx([100 * 51 / 64, 100 * 55 / 64, 100 * 60 / 64], abs=0.01)
    assert a_kw["label"] == "a (1 refused by XNNPACK, not shown)"  # the refused candidate has no latency
    low, high = a.candidates[0].measured.interval
    assert [e[0] for e in a_kw["yerr"]] == pytest.approx([100 * (51 / 64 - low), 100 * (high - 51 / 64)], abs=0.01)
    assert drawn["errorbar"][1][1]["label"] == "b: target missed"
    # fronts: a's fine-tuned candidate is slower than the chosen one and agrees less: off the front
    assert [args for args, _ in drawn["plot"]] == [([1.0, 1.1], pytest.approx([79.69, 93.75], abs=0.01)),
                                                 ([0.5, 0.6], pytest.approx([46.88, 62.5], abs=0.01))]
    ring, legend_ring = drawn["scatter"]
    assert ring[0] == ([1.1], [pytest.approx(93.75, abs=0.01)]) and legend_ring[1]["label"] == "chosen (ringed)"
    assert [args[0] for args, _ in drawn["axvline"]] == [2.1, 1.0]  # median float latency timed alongside
    assert drawn["axhline"][0][0] == (90.0,) and "target: agreement ≥ 90 %" in drawn["axhline"][0][1]["label"]


def test_a_report_where_every_model_missed_the_target_writes_all_it_has(tmp_path):
    """No int8 model: no top-1 vs latency plot (it raised once report.md and report.json were
    written, and the report stopped half-written); the candidates and their plot are there."""
    from edgemobile.results import ReportResult

    _, b = _searches()
    float_row = {"model": "b", "precision": "float32", "config": "float", "top1": 50.0, "top1_ci95": [40.0, 60.0],
                 "top5": 70.0, "size_mb": 1.2, "latency_ms": 1.0}
    result = {"data": "val", "images": 100, "calibration": None, "ablation": False, "latency": "median of 20",
              "machine": "CPU", "speed_note": None, "target": b.target.as_dict(),
              "rows": [float_row, {"model": "b", "precision": "int8", "config": "plain", "error": "no candidate "
                                   "reaches agreement ≥ 90 %; closest: + fine-tuning", "candidates": b.as_dict()}]}
    written = ReportResult(result).write(tmp_path / "r")
    assert [path.name for path in written] == ["report.md", "report.json", "report_candidates.png"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| b | 50.00 [40.0, 60.0] | - |" in md and "- b, no int8 model (plain): no candidate reaches" in md


def test_candidates_markdown_has_the_cells_of_the_text_table():
    from edgemobile.quantization.target import markdown_table

    a, _ = _searches()
    text = a.table().splitlines()
    md = markdown_table(a.as_dict()).splitlines()
    assert md[0] == text[0] + ":" and md[2].endswith("| latency ms (float) | verdict |")
    assert len(md) == len(text) - 1 + 2  # a title; no rule under the header, a blank line and an alignment row
    for text_row, md_row in zip(text[3:], md[4:]):
        cells = [c.strip() for c in md_row[2:-2].split(" | ")]
        assert [c for c in cells if c] == re.split(r"\s{2,}", text_row.strip())
    assert "| + fine-tuning, top 1 float (2 layers) | 93.8 [85.0, 97.5] | 0.60 | 1.10 (2.10) | chosen |" in md
    assert ("| + fine-tuning, top 2 float (3 layers) | - | 0.70 | - | not a candidate: XNNPACK leaves 2 more ops "
            "to builtin kernels |") in md


@pytest.mark.parametrize("argv, message", [
    (["report", "--model", "mobilenet:alpha", "--data", ".", "--out", "x"], "expected key=value"),
    (["report", "--model", "mobilenet:alpha=big", "--data", ".", "--out", "x"], "must be a number"),
    (["report", "--model", "nosuchnet", "--data", ".", "--out", "x"], "unknown model"),
    # offline (conftest): the fix names report's spec key, not convert's --weights (issue 27)
    (["report", "--model", "mobilenet:alpha=0.25", "--data", ".", "--out", "x"], "or pass mobilenet:weights=FILE"),
    (["inspect", "mobilenet", "--alpha", "0.3"], "alpha 0.3 is not available"),
    (["convert", "--model", "mobilenet", *SMALL, "--int8", "--finetune-epochs", "4"],
     "fine-tuning epochs set, but finetune is off: turn it on (--finetune)"),
    (["convert", "--model", "mobilenet", *SMALL, "--int8", "--finetune", "--finetune-epochs", "0"],
     "fine-tuning epochs must be at least 1"),
    (["convert", "--model", "mobilenet", *SMALL, "--int8", "--keep-float", "conv_dw_1_rleu", "--calibration",
      "{calib}"], "--keep-float conv_dw_1_rleu: no such layer in mobilenet_v1_0.25_128; nearest: conv_dw_1_relu"),
    (["bundle", "mobilenet", *SMALL, "--out", "x", "--keep-float", "conv_pw_13_rleu", "--calibration", "{calib}"],
     "--keep-float conv_pw_13_rleu: no such layer in mobilenet_v1_0.25_128; nearest: conv_pw_13_relu"),
    (["convert", "--model", "mobilenet", *SMALL, "--int8", "--all-integer"], "go with an accuracy target"),
    (["convert", "--model", "mobilenet", *SMALL, "--min-agreement", "0.9"], "are for --int8/--uint8 conversions"),
    (["convert", "--model", "mobilenet", *SMALL, "--int8", "--min-agreement", "0.9", "--keep-float", "conv1",
      "--calibration", "{calib}"], "not both"),
])
def test_one_line_errors(capsys, folders, argv, message):
    argv = [a.replace("{calib}", str(folders[0])) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1



def test_report_records_a_peer_that_refuses_the_model(folders):
    """A peer quantizer that can't take a model (litert-quantizer's OCTAV on MobileNetV3's
    Rescaling) gets a row with its error; the report goes on and renders."""
    from edgemobile.errors import EdgeMobileError
    from edgemobile.eval.report import ModelSpec, markdown, run_report
    from edgemobile.networks.request import ModelRequest
    from edgemobile.quantization.convert import CalibrationSet
    from edgemobile.quantization.techniques.recipe import PLAIN

    calib, val = folders

    def refuse(variant, weights, images):
        assert images.shape == (8, 128, 128, 3)
        raise EdgeMobileError("Unsupported symmetry: False | symmetric only")

    result = run_report([ModelSpec(ModelRequest("mobilenet_v1", 0.25, 128, "none"), "tiny")], val,
                        CalibrationSet.from_folder(calib, 8), PLAIN, bench_runs=0, progress=False,
                        peers=[("peer", refuse)])
    float_row, int8_row, peer_row = result["rows"]
    assert peer_row["config"] == "peer" and peer_row["error"] == "Unsupported symmetry: False | symmetric only"
    assert "agreement" in int8_row and "| tiny |" in markdown(result)
    ablation = markdown(dict(result, ablation=True))
    assert "| tiny | peer: refused (Unsupported symmetry: False / symmetric only) | - |" in ablation
