"""edgemobile.metadata: TFLite Model Metadata written by hand, read back by us, by the
interpreter, by an independent schema reader and by MediaPipe Tasks' ImageClassifier."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.deploy.mediapipe_compat import mediapipe_issues
from edgemobile.errors import EdgeMobileError
from edgemobile.metadata import (
    INFO_FILE,
    LABELS_FILE,
    ModelInfo,
    embed_metadata,
    read_associated_files,
    read_metadata,
    read_model_metadata,
)
from edgemobile.tflite.model import parse_model

from support.paths import ROOT
SIZE = 32
NUM_CLASSES = 10
LABELS = [f"class {i} ü" for i in range(NUM_CLASSES)]  # non-ASCII on purpose
SPEC = PreprocessSpec.center_crop(SIZE, 127.5, 127.5)


# -- tiny models ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    """A 2-layer conv classifier (10 classes, 32x32 RGB) as float, full-integer with uint8
    I/O and full-integer with int8 I/O TFLite models."""
    tf = pytest.importorskip("tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(
        8,
        3,
        strides=2,
        activation="relu",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
    )(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        NUM_CLASSES,
        activation="softmax",
        kernel_initializer=keras.initializers.RandomNormal(stddev=2.0),
    )(x)
    model = keras.Model(inputs, outputs)
    built = {"float": tf.lite.TFLiteConverter.from_keras_model(model).convert()}

    def representative():
        rng = np.random.default_rng(0)
        for _ in range(8):
            batch = rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
            batch[0, 0, 0], batch[0, 0, 1] = -1.0, 1.0  # calibrate the full [-1, 1] range
            yield [batch]

    for io_type in ("uint8", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = getattr(tf, io_type)
        conv.inference_output_type = getattr(tf, io_type)
        with warnings.catch_warnings():  # "Statistics for quantized inputs were expected"
            warnings.simplefilter("ignore", UserWarning)
            built[io_type] = conv.convert()
    return built


def _info(**overrides) -> ModelInfo:
    fields = dict(
        name="tiny classifier",
        description="A 2-layer test classifier.",
        version="v1",
        author="edgemobile tests",
        license="Apache-2.0",
        labels=list(LABELS),
        preprocess=SPEC,
        extra={"provenance": {"model": "tiny", "weights": "random", "precision": "test"}},
    )
    fields.update(overrides)
    return ModelInfo(**fields)


def _images(count: int = 6) -> list[np.ndarray]:
    """Distinct RGB uint8 images of the model's input size (solid colours plus noise)."""
    rng = np.random.default_rng(7)
    images = []
    for _ in range(count):
        base = rng.integers(0, 256, 3)
        noise = rng.integers(-40, 41, (SIZE, SIZE, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return images


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def _io_details(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


# -- write → read ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["float", "uint8", "int8"])
def test_round_trip(models, kind):
    written = embed_metadata(models[kind], _info())
    info = read_metadata(written)
    assert info is not None
    assert (info.name, info.description, info.version, info.author, info.license) == (
        "tiny classifier",
        "A 2-layer test classifier.",
        "v1",
        "edgemobile tests",
        "Apache-2.0",
    )
    assert info.labels == LABELS
    assert info.labels_file == LABELS_FILE
    assert info.preprocess == SPEC
    assert info.normalization == ((127.5,) * 3, (127.5,) * 3)
    assert info.color_space == "RGB"
    assert info.min_parser_version == "1.0.0"
    assert info.extra["provenance"]["model"] == "tiny"
    assert info.extra["provenance"]["edgemobile_version"]
    assert info.extra["preprocess"] == SPEC.to_dict() | {"mean": [127.5] * 3, "std": [127.5] * 3}
    assert info.extra["labels"] == {"file": LABELS_FILE, "count": NUM_CLASSES}
    files = read_associated_files(written)
    assert set(files) == {LABELS_FILE, INFO_FILE}
    assert files[LABELS_FILE].decode("utf-8").splitlines() == LABELS
    assert json.loads(files[INFO_FILE]) == info.extra


def test_no_metadata_reads_as_none(models, tmp_path):
    path = tmp_path / "plain.tflite"
    path.write_bytes(models["float"])
    assert read_metadata(path) is None
    assert read_associated_files(path) == {}


def test_paths_and_bytes_agree(models, tmp_path):
    src = tmp_path / "in.tflite"
    src.write_bytes(models["uint8"])
    from_path = embed_metadata(src, _info())
    assert from_path == embed_metadata(models["uint8"], _info())  # deterministic too
    dst = tmp_path / "out.tflite"
    dst.write_bytes(from_path)
    assert read_metadata(dst) == read_metadata(from_path)


def test_preprocess_rebuilt_from_normalization(models):
    written = embed_metadata(
        models["float"], _info(preprocess=None, normalization=((0.0,), (255.0,)))
    )
    info = read_metadata(written)
    assert info.normalization == ((0.0,), (255.0,))
    assert info.extra["preprocess"] is None
    assert info.preprocess == PreprocessSpec.center_crop(SIZE, 0.0, 255.0)


def test_metadata_follows_tflite_support_conventions(models):
    """Stats as tflite-support's image classifier writer: float input → normalized pixel
    range, uint8 → 255/0; float output → 1/0, uint8 → 255/0; int8 → none."""
    float_meta = read_model_metadata(embed_metadata(models["float"], _info()))
    assert float_meta.inputs[0].stats == ((1.0,) * 3, (-1.0,) * 3)
    assert float_meta.outputs[0].stats == ((1.0,), (0.0,))
    uint8_meta = read_model_metadata(embed_metadata(models["uint8"], _info()))
    assert uint8_meta.inputs[0].stats == ((255.0,), (0.0,))
    assert uint8_meta.outputs[0].stats == ((255.0,), (0.0,))
    int8_meta = read_model_metadata(embed_metadata(models["int8"], _info()))
    assert int8_meta.inputs[0].stats is None and int8_meta.outputs[0].stats is None
    for meta in (float_meta, uint8_meta):
        assert (meta.inputs[0].name, meta.inputs[0].content) == ("image", "image")
        assert (meta.outputs[0].name, meta.outputs[0].content) == ("probability", "feature")
        assert [(f.name, f.type) for f in meta.outputs[0].files] == [(LABELS_FILE, 2)]
        assert [f.name for f in meta.files] == [INFO_FILE]


def test_independent_schema_reader(models):
    """MediaPipe ships flatc-generated code for the metadata schema: it must decode our
    hand-built flatbuffer to the same fields (slot numbers and types are right)."""
    mfb = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated")
    from ai_edge_litert import schema_py_generated as sfb

    written = embed_metadata(models["float"], _info())
    model = sfb.Model.GetRootAsModel(written, 0)
    entries = [model.Metadata(i) for i in range(model.MetadataLength())]
    ours = [m for m in entries if m.Name() == b"TFLITE_METADATA"]
    assert len(ours) == 1
    buf = model.Buffers(ours[0].Buffer()).DataAsNumpy().tobytes()
    assert mfb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    md = mfb.ModelMetadataT.InitFromPackedBuf(buf, 0)
    assert (md.name, md.version, md.author, md.license, md.minParserVersion) == (
        b"tiny classifier",
        b"v1",
        b"edgemobile tests",
        b"Apache-2.0",
        b"1.0.0",
    )
    assert [(f.name, f.type) for f in md.associatedFiles] == [(INFO_FILE.encode(), 0)]
    (sub,) = md.subgraphMetadata
    (image,) = sub.inputTensorMetadata
    assert image.name == b"image"
    assert image.content.contentPropertiesType == mfb.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == mfb.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == mfb.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [127.5] * 3 and list(unit.options.std) == [127.5] * 3
    assert list(image.stats.max) == [1.0] * 3 and list(image.stats.min) == [-1.0] * 3
    (scores,) = sub.outputTensorMetadata
    assert scores.name == b"probability"
    assert scores.content.contentPropertiesType == mfb.ContentProperties.FeatureProperties
    (labels,) = scores.associatedFiles
    assert (labels.name, labels.type) == (b"labels.txt", mfb.AssociatedFileType.TENSOR_AXIS_LABELS)
    assert list(scores.stats.max) == [1.0] and list(scores.stats.min) == [0.0]


def test_hand_reader_matches_interpreter(models):
    for kind in ("float", "uint8", "int8"):
        view = parse_model(models[kind])
        inp, out = _io_details(models[kind])
        assert view.inputs[0].shape == tuple(inp["shape"])
        assert view.inputs[0].dtype == np.dtype(inp["dtype"]).name
        assert view.outputs[0].shape == tuple(out["shape"])
        if kind != "float":
            assert view.inputs[0].scale == pytest.approx((inp["quantization"][0],))
            assert view.inputs[0].zero_point == (inp["quantization"][1],)


# -- the model itself is untouched ------------------------------------------------------------
@pytest.mark.parametrize("kind", ["float", "uint8"])
def test_model_runs_with_identical_outputs(models, kind):
    written = embed_metadata(models[kind], _info())
    inp, _ = _io_details(written)
    for pixels in _images(3):
        x = SPEC.normalize(pixels)[None] if kind == "float" else pixels[None]
        assert x.dtype == inp["dtype"]
        np.testing.assert_array_equal(_run(written, x), _run(models[kind], x))


def test_buffers_stay_16_byte_aligned(models):
    written = embed_metadata(models["float"], _info())
    spans = [start for start, length in parse_model(written).buffer_spans if length]
    assert spans and all(start % 16 == 0 for start in spans)


def test_duplicate_metadata_entries_are_merged(models):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as sfb

    model = sfb.ModelT.InitFromPackedBuf(models["float"], 0)
    for _ in range(2):  # two stale TFLITE_METADATA entries with their own buffers
        buffer = sfb.BufferT()
        buffer.data = np.frombuffer(b"stale", np.uint8)
        model.buffers.append(buffer)
        entry = sfb.MetadataT()
        entry.name, entry.buffer = "TFLITE_METADATA", len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    written = embed_metadata(bytes(builder.Output()), _info())
    view = parse_model(written)
    assert [name for name, _ in view.metadata].count("TFLITE_METADATA") == 1
    assert b"stale" not in written
    assert read_metadata(written).labels == LABELS


def test_tflite_is_also_a_valid_stored_zip(models):
    written = embed_metadata(models["uint8"], _info())
    assert written[4:8] == b"TFL3"
    with zipfile.ZipFile(io.BytesIO(written)) as zf:
        assert zf.testzip() is None
        assert {e.filename for e in zf.infolist()} == {LABELS_FILE, INFO_FILE}
        assert all(e.compress_type == zipfile.ZIP_STORED for e in zf.infolist())


def test_reembedding_replaces(models):
    first = embed_metadata(models["float"], _info())
    second = embed_metadata(
        first, _info(name="second", labels=[f"other {i}" for i in range(NUM_CLASSES)], extra={})
    )
    names = [name for name, _ in parse_model(second).metadata]
    assert names.count("TFLITE_METADATA") == 1
    assert len(parse_model(second).buffer_spans) == len(parse_model(first).buffer_spans)
    info = read_metadata(second)
    assert info.name == "second" and info.labels[0] == "other 0"
    assert "model" not in info.extra["provenance"]
    with zipfile.ZipFile(io.BytesIO(second)) as zf:  # the old zip is gone, not shadowed
        assert sorted(e.filename for e in zf.infolist()) == sorted([LABELS_FILE, INFO_FILE])
    assert b"class 0" not in second
    assert embed_metadata(first, _info()) == first  # same info → byte-identical model
    assert embed_metadata(models["float"], read_metadata(first)) == first  # read → write
    x = SPEC.normalize(_images(1)[0])[None]
    np.testing.assert_array_equal(_run(second, x), _run(models["float"], x))


# -- errors ---------------------------------------------------------------------------------
def test_garbage_and_truncated_files_name_the_file(models, tmp_path):
    written = embed_metadata(models["uint8"], _info())
    cases = {
        "garbage.tflite": b"this is not a model at all" * 10,
        "empty.tflite": b"",
        "half.tflite": written[: len(written) // 2],
        "no_zip_end.tflite": written[:-30],  # flatbuffer intact, zip cut off
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for reader in (read_metadata, read_associated_files, mediapipe_issues):
            with pytest.raises(EdgeMobileError, match=name):
                reader(path)
        if name == "no_zip_end.tflite":  # the flatbuffer is intact: re-embedding repairs it
            assert read_metadata(embed_metadata(path, _info())).labels == LABELS
        else:
            with pytest.raises(EdgeMobileError, match=name):
                embed_metadata(path, _info())
    with pytest.raises(EdgeMobileError, match="missing.tflite"):
        read_metadata(tmp_path / "missing.tflite")
    with pytest.raises(EdgeMobileError, match="not a TFLite model"):
        read_metadata(b"\x00" * 64)


def test_error_message_is_one_line(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 40)
    with pytest.raises(EdgeMobileError) as err:
        read_metadata(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"labels": ["a", "b"]}, "2 labels given for a model with 10 classes"),
        ({"labels": ["a\nb"] + LABELS[1:]}, "line break"),
        ({"labels": [""] + LABELS[1:]}, "label 0 is empty"),
        ({"preprocess": None}, "needs the input normalization"),
        ({"normalization": ((1.0,), (2.0,))}, "disagrees"),
        ({"preprocess": None, "normalization": ((1.0, 2.0), (1.0, 2.0))}, "1 or 3"),
        ({"extra": {"bad": object()}}, "not JSON-serializable"),
    ],
)
def test_info_is_validated(models, overrides, match):
    with pytest.raises(EdgeMobileError, match=match):
        embed_metadata(models["float"], _info(**overrides))


# -- no TensorFlow ------------------------------------------------------------------------------
def test_reading_and_writing_never_import_tensorflow(models, tmp_path):
    src = tmp_path / "model.tflite"
    src.write_bytes(models["uint8"])
    code = (
        "import sys\n"
        "from edgemobile.metadata import ModelInfo, embed_metadata, read_metadata\n"
        "info = ModelInfo(name='x', labels=[str(i) for i in range(10)])\n"
        f"data = embed_metadata({str(src)!r}, info)\n"
        "assert read_metadata(data).labels[9] == '9'\n"
        "heavy = ('tensorflow', 'keras', 'mediapipe')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# -- MediaPipe Tasks reads it ------------------------------------------------------------------
def _mediapipe_classify(model: bytes, images: list[np.ndarray]):
    pytest.importorskip("mediapipe")
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_buffer=model), max_results=-1
    )
    results = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for pixels in images:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
            results.append(classifier.classify(image).classifications[0])
    return results


def _scores(classification) -> np.ndarray:
    scores = np.zeros(NUM_CLASSES, np.float32)
    for category in classification.categories:
        scores[category.index] = category.score
    return scores


def test_mediapipe_classifies_uint8_model_with_our_labels(models):
    written = embed_metadata(models["uint8"], _info())
    images = _images()
    results = _mediapipe_classify(written, images)
    _, out = _io_details(written)
    scale, zero_point = out["quantization"]
    for pixels, result in zip(images, results, strict=True):
        assert result.head_name == "probability"
        assert len(result.categories) == NUM_CLASSES
        assert {c.category_name for c in result.categories} == set(LABELS)
        assert all(c.category_name == LABELS[c.index] for c in result.categories)
        # MediaPipe feeds uint8 inputs raw pixels: same scores as the interpreter.
        expected = (_run(written, pixels[None])[0].astype(np.float32) - zero_point) * scale
        np.testing.assert_allclose(_scores(result), expected, atol=1e-6)
        assert expected[result.categories[0].index] == expected.max()
    assert mediapipe_issues(written) == []


@pytest.mark.parametrize(
    "norm, other", [((127.5, 127.5), (0.0, 255.0)), ((0.0, 255.0), (127.5, 127.5))]
)
def test_mediapipe_applies_our_normalization(models, norm, other):
    """A float model: MediaPipe's scores equal the interpreter's on the tensor normalized
    with the mean/std written in the metadata — and differ under the other normalization,
    so the test would notice metadata that MediaPipe ignored."""
    spec = PreprocessSpec.center_crop(SIZE, *norm)
    written = embed_metadata(models["float"], _info(preprocess=spec))
    other = PreprocessSpec.center_crop(SIZE, *other)
    images = _images()
    results = _mediapipe_classify(written, images)
    for pixels, result in zip(images, results, strict=True):
        expected = _run(written, spec.normalize(pixels)[None])[0]
        assert result.categories[0].category_name == LABELS[int(np.argmax(expected))]
        np.testing.assert_allclose(_scores(result), expected, atol=1e-5)
        wrong = _run(written, other.normalize(pixels)[None])[0]
        assert np.abs(wrong - expected).max() > 1e-3
    assert mediapipe_issues(written) == []


def test_mediapipe_limits_are_reported(models):
    per_channel = embed_metadata(
        models["float"],
        _info(
            preprocess=PreprocessSpec.center_crop(
                SIZE, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
            )
        ),
    )
    (issue,) = mediapipe_issues(per_channel)
    assert "per-channel normalization mean=[123.675, 116.28, 103.53]" in issue
    int8 = mediapipe_issues(embed_metadata(models["int8"], _info()))
    assert any("input type int8" in i for i in int8) and any(
        "output 0 type int8" in i for i in int8
    )
    assert mediapipe_issues(models["float"]) == [
        "float32 input without NormalizationOptions metadata"
    ]
    # uint8 input quantized for [-1, 1] but metadata claiming 0..255 inputs
    mismatch = embed_metadata(
        models["uint8"], _info(preprocess=PreprocessSpec.center_crop(SIZE, 0, 1))
    )
    (issue,) = mediapipe_issues(mismatch)
    assert "does not match the normalization" in issue

    pytest.importorskip("mediapipe")
    with pytest.raises(Exception, match="[Pp]er-channel"):
        _mediapipe_classify(per_channel, _images(1))
    with pytest.raises(Exception, match="uint8/float32"):
        _mediapipe_classify(embed_metadata(models["int8"], _info()), _images(1))
