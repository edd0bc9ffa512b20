"""Issue 13's acceptance path on real data, for both backbones users fine-tune: a user takes
MobileNetV1 α0.25 or MobileNetV3-Small (shared ImageNet weights), fine-tunes a new 5-class head
on class-name folders and saves it as .keras; edgemobile converts it to int8 calibrated on those
folders (V1: ``--preprocess mobilenet --plain``; V3: the default techniques, its Keras backbone
rewritten to the int8-friendly graph: no int8 HARD_SWISH, XNNPACK takes every op but the head's
softmax), evaluates it on a held-apart class-name folder against the Keras float model, bundles
it for Android, and MediaPipe's ImageClassifier names the user's classes. The checks both share
are parametrized over the two; V1's Python API and README example and V3's rewrite follow."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

import edgemobile as em
from edgemobile.cli.main import main
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import read_metadata
from edgemobile.networks.rewrite import TOLERANCE
from edgemobile.quantization.integer_check import float_tensor_uses, op_histogram
from edgemobile.runtime.delegation import model_delegation
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.cli_run import run as run_cli
from support.cli_run import run_ok as run
from support.user_models import (LABELS, class_folders, mediapipe_names_right, mobilenet_v1_user_model,
                                 mobilenet_v3_small_user_model)

pytest.importorskip("tensorflow")

# backbone → (the user's model, its name, convert/bundle flags besides --calibration)
USERS = {
    "mobilenet_v1": (mobilenet_v1_user_model, "flowers", ("--preprocess", "mobilenet", "--plain")),
    "mobilenet_v3_small": (mobilenet_v3_small_user_model, "flowers_v3", ()),
}
BUNDLE_FLAGS = {"mobilenet_v1": ("--preprocess", "mobilenet", "--plain"), "mobilenet_v3_small": ("--plain",)}


def _user(shared, tmp_path_factory, backbone: str) -> dict:
    make, name, flags = USERS[backbone]
    root = tmp_path_factory.mktemp(name)
    train, val = class_folders(shared, root)
    model = make(shared, train, root / f"{name}.keras")
    int8 = root / f"{name}_int8.tflite"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["convert", "--model", str(model), "--int8", "--calibration", str(train), *flags,
                     "-o", str(int8), "--quiet"]) == 0
    return {"backbone": backbone, "name": name, "root": root, "train": train, "val": val, "model": model,
            "int8": int8, "convert_stderr": err.getvalue()}


@pytest.fixture(scope="module")
def user_v1(shared, tmp_path_factory):
    return _user(shared, tmp_path_factory, "mobilenet_v1")


@pytest.fixture(scope="module")
def user_v3(shared, tmp_path_factory):
    return _user(shared, tmp_path_factory, "mobilenet_v3_small")


@pytest.fixture(params=list(USERS))
def user(request):
    return request.getfixturevalue({"mobilenet_v1": "user_v1", "mobilenet_v3_small": "user_v3"}[request.param])


# -- both backbones ------------------------------------------------------------------------------
def test_eval_against_keras_float_on_held_apart_class_folders(user, capsys, tmp_path):
    report = tmp_path / "eval.json"
    out = run(capsys, "eval", user["int8"], "--data", user["val"], "--reference", user["model"],
              "--json", report, "--quiet")
    print(out)
    result = json.loads(report.read_text())
    assert result["images"] == 10  # "Oyster catcher", "YURT", "water  tower" matched to the labels
    assert "top-1 agreement" in out
    float_top1, int8_top1 = result["reference"]["top1"], result["model"]["top1"]
    assert float_top1 >= 70  # the fine-tuned head learned the classes (chance: 20)
    assert abs(int8_top1 - float_top1) <= 20 and result["comparison"]["top1_agreement"] >= 80


def test_bundle_gives_mediapipe_the_users_class_names(user, capsys):
    folder = user["root"] / "assets" / user["name"]
    folder.parent.mkdir()
    out = run(capsys, "bundle", user["model"], "--calibration", user["train"], *BUNDLE_FLAGS[user["backbone"]],
              "--out", folder, "--quiet")
    assert (folder / "labels.txt").read_text().splitlines() == LABELS
    model = folder / f"{user['name']}.tflite"
    if user["backbone"] == "mobilenet_v3_small":
        assert "MediaPipe ImageClassifier checks passed" in out
        assert read_metadata(model).extra["provenance"]["rewrite"]["applied"]
        assert "HARD_SWISH" not in op_histogram(TFLiteClassifier(model))
    right, total = mediapipe_names_right(model, user["val"])
    assert right >= 7, f"MediaPipe named {right} of {total} held-apart images right"


# -- MobileNetV1: what the model carries, the Python API, the README -----------------------------
def test_int8_model_carries_users_spec_labels_and_provenance(user_v1):
    from edgemobile.download import file_hash

    user = user_v1
    classifier = TFLiteClassifier(user["int8"])
    assert not float_tensor_uses(classifier)
    info = read_metadata(user["int8"])
    assert info.labels == LABELS  # from the calibration folders, sorted
    assert info.preprocess.mean == (127.5,) * 3 and info.preprocess.std == (127.5,) * 3
    assert info.preprocess.size == 224 and info.preprocess.resize_shorter == 256
    provenance = info.extra["provenance"]
    assert provenance["weights"] == {"file": "flowers.keras", "sha256": file_hash(user["model"])}
    assert provenance["calibration"]["images"] == 15 and info.extra["classes"] == "user"


def test_python_api_gives_the_clis_results(user_v1, capsys, tmp_path):
    user = user_v1
    converted = em.convert(user["model"], "int8", calibration=user["train"], preprocess="mobilenet",
                           techniques="plain", progress=False)
    assert "int8" in repr(converted) and "15 images" in repr(converted)
    images = sorted(user["val"].glob("*/*.JPEG"))
    report = tmp_path / "predict.json"
    run(capsys, "predict", user["int8"], *images, "--top-k", "5", "--json", report)
    cli = json.loads(report.read_text())["predictions"]
    api = em.predict(converted, images, top_k=5)
    assert [[(e["name"], e["probability"]) for e in p["top"]] for p in api] == \
        [[(e["name"], e["probability"]) for e in p["top"]] for p in cli]
    assert str(images[0]) in str(api)

    ours = em.evaluate(converted, user["val"], reference=user["model"], progress=False)
    out = run(capsys, "eval", user["int8"], "--data", user["val"], "--reference", user["model"],
              "--json", tmp_path / "eval.json", "--quiet")
    theirs = json.loads((tmp_path / "eval.json").read_text())
    assert ours.top1 == theirs["model"]["top1"] and ours.reference_top1 == theirs["reference"]["top1"]
    assert ours.as_dict()["comparison"] == theirs["comparison"]
    assert "top-1 agreement" in str(ours) and "top-1 agreement" in out

    saved = converted.save(tmp_path / "api.tflite")
    with pytest.raises(EdgeMobileError, match="already exists"):
        converted.save(saved)


def test_readme_python_example_runs_as_written(user_v1, tmp_path, monkeypatch, capsys):
    import re
    import shutil

    from support.paths import ROOT

    user = user_v1
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "flowers").mkdir()
    shutil.copy(user["model"], tmp_path / "flowers.keras")
    shutil.copytree(user["train"], tmp_path / "flowers" / "train")
    shutil.copytree(user["val"], tmp_path / "flowers" / "val")
    shutil.copy(sorted(user["val"].glob("YURT/*"))[0], tmp_path / "photo.jpg")
    (tmp_path / "android_assets").mkdir()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "top-1 agreement" in out and "yurt" in out
    assert (tmp_path / "flowers_int8.tflite").is_file()
    assert (tmp_path / "android_assets" / "flowers" / "labels.txt").read_text().splitlines() == LABELS


# -- MobileNetV3-Small: the backbone rewrite -----------------------------------------------------
def test_backbone_is_rewritten_and_runs_on_xnnpack_whole(user_v3):
    user, converted = user_v3, user_v3["convert_stderr"]
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


def test_inspect_measures_the_rewritten_model(user_v3, capsys, tmp_path):
    """inspect converts your MobileNetV3 as convert does (backbone rewritten) and compares it
    with the rewritten float model."""
    user = user_v3
    code, _, err = run_cli(capsys, "inspect", user["model"], "--calibration", user["train"], "--plain", "--images", 2,
                           "--json", tmp_path / "d.json", "--quiet")
    assert code == 0, err
    assert "rewrote the MobileNetV3-Small alpha 1 224x224 backbone" in err, err
    diagnosis = json.loads((tmp_path / "d.json").read_text())
    assert diagnosis["reference"] == "float model after the MobileNetV3 rewrite", diagnosis["reference"]
    assert "HARD_SWISH" not in {t["op"] for t in diagnosis["tensors"]}
