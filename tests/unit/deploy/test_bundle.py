"""Android bundles: folder layout, metadata, MediaPipe compatibility checks, refusals, atomic
writes, and the per-channel normalization folding. Random weights at 128 px and a handful of
synthetic calibration images keep it fast; real-data agreement with MediaPipe lives in
test_mediapipe_agreement.py."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from edgemobile.cli.main import main
from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.deploy.bundle import bundle_from_tflite, bundle_from_variant
from edgemobile.deploy.mediapipe_compat import mediapipe_issues
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import (
    ModelInfo,
    embed_metadata,
    read_associated_files,
    read_metadata,
)
from edgemobile.networks.zoo import resolve, with_raw_pixel_input
from edgemobile.quantization.convert import CalibrationSet
from edgemobile.quantization.integer_check import float_tensor_uses, op_histogram
from edgemobile.runtime.delegation import fallback_warning, model_delegation
from edgemobile.runtime.interpreter import TFLiteClassifier
from support.cli_run import run

pytest.importorskip("tensorflow")

SMALL = ["--model", "mobilenet", "--alpha", "0.25", "--resolution", "128", "--weights", "none"]
PER_CHANNEL = PreprocessSpec.center_crop(128, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


def synthetic_images(folder, count=6, size=160, low=0, high=255):
    """Colour gradients between ``low`` and ``high`` with a block of each in the middle
    (kept by the center crop), in two class folders: a raw-pixel uint8 input must be
    calibrated on black and white pixels."""
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"n0000000{i % 2}"
        sub.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0.0, 1.0, size)
        channels = [np.add.outer(ramp * rng.uniform(0.2, 1), ramp * rng.uniform(0.2, 1)) for _ in range(3)]
        pixels = np.stack([low + (high - low) * c / c.max() for c in channels], -1)
        middle = size // 2
        pixels[middle - 12:middle, middle - 12:middle] = low
        pixels[middle:middle + 12, middle:middle + 12] = high
        Image.fromarray(np.round(pixels).astype(np.uint8)).save(sub / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return synthetic_images(tmp_path_factory.mktemp("calib"))


@pytest.fixture(scope="module")
def uint8_bundle_run(shared, tmp_path_factory):
    """``convert --android``: convert + bundle in one step (uint8 by default), the default zoo
    bundle with its real weights; (folder, stderr)."""
    folder = tmp_path_factory.mktemp("assets") / "mobilenet_small"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["convert", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "128", "--weights",
                     str(shared / "weights/mobilenet_v1/mobilenet_2_5_128_tf.h5"), "--android", "--calibration",
                     str(shared / "imagenet/calib"), "--num-calibration", "8", "-o", str(folder), "--quiet"]) == 0
    return folder, err.getvalue()


@pytest.fixture(scope="module")
def uint8_bundle(uint8_bundle_run):
    return uint8_bundle_run[0]


def test_default_bundle_has_no_xnnpack_warning(uint8_bundle_run):
    """Its one op XNNPACK leaves out that is not the classifier head is the QUANTIZE of the
    uint8 pixels to the int8 inside: the I/O type asked for, not a cause to warn about."""
    folder, err = uint8_bundle_run
    assert "warning" not in err and "XNNPACK" not in err, err
    delegation = model_delegation((folder / "mobilenet_small.tflite").read_bytes())
    assert [(op.name, op.dtype, op.io) for op in delegation.fallback if op.size > delegation.head_size] == [
        ("QUANTIZE", "int8", True)]
    assert delegation.slow_fallback == () and fallback_warning(delegation, "m") is None


def test_bundle_folder_has_model_with_android_metadata_and_labels(uint8_bundle):
    assert sorted(p.name for p in uint8_bundle.iterdir()) == ["labels.txt", "mobilenet_small.tflite"]
    model_path = uint8_bundle / "mobilenet_small.tflite"
    model = TFLiteClassifier(model_path)
    assert model.input.dtype == np.uint8 and model.output.dtype == np.uint8  # Android default
    info = read_metadata(model_path)
    assert info.name and info.description and info.version and info.author and info.license
    assert info.color_space == "RGB" and info.labels_file == "labels.txt"
    assert len(info.labels) == model.num_outputs == 1000
    labels = (uint8_bundle / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == info.labels and read_associated_files(model_path)["labels.txt"].decode().splitlines() == labels
    assert mediapipe_issues(model_path) == []
    # uint8 input: raw pixels go in, so the metadata's normalization is the input quantization
    # itself (zero point 127 for MobileNet's 127.5 — the nearest integer), scale 1/127.5.
    assert model.input.scale == pytest.approx(1 / 127.5, rel=1e-3)
    assert abs(model.input.zero_point - 127.5) <= 1.0
    mean, std = info.normalization
    assert set(mean) == {float(model.input.zero_point)} and std == pytest.approx((1 / model.input.scale,) * 3)
    assert info.preprocess.mean == mean and info.preprocess.std == std
    assert info.extra["android"]["preprocess_trained"]["mean"] == [127.5] * 3
    assert info.extra["provenance"]["precision"] == "uint8"
    # Host-side encoding of the bundle's spec is exactly "raw pixels in".
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    assert np.array_equal(model.encode(info.preprocess.normalize(pixels)), pixels)


def test_existing_folder_needs_force_and_is_replaced_atomically(uint8_bundle, capsys):
    model = uint8_bundle / "mobilenet_small.tflite"
    target = uint8_bundle.parent / "again"
    assert run(capsys, "bundle", model, "--out", target)[0] == 0
    code, _, err = run(capsys, "bundle", model, "--out", target)
    assert code == 2 and err.count("\n") == 1 and "--force" in err and str(target) in err
    (target / "stale.txt").write_text("from the old bundle")
    code, out, _ = run(capsys, "bundle", model, "--out", target, "--force")
    assert code == 0 and "MediaPipe" in out
    assert sorted(p.name for p in target.iterdir()) == ["again.tflite", "labels.txt"]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    # Re-bundling keeps the metadata (the spec was already the raw-pixel one).
    assert read_metadata(target / "again.tflite").preprocess == read_metadata(model).preprocess
    # Missing parent folders are made, as keras.Model.save does (was: "folder … does not exist").
    deep = uint8_bundle.parent / "android_assets" / "flowers"
    assert run(capsys, "bundle", model, "--out", deep)[0] == 0
    assert sorted(p.name for p in deep.iterdir()) == ["flowers.tflite", "labels.txt"]


def test_refusals_are_one_line(uint8_bundle, calib, tmp_path, capsys):
    model = uint8_bundle / "mobilenet_small.tflite"
    cases = [
        (["bundle", model, "--out", tmp_path / "x", "--alpha", "0.5"], "only for zoo models"),
        (["bundle", model, "--out", model / "x"], "is a file, not a folder"),
        (["convert", *SMALL, "--android", "-o", tmp_path / "x.tflite"], "a bundle is a folder"),
        (["convert", *SMALL, "--android", "--float16", "-o", tmp_path / "x"], "--float32"),
        (["bundle", tmp_path / "nope.tflite", "--out", tmp_path / "x"], "no such model file"),
        (["convert", *SMALL, "--android", "--int8", "--calibration", calib, "-o", tmp_path / "x"], "--uint8"),
        (["bundle", "mobilenet", "--float32", "--calibration", calib, "--out", tmp_path / "x"],
         "only apply to --int8 or --uint8"),
    ]
    for argv, expected in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.startswith("edgemobile: error: ") and err.count("\n") == 1, (argv, err)
        assert expected in err, (argv, err)
    assert not (tmp_path / "x").exists()


def _tiny_tflite(precision: str = "float32", low: int = 0, high: int = 255, metadata: bool = False) -> bytes:
    """A 32x32 three-class classifier (full-integer ones calibrated on pixels in low..high),
    with edgemobile metadata (spec mean = std = 127.5) when asked."""
    import keras
    import tensorflow as tf

    from edgemobile.quantization.tflite_converter import convert_keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    spec = PreprocessSpec.center_crop(32, mean=127.5, std=127.5)

    def representative():
        rng = np.random.default_rng(0)
        for _ in range(4):
            yield [spec.normalize(rng.integers(low, high + 1, (1, 32, 32, 3)).astype(np.uint8))]

    data = convert_keras(model, precision, representative) if precision != "float32" else \
        tf.lite.TFLiteConverter.from_keras_model(model).convert()
    if metadata:
        info = ModelInfo(name="tiny", labels=["a", "b", "c"], preprocess=spec, extra={"classes": "abc"})
        data = embed_metadata(data, info)
    return data


def test_int8_model_is_refused_with_a_hint(tmp_path, capsys):
    int8 = tmp_path / "int8.tflite"
    int8.write_bytes(_tiny_tflite("int8", metadata=True))
    capsys.readouterr()  # the converter's own chatter
    code, _, err = run(capsys, "bundle", int8, "--out", tmp_path / "android")
    assert code == 2 and err.count("\n") == 1
    assert str(int8) in err and "int8 input" in err and "--uint8" in err
    assert not (tmp_path / "android").exists()
    uint8 = _tiny_tflite("uint8", metadata=True)  # the same model as uint8 is fine
    assert mediapipe_issues(bundle_from_tflite(uint8, "tiny").tflite) == []


def test_calibration_without_black_and_white_is_refused():
    """A uint8 input calibrated on a narrow pixel range cannot take raw pixels: refused."""
    narrow = _tiny_tflite("uint8", low=60, high=190, metadata=True)
    with pytest.raises(EdgeMobileError, match="MediaPipe would reject.*black and white pixels"):
        bundle_from_tflite(narrow, "tiny")


def test_foreign_and_per_channel_float_models_are_refused():
    tiny = _tiny_tflite()
    with pytest.raises(EdgeMobileError, match="no edgemobile metadata"):
        bundle_from_tflite(tiny, "tiny")
    spec = dataclasses.replace(PER_CHANNEL, size=32, resize_shorter=37)
    info = ModelInfo(name="tiny", labels=["a", "b", "c"], preprocess=spec, extra={"classes": "abc"})
    with pytest.raises(EdgeMobileError, match="per-channel normalization.*zoo model by name"):
        bundle_from_tflite(embed_metadata(tiny, info), "tiny")


def test_raw_pixel_variant_folds_per_channel_normalization():
    base = resolve("mobilenet", 0.25, 128)
    assert with_raw_pixel_input(dataclasses.replace(base, preprocess=dataclasses.replace(
        base.preprocess, mean=(0.0,) * 3, std=(1.0,) * 3))).preprocess.std == (1.0,) * 3
    variant = dataclasses.replace(base, preprocess=PER_CHANNEL)
    raw = with_raw_pixel_input(variant)
    assert raw.preprocess.mean == (0.0,) * 3 and raw.preprocess.std == (1.0,) * 3
    assert (raw.preprocess.size, raw.preprocess.resize_shorter) == (128, variant.preprocess.resize_shorter)
    assert dict(raw.options)["raw_pixel_input"] and "folded" in raw.description
    import keras

    keras.utils.set_random_seed(0)
    original = variant.build("none")
    folded = raw.builder(raw, None)
    folded.get_layer(original.name).set_weights(original.get_weights())
    pixels = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3)).astype(np.float32)
    expected = original(variant.preprocess.normalize(pixels)).numpy()
    assert np.allclose(folded(pixels).numpy(), expected, atol=1e-5)


def test_per_channel_zoo_model_bundles_as_raw_pixel_uint8(calib):
    variant = dataclasses.replace(resolve("mobilenet", 0.25, 128), preprocess=PER_CHANNEL)
    calibration = CalibrationSet.from_folder(calib, 6)
    bundle = bundle_from_variant(variant, "uint8", "none", calibration, "folded", progress=False)
    model = TFLiteClassifier(bundle.tflite)
    assert model.input.dtype == np.uint8 and model.input.scale == pytest.approx(1.0, rel=1e-3)
    assert model.input.zero_point == 0
    ops = op_histogram(model)
    assert ops.get("MUL", 0) >= 1 and ops.get("ADD", 0) >= 1  # the folded (p - mean) / std
    assert float_tensor_uses(model) == []
    assert mediapipe_issues(bundle.tflite) == []
    info = read_metadata(bundle.tflite)
    assert info.normalization == ((0.0,) * 3, (1.0,) * 3) and "folded" in info.description
