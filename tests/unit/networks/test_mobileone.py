"""MobileOne S0–S4: both forms build, reparameterization is exact with non-trivial
BatchNorm statistics, the fused graph is plain Keras/TFLite ops, the zoo entries, and the
real Apple S0 checkpoint (from ../shared) classifies ImageNet images without torch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgemobile.errors import EdgeMobileError
from edgemobile.networks import mobileone, mobileone_architecture, mobileone_weights, zoo
from edgemobile.networks.mobileone import (
    MobileOne,
    build_inference_model,
    build_train_model,
    reparameterize,
)
from edgemobile.networks.mobileone_weights import set_state_dict
from support.random_weights import randomize_batchnorm

SIZE = 64  # five stride-2 stages: 64 -> 2x2 at the last stage, enough to exercise padding
PLAIN_FUSED_LAYERS = {
    "InputLayer", "ZeroPadding2D", "Conv2D", "DepthwiseConv2D", "ReLU", "GlobalAveragePooling2D",
    "Dense", "Activation", "Multiply",
}


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("variant", ["s0", "s1", "s2", "s3", "s4"])
def test_reparameterize_is_exact_for_every_variant(variant):
    train = MobileOne(variant, inference_mode=False, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_batchnorm(train, seed=int(variant[1]))
    fused = reparameterize(train)
    assert fused.name == f"mobileone_{variant}" and train.name == f"mobileone_{variant}_train"
    assert mobileone_architecture.model_form(fused) == "inference"
    assert mobileone_architecture.model_variant_key(fused) == variant
    x = np.random.default_rng(1).standard_normal((2, SIZE, SIZE, 3)).astype(np.float32)
    expected = train(x, training=False).numpy()
    got = fused(x).numpy()
    assert got.shape == (2, 1000)
    assert relative_error(got, expected) <= 1e-4
    # the fused graph is plain Keras layers: one conv (+ SE) per MobileOneBlock
    assert {type(layer).__name__ for layer in fused.layers} <= PLAIN_FUSED_LAYERS
    assert sum(layer.name.endswith("_reparam_conv") for layer in fused.layers) == 43
    branches = {layer.name for layer in train.layers}
    k = 4 if variant == "s0" else 1
    assert f"stage2_5_rbr_conv_{k - 1}_conv" in branches and f"stage2_5_rbr_conv_{k}_conv" not in branches
    assert "stage0_rbr_conv_1_conv" not in branches  # the stem always has a single conv branch


def test_variant_table_matches_published_sizes():
    # Parameter counts of the inference-time models as published (M): 2.1, 4.8, 7.8, 10.1, 14.8
    published = {"s0": 2.1, "s1": 4.8, "s2": 7.8, "s3": 10.1, "s4": 14.8}
    for variant, millions in published.items():
        model = MobileOne(variant)
        assert round(model.count_params() / 1e6, 1) == millions, variant
        if variant == "s4":
            reduce = [layer for layer in model.layers if layer.name.endswith("_se_reduce")]
            # SE in the last 5 blocks of stage 3 and the block of stage 4 (dw + pw each), ratio 1/16
            assert [layer.name for layer in reduce][:2] == ["stage3_10_se_reduce", "stage3_11_se_reduce"]
            assert len(reduce) == 12 and reduce[0].filters == 896 // 16 and reduce[-1].filters == 2048 // 16
    specs = mobileone_architecture.block_specs("s0")
    assert mobileone_architecture.VARIANTS["s0"].stage_channels == (48, 128, 256, 1024) and specs[0].out_channels == 48
    assert [b.stride for b in specs if b.depthwise and b.prefix.endswith(".0")] == [2, 2, 2, 2]
    assert specs[0].num_conv_branches == 1 and specs[1].num_conv_branches == 4  # stem has one branch


def test_stride2_uses_pytorch_symmetric_padding():
    model = MobileOne("s1", input_shape=(SIZE, SIZE, 3))
    assert model.get_layer("stage0_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("stage0_reparam_conv").padding == "valid"
    assert model.get_layer("stage1_2_reparam_conv").padding == "same"  # stride 1: symmetric already
    train = MobileOne("s1", inference_mode=False, input_shape=(SIZE, SIZE, 3))
    # the stride-2 1x1 scale branch reads the unpadded input, like PyTorch's padding=0
    assert train.get_layer("stage1_0_rbr_scale_conv").input.shape[1] == SIZE // 2


def test_keras_save_reload_and_weights_files(tmp_path):
    train = build_train_model("s1", input_shape=(SIZE, SIZE, 3))
    randomize_batchnorm(train, seed=3)
    fused = reparameterize(train)
    x = np.random.default_rng(2).standard_normal((1, SIZE, SIZE, 3)).astype(np.float32)
    expected = fused(x).numpy()

    fused.save(tmp_path / "s1.keras")
    reloaded = keras.models.load_model(tmp_path / "s1.keras")
    np.testing.assert_allclose(reloaded(x).numpy(), expected, rtol=1e-6, atol=1e-7)

    fused.save_weights(tmp_path / "fused.weights.h5")
    train.save_weights(tmp_path / "train.weights.h5")
    for name in ("fused.weights.h5", "train.weights.h5"):  # train-time weights get reparameterized
        model = build_inference_model("s1", tmp_path / name, input_shape=(SIZE, SIZE, 3))
        assert mobileone_architecture.model_form(model) == "inference"
        np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(EdgeMobileError, match="not mobileone_s2 weights"):
        build_inference_model("s2", tmp_path / "fused.weights.h5", input_shape=(SIZE, SIZE, 3))


def test_tflite_conversion_gives_plain_conv_ops():
    import tensorflow as tf

    model = MobileOne("s0", input_shape=(SIZE, SIZE, 3))
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # without XNNPACK, whose DELEGATE node would hide the ops it takes over
    interpreter = Interpreter(model_content=flatbuffer,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= ops
    assert ops <= {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "MEAN", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"}, ops


def test_state_dict_errors_list_missing_unexpected_and_shapes(tmp_path):
    fused = MobileOne("s0", input_shape=(SIZE, SIZE, 3))
    state = mobileone_weights.export_state_dict(fused)
    state["stage9.0.reparam_conv.weight"] = np.zeros(3, np.float32)
    del state["stage1.1.reparam_conv.bias"]
    state["linear.weight"] = np.zeros((10, 1024), np.float32)
    with pytest.raises(EdgeMobileError) as info:
        set_state_dict(fused, state, source="ckpt.pth")
    message = str(info.value)
    assert "\n" not in message and message.startswith("ckpt.pth:")
    assert "1 missing keys (stage1.1.reparam_conv.bias)" in message
    assert "1 unexpected keys (stage9.0.reparam_conv.weight)" in message
    assert "linear.weight (10, 1024) vs (1000, 1024)" in message


def test_builder_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown MobileOne variant"):
        MobileOne("s5")
    with pytest.raises(ValueError, match="at least 32"):
        MobileOne("s0", input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        MobileOne("s0", input_shape=(224, 224, 1))
    with pytest.raises(ValueError, match="1000 classes"):
        MobileOne("s0", weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="classifier_activation"):
        MobileOne("s0", weights="imagenet", classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="existing file"):
        MobileOne("s0", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="pooling"):
        MobileOne("s0", include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="already in inference form"):
        reparameterize(MobileOne("s1", input_shape=(SIZE, SIZE, 3)))
    headless = mobileone.MobileOneS2(include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3))
    assert headless.output_shape == (None, 2048)


def test_zoo_registration_and_offline_download_error():
    names = zoo.families()
    for key in ("s0", "s1", "s2", "s3", "s4"):
        variant = zoo.resolve(f"MobileOne-{key.upper()}")
        assert variant.family == f"mobileone_{key}" and variant.name == f"mobileone_{key}_224"
        assert variant.alpha is None and variant.resolution == 224
        assert variant.option("form") == "inference"
        assert variant.preprocess.size == 224 and variant.preprocess.resize_shorter == 256
        assert variant.preprocess.mean == (123.675, 116.28, 103.53)
        assert variant.preprocess.std == (58.395, 57.12, 57.375)
        assert variant.weights.url == f"{mobileone.APPLE_URL}mobileone_{key}.pth.tar"
        assert f"mobileone_{key}" in names
    assert zoo.resolve("mobileone").family == "mobileone_s0"
    unfused = mobileone.official_weights("s3", "apple_unfused")
    assert unfused.url.endswith("/mobileone_s3_unfused.pth.tar")
    timm = mobileone.official_weights("s0", "timm")
    assert timm.url == "https://huggingface.co/timm/mobileone_s0.apple_in1k/resolve/main/model.safetensors"
    assert timm.checksum and len(timm.checksum) == 64
    with pytest.raises(EdgeMobileError, match="cannot download .*mobileone_s0.pth.tar"):
        zoo.resolve("mobileone_s0").build("imagenet")  # conftest sets EDGEMOBILE_OFFLINE=1
    model = zoo.resolve("mobileone-s1").build("none")
    assert model.input_shape == (None, 224, 224, 3) and mobileone_architecture.model_form(model) == "inference"


def test_shared_apple_s0_checkpoint_classifies_imagenet(shared):
    """Apple's fused S0 via the zoo, no torch: top-1 on the first 100 val images (measured 82 %)."""
    path = shared / "weights" / "mobileone" / "mobileone_s0.pth.tar"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    variant = zoo.resolve("mobileone-s0")
    model = variant.build(path)
    assert "torch" not in sys.modules
    classes = [line.split()[0] for line in (shared / "imagenet" / "synset_words.txt").read_text().splitlines()]
    files = sorted((shared / "imagenet" / "val").glob("*/*"))[:100]
    labels = np.array([classes.index(f.parent.name) for f in files])
    x = np.stack([variant.preprocess(f) for f in files])
    probs = model.predict(x, batch_size=50, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    top1 = float(np.mean(probs.argmax(axis=1) == labels))
    assert top1 >= 0.70, top1
    # the same checkpoint refuses to go into the train-time form
    with pytest.raises(EdgeMobileError, match="cannot be un-fused"):
        mobileone_weights.load_weights(build_train_model("s0", input_shape=(SIZE, SIZE, 3)), path)
