"""Users' own Keras models and class-name folders, on tiny real models (no ../shared):
what the saved model does not say (preprocessing, labels) is made explicit or refused in
one clear line."""

from __future__ import annotations

import json
import warnings

import pytest
from PIL import Image

import edgemobile as em
from edgemobile.cli.main import main
from edgemobile.data.datasets import calibration_warning, folder_classes, labeled_images
from edgemobile.data.labels import ClassList
from edgemobile.errors import EdgeMobileError, EdgeMobileWarning
from edgemobile.metadata import read_metadata
from support.images import write_images


def fails(capsys, *argv, words):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgemobile: error: "), err
    assert words in lines[0], lines[0]
    return lines[0]


# -- class-name folders (no TensorFlow) ------------------------------------------------------
def test_class_folders_are_labels_matched_loosely(tmp_path):
    train = write_images(tmp_path / "train", ["Big Cat", "dog", "Sea Anemone"])
    val = write_images(tmp_path / "val", ["big  cat", "DOG", "sea anemone"])
    classes = folder_classes(train)
    assert classes.names == ("Big Cat", "Sea Anemone", "dog")  # sorted like image_dataset_from_directory
    pairs = labeled_images(val, classes)
    assert sorted({(p.parent.name, i) for p, i in pairs}) == [("DOG", 2), ("big  cat", 0), ("sea anemone", 1)]
    assert calibration_warning(val, [p for p, _ in pairs], classes) is None


def test_unknown_class_folders_are_named(tmp_path):
    val = write_images(tmp_path / "val", ["dog", "wolf", "fox"], per_class=1)
    classes = ClassList.from_names(["cat", "dog"])
    with pytest.raises(EdgeMobileError, match="2 image folder.*fox, wolf; the model's classes are cat, dog"):
        labeled_images(val, classes)
    # calibration takes them (images of other classes calibrate ranges too), with one warning line
    warning = calibration_warning(val, sorted(val.glob("*/*.png")), classes)
    assert warning.startswith("calibration: 2 of the 3 images in ") and "(fox, wolf)" in warning


def test_clashing_and_non_class_layouts(tmp_path):
    clash = write_images(tmp_path / "b", ["Dog", "d og"], per_class=1)
    with pytest.raises(EdgeMobileError, match="differ only in case or spacing"):
        folder_classes(clash)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    assert folder_classes(flat) is None


# -- tiny Keras models ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def tiny_model(keras, classes=3, rescaling=True, size=32):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescaling")(inputs) if rescaling else inputs
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="tiny")


def test_in_model_rescaling_is_detected_and_never_applied_twice(keras, tmp_path, capsys):
    from edgemobile.networks.user import input_normalization, user_variant

    path = tmp_path / "tiny.keras"
    tiny_model(keras).save(path)
    assert [n.split(" ")[1] for n in input_normalization(keras.saving.load_model(path))] == ["(Rescaling)"]
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\n")
    variant = user_variant(path, labels=labels).variant
    assert variant.preprocess.mean == (0.0,) * 3 and variant.preprocess.std == (1.0,) * 3
    assert variant.labels == ("cat", "dog", "fox") and variant.resolution == 32
    fails(capsys, "convert", "--model", path, "--labels", labels, "--preprocess", "mobilenet",
          "-o", tmp_path / "x.tflite", words="normalizes its input itself (rescaling (Rescaling)), so "
          "--preprocess mobilenet would normalize twice")
    fails(capsys, "convert", "--model", path, "--labels", labels, "--mean", "127.5", "--std", "127.5",
          "-o", tmp_path / "x.tflite", words="would normalize twice")
    assert not (tmp_path / "x.tflite").exists()


def test_preprocessing_and_labels_must_be_given(keras, tmp_path, capsys):
    path = tmp_path / "plain.keras"
    tiny_model(keras, rescaling=False).save(path)
    out = tmp_path / "x.tflite"
    fails(capsys, "convert", "--model", path, "-o", out, words="say how its inputs are normalized: --preprocess")
    fails(capsys, "convert", "--model", path, "--preprocess", "mobilenet", "-o", out,
          words="3 outputs and no labels; pass --labels FILE")
    labels = tmp_path / "two.txt"
    labels.write_text("cat\ndog\n")
    fails(capsys, "convert", "--model", path, "--preprocess", "mobilenet", "--labels", labels, "-o", out,
          words="has 2 labels but the model has 3 outputs")
    fails(capsys, "convert", "--model", path, "--preprocess", "mobilenet_v3", "--labels", labels, "-o", out,
          words="feeds raw 0..255 pixels, but the model has no Rescaling")
    fails(capsys, "convert", "--model", path, "--preprocess", "mobilenet", "--resolution", "64", "-o", out,
          words="--resolution 64: ")
    four = write_images(tmp_path / "four", ["a", "b", "c", "d"], per_class=1)
    fails(capsys, "convert", "--model", path, "--preprocess", "mobilenet", "--int8", "--calibration", four,
          "-o", out, words="has 4 class folders (a, b, c, d) but")
    assert not out.exists()


def test_calibration_on_images_of_other_classes_warns_and_converts(keras, tmp_path, capsys):
    """Issue 27: a user model with --labels, calibrated on ImageNet images named by synset
    (n01440764_tench.png), was refused ("do not name a class of the model"); calibration
    needs no labels, so it converts and says so in one warning line."""
    path = tmp_path / "plain.keras"
    tiny_model(keras, rescaling=False).save(path)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\n")
    imagenet = tmp_path / "imagenet"
    for synset in ("n01440764_tench", "n01443537_goldfish"):
        write_images(imagenet, [synset], per_class=1)
        (imagenet / synset / "photo0.png").rename(imagenet / f"{synset}.png")
        (imagenet / synset).rmdir()
    message = (f"calibration: 2 of the 2 images in {imagenet} name no class of the model (ImageNet synsets); "
               "they calibrate ranges too, but images of your classes calibrate better")
    out = tmp_path / "deep" / "er" / "plain_int8.tflite"  # missing parent folders are made
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["convert", "--model", str(path), "--preprocess", "mobilenet", "--labels", str(labels), "--int8",
                     "--plain", "--calibration", str(imagenet), "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [line for line in captured.err.splitlines() if "calibration:" in line] == [f"edgemobile: warning: {message}"]
    assert not [w for w in caught if issubclass(w.category, EdgeMobileWarning)]  # the CLI prints it once, itself
    assert read_metadata(out).labels == ["cat", "dog", "fox"]
    # The API: in .warnings, and shown as a Python warning (notebooks)
    with pytest.warns(EdgeMobileWarning, match="calibration: 2 of the 2 images") as shown:
        converted = em.convert(path, "int8", calibration=imagenet, labels=labels, preprocess="mobilenet",
                               techniques="plain", progress=False)
    assert converted.warnings[0] == message and str(shown[0].message) == message


def test_h5_files(keras, tmp_path, capsys):
    model = tiny_model(keras, rescaling=False)
    weights_only = tmp_path / "weights.weights.h5"
    model.save_weights(weights_only)
    renamed = tmp_path / "weights_only.h5"
    weights_only.rename(renamed)
    fails(capsys, "convert", "--model", renamed, "--preprocess", "mobilenet", "-o", tmp_path / "x.tflite",
          words="not a loadable Keras model (a weights-only .h5")
    full = tmp_path / "full.h5"
    model.save(full)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\n")
    out = tmp_path / "full.tflite"
    assert main(["convert", "--model", str(full), "--preprocess", "mobilenet", "--labels", str(labels),
                 "-o", str(out), "--quiet"]) == 0
    info = read_metadata(out)
    assert info.labels == ["cat", "dog", "fox"] and info.preprocess.mean == (127.5,) * 3


def test_api_takes_a_keras_model_object(keras, tmp_path):
    train = write_images(tmp_path / "train", ["cat", "dog", "fox"], per_class=3)
    model = tiny_model(keras)
    converted = em.convert(model, "uint8", calibration=train, techniques="plain", progress=False)
    assert repr(converted).startswith("<Converted tiny_32 (") and "uint8" in repr(converted)
    info = read_metadata(converted.tflite)
    assert info.labels == ["cat", "dog", "fox"] and len(info.extra["provenance"]["weights"]["sha256"]) == 64
    image = sorted(train.glob("dog/*.png"))[0]
    predictions = em.predict(converted, image, top_k=3)
    assert {e["name"] for e in predictions[0]["top"]} == {"cat", "dog", "fox"}
    result = em.evaluate(converted, train, reference=model, progress=False)
    assert result.images == 9 and result.agreement is not None and "agreement" in repr(result)
    assert result.result.accuracies[0].name == "tiny_32_uint8.tflite (in memory)"  # was "<in-memory model>"
    assert json.dumps(result.as_dict())
    bundle = em.bundle(converted, tmp_path / "assets_tiny")
    assert (tmp_path / "assets_tiny" / "labels.txt").read_text().split() == ["cat", "dog", "fox"]
    assert "3 labels" in repr(bundle)
