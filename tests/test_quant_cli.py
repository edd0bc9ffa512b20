"""``edgemobile inspect`` and ``edgemobile report`` end to end on a small random-weight
MobileNet and a handful of generated images; technique flags on ``convert``; one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgemobile.cli.main import main
from cli_run import run_ok as run

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


def test_report_writes_table_json_and_plot(folders, capsys, tmp_path):
    calib, val = folders
    out_dir = tmp_path / "report"
    spec = "mobilenet:alpha=0.25,resolution=128,weights=none,label=tiny"
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
    # never overwrites without --force
    code = main(["report", "--model", spec, "--data", str(val), "--out", str(out_dir), "--quiet"])
    assert code == 2 and "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["report", "--model", "mobilenet:alpha", "--data", ".", "--out", "x"], "expected key=value"),
    (["report", "--model", "mobilenet:alpha=big", "--data", ".", "--out", "x"], "must be a number"),
    (["report", "--model", "nosuchnet", "--data", ".", "--out", "x"], "unknown model"),
    (["inspect", "mobilenet", "--alpha", "0.3"], "alpha 0.3 is not available"),
])
def test_one_line_errors(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1



def test_report_records_a_peer_that_refuses_the_model(folders):
    """A peer quantizer that can't take a model (litert-quantizer's OCTAV on MobileNetV3's
    Rescaling) gets a row with its error; the report goes on and renders."""
    from edgemobile.errors import EdgeMobileError
    from edgemobile.eval.report import ModelSpec, markdown, run_report
    from edgemobile.quantization.convert import CalibrationSet
    from edgemobile.quantization.techniques.recipe import PLAIN

    calib, val = folders

    def refuse(variant, weights, images):
        assert images.shape == (8, 128, 128, 3)
        raise EdgeMobileError("Unsupported symmetry: False | symmetric only")

    result = run_report([ModelSpec("mobilenet_v1", 0.25, 128, "none", "tiny")], val,
                        CalibrationSet.from_folder(calib, 8), PLAIN, bench_runs=0, progress=False,
                        peers=[("peer", refuse)])
    float_row, int8_row, peer_row = result["rows"]
    assert peer_row["config"] == "peer" and peer_row["error"] == "Unsupported symmetry: False | symmetric only"
    assert "agreement" in int8_row and "| tiny |" in markdown(result)
    ablation = markdown(dict(result, ablation=True))
    assert "| tiny | peer: refused (Unsupported symmetry: False / symmetric only) | - |" in ablation
