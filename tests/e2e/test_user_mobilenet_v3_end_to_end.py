"""Issue 13's MobileNetV3 acceptance path on real data: a user's MobileNetV3-Small (shared
ImageNet weights, new 5-class head fine-tuned on class-name folders, saved .keras) converts
--int8 with the default techniques; its Keras backbone is rewritten to the int8-friendly graph
(no int8 HARD_SWISH, XNNPACK takes every op but the head's softmax), it agrees with the Keras
float model on held-apart images, and its Android bundle names the user's classes in
MediaPipe."""

from __future__ import annotations

import json

import pytest

from support.cli_run import run_ok as run
from edgemobile.cli.main import main
from edgemobile.metadata import read_metadata
from edgemobile.networks.rewrite import TOLERANCE
from edgemobile.quantization.integer_check import float_tensor_uses, op_histogram
from edgemobile.runtime.delegation import model_delegation
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.user_models import LABELS, class_folders, mediapipe_names_right, mobilenet_v3_small_user_model

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def user(shared, tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers_v3")
    train, val = class_folders(shared, root)
    model = mobilenet_v3_small_user_model(shared, train, root / "flowers_v3.keras")
    int8 = root / "flowers_v3_int8.tflite"
    return {"root": root, "train": train, "val": val, "model": model, "int8": int8}


@pytest.fixture(scope="module")
def converted(user):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["convert", "--model", str(user["model"]), "--int8", "--calibration", str(user["train"]),
                     "-o", str(user["int8"]), "--quiet"]) == 0
    return err.getvalue()


def test_backbone_is_rewritten_and_runs_on_xnnpack_whole(user, converted):
    assert "rewrote the MobileNetV3-Small alpha 1 224x224 backbone" in converted, converted
    assert "warning" not in converted  # nothing left on the builtin kernels
    classifier = TFLiteClassifier(user["int8"])
    assert not float_tensor_uses(classifier)
    ops = op_histogram(classifier)
    assert "HARD_SWISH" not in ops and ops["FULLY_CONNECTED"] == 1, ops
    delegation = model_delegation(user["int8"].read_bytes())
    assert delegation.partitions == 1 and [op.name for op in delegation.fallback] == ["SOFTMAX"]
    provenance = read_metadata(user["int8"]).extra["provenance"]
    rewrite = provenance["rewrite"]
    assert rewrite["applied"] and rewrite["images"] == 15 and 0 <= rewrite["max_difference"] <= TOLERANCE
    assert provenance["quantization"]["techniques"].startswith("mse ranges + equalization")  # the default


def test_eval_against_keras_float_on_held_apart_class_folders(user, converted, capsys, tmp_path):
    report = tmp_path / "eval.json"
    out = run(capsys, "eval", user["int8"], "--data", user["val"], "--reference", user["model"],
              "--json", report, "--quiet")
    print(out)
    result = json.loads(report.read_text())
    assert result["images"] == 10 and "top-1 agreement" in out
    float_top1, int8_top1 = result["reference"]["top1"], result["model"]["top1"]
    assert float_top1 >= 70  # the fine-tuned head learned the classes (chance: 20)
    assert abs(int8_top1 - float_top1) <= 20 and result["comparison"]["top1_agreement"] >= 80


def test_bundle_gives_mediapipe_the_users_class_names(user, capsys):
    folder = user["root"] / "assets" / "flowers_v3"
    folder.parent.mkdir()
    out = run(capsys, "bundle", user["model"], "--calibration", user["train"], "--plain", "--out", folder, "--quiet")
    assert "MediaPipe ImageClassifier checks passed" in out
    assert (folder / "labels.txt").read_text().splitlines() == LABELS
    model = folder / "flowers_v3.tflite"
    assert read_metadata(model).extra["provenance"]["rewrite"]["applied"]
    assert "HARD_SWISH" not in op_histogram(TFLiteClassifier(model))
    right, total = mediapipe_names_right(model, user["val"])
    assert right >= 7, f"MediaPipe named {right} of {total} held-apart images right"


def test_inspect_measures_the_rewritten_model(user, capsys, tmp_path):
    """inspect converts your MobileNetV3 as convert does (backbone rewritten) and compares it
    with the rewritten float model."""
    from support.cli_run import run as run_cli

    code, _, err = run_cli(capsys, "inspect", user["model"], "--calibration", user["train"], "--plain", "--images", 2,
                           "--json", tmp_path / "d.json", "--quiet")
    assert code == 0, err
    assert "rewrote the MobileNetV3-Small alpha 1 224x224 backbone" in err, err
    diagnosis = json.loads((tmp_path / "d.json").read_text())
    assert diagnosis["reference"] == "float model after the MobileNetV3 rewrite", diagnosis["reference"]
    assert "HARD_SWISH" not in {t["op"] for t in diagnosis["tensors"]}
