"""Proof with a real client: MediaPipe Tasks' ImageClassifier (the C++ core Android uses,
through its Python API) on bundles made from real weights agrees with ``edgemobile predict``.

MediaPipe stretches the whole image to the input size, while edgemobile resizes the shorter
side and center-crops; so MediaPipe is given the very crop edgemobile's spec makes
(size x size, which it feeds without resampling) and ``predict`` the original file.
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgemobile.cli.main import main
from edgemobile.data.preprocessing import load_rgb
from edgemobile.metadata import read_metadata
from edgemobile.runtime.interpreter import TFLiteClassifier

pytest.importorskip("tensorflow")
mp = pytest.importorskip("mediapipe")

WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"
MOBILEONE = "weights/mobileone/mobileone_s0.pth.tar"
NUM_IMAGES = 20


def bundle(tmp, name, *argv):
    folder = tmp / name
    assert main(["bundle", *map(str, argv), "--out", str(folder), "--quiet"]) == 0
    return folder / f"{name}.tflite"


@pytest.fixture(scope="module")
def bundles(shared, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("android_assets")
    weights = shared / WEIGHTS
    return {
        "uint8": bundle(tmp, "mobilenet_uint8", "mobilenet", "--alpha", "0.25", "--weights", weights,
                        "--calibration", shared / "imagenet/calib", "--num-calibration", "100"),
        "float32": bundle(tmp, "mobilenet_float32", "mobilenet", "--alpha", "0.25", "--weights", weights,
                          "--float32"),
    }


@pytest.fixture(scope="module")
def images(shared):
    found = sorted((shared / "imagenet/val").glob("*/*.JPEG"))
    return found[:: max(1, len(found) // NUM_IMAGES)][:NUM_IMAGES]


def mediapipe_scores(model: Path, images) -> list[list]:
    """Top-5 (index, name, score) per image from MediaPipe, fed edgemobile's crop."""
    from mediapipe.tasks.python import BaseOptions, vision

    spec = read_metadata(model).preprocess
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=5)
    classifier = vision.ImageClassifier.create_from_options(options)
    try:
        results = []
        for path in images:
            crop = np.ascontiguousarray(spec.crop_pixels(load_rgb(path)))
            assert crop.shape == (spec.size, spec.size, 3)
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
            results.append([(c.index, c.category_name, c.score) for c in result.classifications[0].categories])
        return results
    finally:
        classifier.close()


def predict_probabilities(model: Path, images, tmp_path) -> np.ndarray:
    """``edgemobile predict`` (all 1000 classes via --top-k) → (images, classes) probabilities."""
    report = tmp_path / f"{model.stem}.json"
    assert main(["predict", str(model), *map(str, images), "--top-k", "1000", "--json", str(report)]) == 0
    probs = np.zeros((len(images), TFLiteClassifier(model).num_outputs))
    for row, prediction in enumerate(json.loads(report.read_text())["predictions"]):
        for entry in prediction["top"]:
            probs[row, entry["index"]] = entry["probability"]
    return probs


def agreement(mp_results, probs, labels) -> dict:
    top1 = top1_ties = top5 = top5_ties = 0
    max_diff = 0.0
    for categories, p in zip(mp_results, probs):
        indices = [c[0] for c in categories]
        assert [c[1] for c in categories] == [labels[i] for i in indices]  # names from our metadata
        max_diff = max(max_diff, max(abs(score - p[i]) for i, _, score in categories))
        ours = list(np.argsort(-p, kind="stable")[:5])
        top1 += int(indices[0] == ours[0])
        top1_ties += bool(np.isclose(p[indices[0]], p.max(), rtol=0, atol=1e-6))
        top5 += int(set(indices) == set(ours))
        # up to ties: MediaPipe's five scores are our five largest, and every class scoring
        # above the fifth is in both lists.
        fifth = np.sort(p)[-5]
        above = {int(i) for i in np.flatnonzero(p > fifth + 1e-6)}
        top5_ties += bool(np.allclose(sorted(c[2] for c in categories), np.sort(p)[-5:], atol=1e-6)
                          and above <= set(indices))
    n = len(probs)
    return {"images": n, "top1": top1 / n, "top1_up_to_ties": top1_ties / n, "top5_set": top5 / n,
            "top5_up_to_ties": top5_ties / n, "max_score_difference": float(max_diff)}


def test_uint8_bundle_agrees_with_predict(bundles, images, tmp_path):
    model = bundles["uint8"]
    info = read_metadata(model)
    result = agreement(mediapipe_scores(model, images), predict_probabilities(model, images, tmp_path), info.labels)
    print("uint8 bundle, MediaPipe vs edgemobile predict:", result)
    # uint8 scores are multiples of 1/256, so equal scores (ties) are common: the ordering
    # of tied classes is the only allowed difference; the scores themselves are identical.
    assert result["max_score_difference"] <= 1e-6
    assert result["top1_up_to_ties"] == 1.0 and result["top5_up_to_ties"] == 1.0
    assert result["top1"] >= 0.8


def test_float_bundle_normalization_is_read_by_mediapipe(bundles, images, tmp_path):
    model = bundles["float32"]
    info = read_metadata(model)
    assert info.normalization == ((127.5,) * 3, (127.5,) * 3)
    result = agreement(mediapipe_scores(model, images), predict_probabilities(model, images, tmp_path), info.labels)
    print("float32 bundle, MediaPipe vs edgemobile predict:", result)
    assert result["top1"] == 1.0 and result["max_score_difference"] <= 1e-4


def test_folded_per_channel_bundle_through_mediapipe(shared, images, tmp_path):
    """MobileOne's per-channel ImageNet mean/std, folded into the model, with real weights."""
    weights = shared / MOBILEONE
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    model = bundle(tmp_path, "mobileone_float32", "mobileone", "--weights", weights, "--float32")
    info = read_metadata(model)
    assert info.normalization == ((0.0,) * 3, (1.0,) * 3) and "folded" in info.description
    few = images[:8]
    result = agreement(mediapipe_scores(model, few), predict_probabilities(model, few, tmp_path), info.labels)
    print("folded MobileOne float32 bundle, MediaPipe vs edgemobile predict:", result)
    assert result["top1"] == 1.0 and result["max_score_difference"] <= 1e-4


def _mediapipe_schema():
    """MediaPipe's own generated reader of the TFLite Metadata schema (loaded by path: it
    needs only flatbuffers)."""
    spec = importlib.util.find_spec("mediapipe")
    path = Path(spec.origin).parent / "tasks/metadata/metadata_schema_py_generated.py"
    if not path.is_file():
        pytest.skip(f"{path} not found in this mediapipe")
    module_spec = importlib.util.spec_from_file_location("_mediapipe_metadata_schema", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _metadata_buffer(data: bytes) -> bytes:
    from ai_edge_litert import schema_py_generated as tflite

    model = tflite.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == "TFLITE_METADATA":
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    raise AssertionError("no TFLITE_METADATA")


@pytest.mark.parametrize("kind", ["uint8", "float32"])
def test_metadata_round_trips_through_both_readers(bundles, kind):
    model = bundles[kind]
    data = model.read_bytes()
    classes = TFLiteClassifier(model).num_outputs
    ours = read_metadata(model)
    assert len(ours.labels) == classes and ours.color_space == "RGB"
    assert ours.normalization == (ours.preprocess.mean, ours.preprocess.std)
    labels_beside = (model.parent / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels_beside == ours.labels

    schema = _mediapipe_schema()
    meta = schema.ModelMetadata.GetRootAs(_metadata_buffer(data), 0)
    assert meta.Name().decode() == ours.name and meta.Version().decode() == ours.version
    assert meta.Author().decode() and meta.License().decode() and meta.Description().decode()
    graph = meta.SubgraphMetadata(0)
    image = graph.InputTensorMetadata(0)
    assert image.Content().ContentPropertiesType() == schema.ContentProperties.ImageProperties
    props = schema.ImageProperties()
    table = image.Content().ContentProperties()
    props.Init(table.Bytes, table.Pos)
    assert props.ColorSpace() == schema.ColorSpaceType.RGB
    unit = image.ProcessUnits(0)
    assert unit.OptionsType() == schema.ProcessUnitOptions.NormalizationOptions
    norm = schema.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    spec = ours.preprocess
    assert np.allclose(norm.MeanAsNumpy(), spec.mean[: norm.MeanLength()], atol=1e-4)
    assert np.allclose(norm.StdAsNumpy(), spec.std[: norm.StdLength()], atol=1e-4)
    scores = graph.OutputTensorMetadata(0)
    assert scores.Content().ContentPropertiesType() == schema.ContentProperties.FeatureProperties
    assert scores.Stats().MaxLength() == 1 and scores.Stats().MinLength() == 1  # score range
    labels = scores.AssociatedFiles(0)
    assert labels.Name().decode() == "labels.txt"
    assert labels.Type() == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    with zipfile.ZipFile(io.BytesIO(data)) as packed:
        lines = packed.read("labels.txt").decode("utf-8").splitlines()
        assert packed.getinfo("labels.txt").compress_type == zipfile.ZIP_STORED  # MediaPipe maps it
    assert len(lines) == classes and lines == ours.labels
