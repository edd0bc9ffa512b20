import pytest

from edgemobile.errors import EdgeMobileError
from edgemobile.networks.zoo import families, get_family, resolve
from edgemobile.quantization.convert import default_output_name


def test_mobilenet_defaults_and_aliases():
    for name in ("mobilenet", "mobilenet_v1", "MobileNet-V1", "mobilenetv1"):
        variant = resolve(name)
        assert (variant.family, variant.alpha, variant.resolution) == ("mobilenet_v1", 1.0, 224)
    assert default_output_name(resolve("mobilenet"), "int8") == "mobilenet_v1_1.0_224_int8.tflite"


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("resolution", [128, 160, 192, 224])
def test_every_mobilenet_v1_variant_has_spec_and_weights(alpha, resolution):
    variant = resolve("mobilenet", alpha, resolution)
    spec = variant.preprocess
    assert spec.size == resolution and spec.resize_shorter == round(resolution / 0.875)
    assert spec.mean == (127.5,) * 3 and spec.std == (127.5,) * 3  # pixels → [-1, 1]
    text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}[alpha]
    assert variant.weights.filename == f"mobilenet_{text}_{resolution}_tf.h5"
    assert variant.weights.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/")


# Every variant of every registered family, from the registry itself (importing the zoo needs
# no TensorFlow): a family added to FAMILY_MODULES is covered without touching this file.
VARIANTS = [(family.name, alpha, resolution) for family in families().values()
            for alpha in family.alphas for resolution in family.resolutions]


def _variant_id(name, alpha, resolution) -> str:
    return f"{name}-{alpha}-{resolution}" if alpha is not None else f"{name}-{resolution}"


def test_the_registry_has_every_family_and_variant():
    """Guard for the parametrization below: it really runs over the whole zoo."""
    names = {name for name, _, _ in VARIANTS}
    assert names == set(families()) and {"mobilenet_v1", "mobilenet_v3_small", "mobileone_s0"} <= names
    assert len(VARIANTS) == sum(len(f.alphas) * len(f.resolutions) for f in families().values())


@pytest.mark.convert
@pytest.mark.parametrize("name,alpha,resolution", VARIANTS, ids=[_variant_id(*v) for v in VARIANTS])
def test_builds_fixed_shape_softmax_model(name, alpha, resolution):
    """Every variant of every family builds in full with random weights (``build("none")``) at
    its fixed input shape, and its output is a softmax over the family's classes: all 27
    variants (16 MobileNetV1, 6 MobileNetV3, 5 MobileOne) take ~35 s together on 2 shared
    cores, so each is built whole (no config-only shortcut) and run once on a black image."""
    pytest.importorskip("tensorflow")
    import keras
    import numpy as np

    variant = resolve(name, alpha, resolution)
    assert (variant.family, variant.alpha, variant.resolution) == (name, alpha, resolution)
    keras.backend.clear_session()  # 27 models in one process: keep memory flat
    model = variant.build("none")
    assert model.input_shape == (None, resolution, resolution, 3)
    assert model.output_shape == (None, variant.num_classes)
    last = model.layers[-1]
    assert last.name == "predictions" or "softmax" in str(last.get_config())
    assert last.get_config().get("activation") == "softmax" or isinstance(last, keras.layers.Softmax), \
        last.get_config()
    probabilities = np.asarray(model(np.zeros((1, resolution, resolution, 3), np.float32)))
    assert probabilities.shape == (1, variant.num_classes) and (probabilities >= 0).all()
    assert abs(float(probabilities.sum()) - 1.0) < 1e-4


def test_unknown_names_list_what_exists():
    with pytest.raises(EdgeMobileError) as info:
        get_family("resnet50")
    assert "mobilenet_v1" in str(info.value)
    assert "mobilenet_v1" in families()


def test_models_lists_every_family_with_defaults_preprocessing_and_weights(tmp_path, capsys, monkeypatch):
    import json

    import edgemobile as em
    from edgemobile.cli.main import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    listing = em.models()
    assert [f.name for f in listing] == list(families())
    report = tmp_path / "models.json"
    assert main(["models", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    doc = json.loads(report.read_text())
    assert doc["weights_cache"] == str(tmp_path / "keras_home" / "models") and doc["weights_cache"] in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for family, entry in zip(families().values(), doc["families"]):
        default = family.variant()
        assert (entry["name"], entry["default_alpha"], entry["default_resolution"]) == (
            family.name, family.default_alpha, family.default_resolution)
        assert entry["default_weights"] == default.weights.filename
        assert {w["file"] for w in entry["weights"]} == {
            family.variant(a, r).weights.filename for a in family.alphas for r in family.resolutions}
        row = rows[family.name]
        assert f"{family.default_resolution}*" in row and default.weights.filename in row
        assert family.default_alpha is None or f"{family.default_alpha}*" in row
        assert entry["preprocess_text"] in row and entry["preprocess"]["resize_shorter"] == default.preprocess.resize_shorter
    assert main(["models", "--json", str(report)]) == 2  # never overwritten without --force
