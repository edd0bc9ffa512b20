"""Issue 13's acceptance path on real data: a user fine-tunes MobileNetV1 α0.25 (shared
ImageNet weights) with a new 5-class head on class-name folders, saves it as .keras, and
edgemobile converts it to int8 calibrated on those folders, evaluates it on a held-apart
class-name folder against the Keras float model, bundles it for Android, and MediaPipe's
ImageClassifier names the user's classes. The Python API gives the CLI's results."""

from __future__ import annotations

import json

import pytest

import edgemobile as em
from edgemobile.cli.main import main
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import read_metadata
from edgemobile.quantization.integer_check import float_tensor_uses
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.user_models import LABELS, class_folders, mediapipe_names_right, mobilenet_v1_user_model
from support.cli_run import run_ok as run

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def user(shared, tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers")
    train, val = class_folders(shared, root)
    model = mobilenet_v1_user_model(shared, train, root / "flowers.keras")
    int8 = root / "flowers_int8.tflite"
    assert main(["convert", "--model", str(model), "--int8", "--calibration", str(train), "--preprocess", "mobilenet",
                 "--plain", "-o", str(int8), "--quiet"]) == 0
    return {"root": root, "train": train, "val": val, "model": model, "int8": int8}


def test_int8_model_carries_users_spec_labels_and_provenance(user):
    from edgemobile.download import file_hash

    classifier = TFLiteClassifier(user["int8"])
    assert not float_tensor_uses(classifier)
    info = read_metadata(user["int8"])
    assert info.labels == LABELS  # from the calibration folders, sorted
    assert info.preprocess.mean == (127.5,) * 3 and info.preprocess.std == (127.5,) * 3
    assert info.preprocess.size == 224 and info.preprocess.resize_shorter == 256
    provenance = info.extra["provenance"]
    assert provenance["weights"] == {"file": "flowers.keras", "sha256": file_hash(user["model"])}
    assert provenance["calibration"]["images"] == 15 and info.extra["classes"] == "user"


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
    folder = user["root"] / "assets" / "flowers"
    folder.parent.mkdir()
    run(capsys, "bundle", user["model"], "--calibration", user["train"], "--preprocess", "mobilenet", "--plain",
        "--out", folder, "--quiet")
    assert (folder / "labels.txt").read_text().splitlines() == LABELS
    model = folder / "flowers.tflite"
    right, total = mediapipe_names_right(model, user["val"])
    assert right >= 7, f"MediaPipe named {right} of {total} held-apart images right"


def test_python_api_gives_the_clis_results(user, capsys, tmp_path):
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


def test_readme_python_example_runs_as_written(user, tmp_path, monkeypatch, capsys):
    import re
    import shutil

    from support.paths import ROOT

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
