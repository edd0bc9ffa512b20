"""Every class of bad input gets one clear line naming the file, exit status 2, no traceback,
and nothing half-written. Runs anywhere: models are tiny and made here, no shared data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgemobile.cli.main import main

from support.paths import ROOT


def fails(capsys, *argv, words: str, names: Path | str | None = None) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgemobile: error: "), err
    assert "Traceback" not in err and words in lines[0], lines[0]
    if names is not None:
        assert str(names) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """A tiny float classifier with 10 outputs (no metadata), like a third-party model."""
    tf = pytest.importorskip("tensorflow")
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "rgb.jpg")
    return folder


def test_unknown_model_name(capsys, tmp_path):
    line = fails(capsys, "convert", "--model", "mobilenet_v9", "-o", tmp_path / "x.tflite",
                 words="unknown model 'mobilenet_v9'; did you mean mobilenet_v1")
    assert not (tmp_path / "x.tflite").exists()
    # a did-you-mean and what the argument takes, not a list of every alias (issue 27)
    line = fails(capsys, "convert", "--model", "mobilenett", words="unknown model 'mobilenett'; did you mean mobilenet")
    assert "zoo model name (see 'edgemobile models') or a saved Keras model file" in line
    assert "mobilenetv3_large_minimalistic" not in line


def test_model_argument_that_is_a_path(capsys, tmp_path):
    """A path-like --model says what is wrong with the file, not "unknown model"."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    fails(capsys, "convert", "--model", notes, words=f"{notes}: not a Keras model file (.keras or full-model .h5); "
          "a model is a zoo model name (see 'edgemobile models') or a saved Keras model file")
    fails(capsys, "convert", "--model", tmp_path / "flowers.keras", words="no such Keras model file",
          names=tmp_path / "flowers.keras")
    fails(capsys, "convert", "--model", tmp_path, words=f"{tmp_path}: is a folder, not a model")


def test_unavailable_alpha_and_resolution(capsys):
    fails(capsys, "convert", "--model", "mobilenet", "--alpha", "0.3", words="alpha 0.3 is not available")
    fails(capsys, "convert", "--model", "mobilenet", "--resolution", "100", words="resolution 100 is not available")


def test_offline_download_names_the_file_and_where_to_put_it(capsys, tmp_path):
    line = fails(capsys, "convert", "--model", "mobilenet", "--alpha", "0.25", "-o", tmp_path / "m.tflite",
                 words="cannot download", names="mobilenet_2_5_224_tf.h5")
    assert os.environ["KERAS_HOME"] in line and "--weights FILE" in line
    assert list(tmp_path.iterdir()) == []


def test_hand_placed_weights_that_are_not_the_published_file(capsys, tmp_path):
    """Issue 27: MobileNetV3 weights put where the offline error said, but re-serialized (not
    byte-identical): one line that says so and how to load the file by path — no download loop."""
    from edgemobile.download import cache_dir
    from edgemobile.networks.zoo import resolve

    weights = resolve("mobilenet_v3_small").weights
    placed = cache_dir(weights.cache_subdir) / weights.filename
    placed.parent.mkdir(parents=True, exist_ok=True)
    placed.write_bytes(b"re-serialized weights")
    try:
        line = fails(capsys, "convert", "--model", "mobilenet_v3_small", "-o", tmp_path / "m.tflite",
                     words="not the published mobilenet_v3_small_1.0_224 weights", names=placed)
        assert "load your own file by path (--weights FILE)" in line
    finally:
        placed.unlink()


def test_reference_weights_errors_name_evals_flag(capsys, tmp_path, images, tiny_tflite):
    """Issue 27: eval's zoo --reference offline said "or pass --weights FILE", which eval rejects."""
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    (images / "class3").mkdir()
    (images / "rgb.jpg").rename(images / "class3" / "rgb.jpg")
    line = fails(capsys, "eval", tiny_tflite, "--data", images, "--mean", "0", "--std", "1", "--labels", labels,
                 "--reference", "mobilenet", "--alpha", "0.25", words="or pass --reference-weights FILE")
    assert "cannot download" in line and "--weights FILE" not in line.replace("--reference-weights FILE", "")


def test_outputs_in_missing_folders_are_made(capsys, tmp_path, images, tiny_tflite):
    """--json (as -o, --out, --outputs: one writer) creates missing parent folders, as
    keras.Model.save does; a file in the way is named."""
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    report = tmp_path / "results" / "today" / "predictions.json"
    assert main(["predict", str(tiny_tflite), str(images / "rgb.jpg"), "--mean", "0", "--std", "1",
                 "--labels", str(labels), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["predictions"][0]["image"] == str(images / "rgb.jpg")
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", "--mean", "0", "--std", "1", "--labels", labels,
          "--json", labels / "p.json", words=f"{labels} is a file, not a folder", names=labels / "p.json")


def test_existing_output_needs_force(capsys, tmp_path):
    out = tmp_path / "exists.tflite"
    out.write_bytes(b"keep me")
    fails(capsys, "convert", "--model", "mobilenet", "-o", out, words="already exists; pass --force", names=out)
    assert out.read_bytes() == b"keep me"


def test_wrong_weights_file(capsys, tmp_path):
    pytest.importorskip("tensorflow")
    bad = tmp_path / "weights.h5"
    bad.write_bytes(b"not hdf5 at all")
    fails(capsys, "convert", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "128", "--weights", bad,
          "-o", tmp_path / "m.tflite", words="not mobilenet_v1_0.25_128 weights", names=bad)
    fails(capsys, "convert", "--model", "mobilenet", "--weights", tmp_path / "missing.h5",
          "-o", tmp_path / "m.tflite", words="weights file not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.h5"]


@pytest.mark.parametrize("content,words", [
    (b"", "not a TFLite model"),
    (b"\x00" * 64, "not a TFLite model"),
    (b"GIF89a" + b"\x00" * 100, "not a TFLite model"),
])
def test_non_tflite_files(capsys, tmp_path, images, content, words):
    model = tmp_path / "model.tflite"
    model.write_bytes(content)
    fails(capsys, "predict", model, images / "rgb.jpg", words=words, names=model)
    fails(capsys, "eval", model, "--data", images, words=words, names=model)


def test_truncated_tflite(capsys, tmp_path, images, tiny_tflite):
    model = tmp_path / "truncated.tflite"
    model.write_bytes(tiny_tflite.read_bytes()[: len(tiny_tflite.read_bytes()) // 2])
    fails(capsys, "predict", model, images / "rgb.jpg", words="not a valid TFLite model", names=model)


def test_missing_model_and_folder_as_model(capsys, tmp_path, images):
    fails(capsys, "predict", tmp_path / "nope.tflite", images / "rgb.jpg", words="no such model file")
    fails(capsys, "predict", tmp_path, images / "rgb.jpg", words="is a folder")


def test_bad_images_are_named(capsys, tmp_path, tiny_tflite):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    fails(capsys, "predict", tiny_tflite, corrupt, "--mean", "127.5", "--std", "127.5", "--labels", labels,
          words="corrupt or truncated image", names=corrupt)


def test_odd_but_valid_images_work(capsys, tmp_path, tiny_tflite):
    """Greyscale, CMYK and PNG-with-alpha images are converted, not rejected."""
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    grey, cmyk, alpha = tmp_path / "grey.jpg", tmp_path / "cmyk.jpg", tmp_path / "alpha.png"
    Image.new("L", (40, 40), 90).save(grey)
    Image.new("CMYK", (40, 40), (10, 200, 30, 0)).save(cmyk)
    Image.new("RGBA", (40, 40), (0, 0, 255, 100)).save(alpha)
    assert main(["predict", str(tiny_tflite), str(grey), str(cmyk), str(alpha), "--mean", "127.5", "--std", "127.5",
                 "--labels", str(labels), "--top-k", "2"]) == 0
    assert capsys.readouterr().out.count("class") == 6


def test_wrong_label_files(capsys, tmp_path, images, tiny_tflite):
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", "--mean", "0", "--std", "1", "--labels", short,
          words="has 2 labels but the model has 10 outputs", names=short)
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", "--mean", "0", "--std", "1",
          words="10 outputs and no labels")
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", "--mean", "0", "--std", "1", "--labels",
          tmp_path / "none.txt", words="label file not found")


def test_float_model_without_metadata_needs_normalization(capsys, images, tiny_tflite):
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", words="--mean/--std", names=tiny_tflite)


def test_empty_and_unlabeled_data_folders(capsys, tmp_path, tiny_tflite):
    empty = tmp_path / "empty"
    empty.mkdir()
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    fails(capsys, "eval", tiny_tflite, "--data", empty, "--mean", "0", "--std", "1", "--labels", labels,
          words="no images found", names=empty)
    fails(capsys, "eval", tiny_tflite, "--data", tmp_path / "missing", "--mean", "0", "--std", "1",
          "--labels", labels, words="no such folder")
    fails(capsys, "convert", "--model", "mobilenet", "--int8", "--weights", "none", "--calibration", empty,
          "-o", tmp_path / "x.tflite", words="no images found", names=empty)
    assert not (tmp_path / "x.tflite").exists()


def test_json_output_is_not_overwritten_and_not_half_written(capsys, tmp_path, images, tiny_tflite):
    report = tmp_path / "report.json"
    report.write_text("old")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", "--mean", "0", "--std", "1", "--labels", labels,
          "--json", report, words="already exists", names=report)
    assert report.read_text() == "old"
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"junk")
    fresh = tmp_path / "fresh.json"
    fails(capsys, "predict", tiny_tflite, images / "rgb.jpg", corrupt, "--mean", "0", "--std", "1",
          "--labels", labels, "--json", fresh, words="not an image file Pillow can decode", names=corrupt)
    assert not fresh.exists() and not list(tmp_path.glob(".fresh.json*"))


def test_python_dash_m_entry_point_prints_one_line(tmp_path):
    """The real process: no traceback on stderr, exit status 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "edgemobile", "predict", str(tmp_path / "x.tflite"), "y.jpg"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"edgemobile: error: {tmp_path / 'x.tflite'}: no such model file"]
    help_text = subprocess.run([sys.executable, "-m", "edgemobile", "--help"], capture_output=True, text=True,
                               env=env, timeout=120).stdout
    for command in ("convert", "eval", "predict"):
        assert command in help_text
