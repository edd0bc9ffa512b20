"""``edgemobile info`` / ``em.info``: what a .tflite carries, read without TensorFlow, on a
model edgemobile made, on Google's third-party QAT models (with and without TFLite metadata),
on precisions inferred from tensor types, and one-line errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgemobile as em
from edgemobile.cli.main import main
from edgemobile.download import file_hash
from edgemobile.runtime.interpreter import builtin_ref_resolver, interpreter_backend, model_ops

from support.paths import MOBILENET_UINT8_WEIGHTS as WEIGHTS

QAT_V1 = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"  # TFLite metadata, no edgemobile metadata
QAT_V3 = "weights/mobilenet_v3/v3-small_224_1.0_uint8.tflite"  # no metadata at all


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ops_of(path):
    """(the model's op types, its interpreter), listed by an interpreter of its own (no XNNPACK)."""
    backend, cls = interpreter_backend()
    interpreter = cls(model_content=path.read_bytes(), experimental_op_resolver_type=builtin_ref_resolver(backend))
    interpreter.allocate_tensors()
    return [op["op_name"] for op in model_ops(interpreter)], interpreter


@pytest.mark.convert
def test_edgemobile_model(mobilenet_uint8, shared, capsys, tmp_path):
    converted = mobilenet_uint8  # α0.25/224, uint8, default techniques, 20 calibration images
    report = tmp_path / "info.json"
    code, out, err = run(capsys, "info", converted, "--json", report)
    assert code == 0 and err == "", err
    doc = json.loads(report.read_text())
    assert set(doc) >= {"model", "name", "metadata", "precision", "inputs", "outputs", "preprocess", "labels",
                        "provenance", "ops", "xnnpack", "runtime"}
    assert doc["metadata"] == "edgemobile" and doc["precision"] == "uint8"
    names, interpreter = ops_of(converted)
    detail = interpreter.get_input_details()[0]
    assert doc["inputs"][0]["dtype"] == "uint8" and doc["inputs"][0]["shape"] == [1, 224, 224, 3]
    assert doc["inputs"][0]["scale"] == [pytest.approx(detail["quantization"][0])]
    assert doc["inputs"][0]["zero_point"] == [detail["quantization"][1]]
    assert doc["preprocess"]["size"] == 224 and doc["preprocess"]["mean"] == [127.5] * 3
    assert doc["labels"]["count"] == 1000 and doc["labels"]["first"][0] == "tench"
    provenance = doc["provenance"]
    assert provenance["weights"]["sha256"] == file_hash(shared / WEIGHTS)
    assert provenance["calibration"]["images"] == 20 and provenance["quantization"]["techniques"]
    assert doc["ops"] == {name: names.count(name) for name in set(names)}
    assert doc["xnnpack"]["ops"] == len(names) and 0 < doc["xnnpack"]["delegated_ops"] <= len(names)
    for words in ("uint8 (from edgemobile metadata)", "scale ", "zero point ", "center-crop 224x224",
                  "1000 (\"tench\"", file_hash(shared / WEIGHTS), "20 images from", provenance["quantization"]["techniques"],
                  "edgemobile 0.1.0", f"{len(names)}: ", f"of {len(names)} ops"):
        assert words in out, (words, out)
    # The API gives the same, from a path, bytes or a Converted result.
    assert json.loads(json.dumps(em.info(converted).as_dict())) == doc
    assert em.info(converted.read_bytes()).as_dict()["ops"] == doc["ops"]
    # --json is never overwritten without --force.
    code, _, err = run(capsys, "info", converted, "--json", report)
    assert code == 2 and "--force" in err
    assert run(capsys, "info", converted, "--json", report, "--force")[0] == 0


def test_third_party_model_with_tflite_metadata(shared, capsys):
    path = shared / QAT_V1
    if not path.is_file():
        pytest.skip(f"{path} not found")
    result = em.info(path)
    names, interpreter = ops_of(path)
    assert result.metadata == "tflite" and not result.provenance
    assert (result.precision, result.precision_source) == ("uint8", "tensor types")
    detail = interpreter.get_input_details()[0]
    assert result.inputs[0].dtype == "uint8" and result.inputs[0].zero_point == (detail["quantization"][1],)
    assert len(result.labels) == 1001 and result.labels[0] == "background"
    assert result.preprocess["mean"] == [127.5] * 3 and "NormalizationOptions" in result.preprocess_source
    assert result.ops == {name: names.count(name) for name in set(names)}
    text = str(result)
    assert "no edgemobile metadata" in text and "none (not made by edgemobile)" in text
    assert f"of {len(names)} ops" in text


def test_third_party_model_without_metadata(shared, capsys):
    path = shared / QAT_V3
    if not path.is_file():
        pytest.skip(f"{path} not found")
    code, out, err = run(capsys, "info", path)
    assert code == 0 and err == ""
    names, _ = ops_of(path)
    assert "none: no edgemobile metadata, no TFLite metadata" in out
    assert "uint8 (from tensor types)" in out and f"{len(names)}: " in out
    assert "HARD_SWISH" in out and "none stored" in out


@pytest.mark.convert
@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")  # the converter's own notice
@pytest.mark.parametrize("precision", ["float32", "float16", "dynamic", "int8 (float input and output)"])
def test_precision_from_tensor_types(precision, tmp_path):
    """A model without metadata: its precision is read from its tensors' types."""
    tf = pytest.importorskip("tensorflow")
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(64, activation="softmax")(x)  # 2048 weights: dynamic-range quantizes them
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if precision.startswith("int8"):
        images = np.random.default_rng(0).normal(0, 1, (8, 1, 8, 8, 3)).astype(np.float32)
        converter.representative_dataset = lambda: ([x] for x in images)
    path = tmp_path / "tiny.tflite"
    path.write_bytes(converter.convert())
    result = em.info(path)
    assert (result.precision, result.precision_source, result.metadata) == (precision, "tensor types", "none")


@pytest.mark.parametrize("case, words", [
    ("missing", "no such model file"),
    ("folder", "is a folder"),
    ("not a flatbuffer", "not a TFLite model"),
    ("truncated", "truncated"),
    ("truncated metadata", "truncated"),
])
def test_bad_files_are_one_line_errors(case, words, shared, capsys, tmp_path):
    path = tmp_path / "bad.tflite"
    data = (shared / QAT_V1).read_bytes() if (shared / QAT_V1).is_file() else b""
    if case == "folder":
        path.mkdir()
    elif case == "not a flatbuffer":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    elif case == "truncated":
        if not data:
            pytest.skip("shared data not found")
        path.write_bytes(data[: len(data) // 2])
    elif case == "truncated metadata":  # the flatbuffer whole, the packed labels cut off
        if not data:
            pytest.skip("shared data not found")
        path.write_bytes(data[:-200])
    report = tmp_path / "info.json"
    code, out, err = run(capsys, "info", path, "--json", report)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("edgemobile: error: "), err
    assert words in lines[0] and str(path) in lines[0] and "Traceback" not in err
    assert not report.exists() and out == ""
