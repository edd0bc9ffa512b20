"""Quantization-aware fine-tuning: the TFLite model computes what was trained, and training
moves the int8 model's answers towards float's."""

from __future__ import annotations

import numpy as np
import pytest

from support.quant_models import images, tiny_model

pytest.importorskip("tensorflow")

from edgemobile.quantization import finetune as training  # noqa: E402
from edgemobile.quantization import simulate  # noqa: E402
from edgemobile.quantization.pipeline import convert_full_integer  # noqa: E402
from edgemobile.quantization.ranges import tensor_range  # noqa: E402
from edgemobile.quantization.techniques import finetune as technique  # noqa: E402
from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN  # noqa: E402
from edgemobile.runtime.interpreter import TFLiteClassifier  # noqa: E402


def _spy(monkeypatch, **settings) -> list:
    """The fine-tuning results of the conversions that follow (``settings`` passed to it)."""
    results = []

    def spied(*args, **kwargs):
        result = training.finetune(*args, **kwargs, **settings)
        results.append(result)
        return result

    monkeypatch.setattr(technique, "finetune", spied)
    return results


def _logits_model(seed: int = 0):
    """The tiny classifier without its softmax: its int8 output step is the logits' own."""
    import keras

    model = tiny_model(seed, softmax_in_dense=False, size=32)
    return keras.Model(model.input, model.get_layer("fc").output)


@pytest.mark.parametrize("learn_ranges", [True, False])
def test_the_tflite_model_computes_what_was_trained(monkeypatch, learn_ranges):
    results = _spy(monkeypatch, keep_last=True)  # a tiny random model has little to gain: keep what was trained
    monkeypatch.setattr(technique, "LEARN_RANGES", learn_ranges)
    x = images(96, size=32)
    done = convert_full_integer(_logits_model(), "int8", x, DEFAULT.replace(finetune=True, finetune_epochs=2),
                                progress=False)
    (result,) = results
    report = done.report["finetune"]
    assert result.best_epoch > 0
    assert report["forced_ranges"] == len(result.ranges) > 0 and report["unmatched_ranges"] == []
    assert "_trained_ranges" not in report  # what provenance records is plain data

    tflite = TFLiteClassifier(done.tflite)
    real = np.stack([tflite.run(xi) for xi in x[:48]])
    lo, hi = tensor_range(x, "minmax")
    sim = np.asarray(training.QuantizedForward(done.model, result.ranges)(simulate.device_input(x[:48], lo, hi)))
    step = float(tflite.output.scale)
    assert np.max(np.abs(sim - real)) <= step * 1.001
    assert np.mean(np.abs(sim - real) > step / 2) < 0.02  # off by one step only where a rounding tie flips


def test_fine_tuning_that_gains_nothing_leaves_the_default_model(monkeypatch):
    results = _spy(monkeypatch, learning_rate=0.0, range_learning_rate=0.0)
    x, model = images(80, size=32), _logits_model(2)
    tuned = convert_full_integer(model, "int8", x, DEFAULT.replace(finetune=True, finetune_epochs=1), progress=False)
    assert results[0].best_epoch == 0 and tuned.report["finetune"]["forced_ranges"] == 0
    assert tuned.tflite == convert_full_integer(model, "int8", x, DEFAULT, progress=False).tflite


def test_kernels_end_on_the_converters_grid(monkeypatch):
    from edgemobile.quantization import graph

    _spy(monkeypatch, keep_last=True)
    done = convert_full_integer(_logits_model(1), "int8", images(80, size=32),
                                PLAIN.replace(finetune=True, finetune_epochs=1), progress=False)
    for layer in graph.linear_layers(done.model):
        rows = layer.rows()
        assert np.array_equal(graph.quantize_rows(rows), rows), layer.name


def test_fine_tuning_raises_held_apart_agreement(shared, monkeypatch):
    """MobileNetV1 α0.25 at 128 px from the plain converter's starting point (min/max ranges,
    nearest rounding): distillation must win held-apart images back."""
    from edgemobile.networks.zoo import resolve
    from edgemobile.quantization.convert import CalibrationSet
    from edgemobile.quantization.pipeline import load_images

    results = _spy(monkeypatch)
    variant = resolve("mobilenet_v1", alpha=0.25, resolution=128)
    model = variant.build(shared / "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5")
    calibration = CalibrationSet.from_folder(shared / "imagenet/calib", 320, 0)
    x = load_images(calibration.paths, variant.preprocess, progress=False)
    convert_full_integer(model, "int8", x, PLAIN.replace(finetune=True, finetune_epochs=3), progress=False,
                         spec=variant.preprocess)
    (result,) = results
    first, best = result.history[0], result.history[result.best_epoch]
    assert result.best_epoch > 0
    assert best["held_apart_kl"] < 0.7 * first["held_apart_kl"]
    assert result.agreement_after > result.agreement_before
