"""Converting to an accuracy target: ops named by their Keras layers, layers kept float on
XNNPACK, and the escalation from post-training through fine-tuning to selective precision."""

from __future__ import annotations

import numpy as np
import pytest

from support.quant_models import images, tiny_model

pytest.importorskip("tensorflow")

from edgemobile.errors import EdgeMobileError  # noqa: E402
from edgemobile.quantization import target as target_module  # noqa: E402
from edgemobile.quantization.integer_check import require_integer_only  # noqa: E402
from edgemobile.quantization.keras_layers import (  # noqa: E402
    float_tensors,
    model_layers,
    require_layers,
    resolve,
)
from edgemobile.quantization.pipeline import convert_full_integer  # noqa: E402
from edgemobile.quantization.layer_sensitivity import Conversion  # noqa: E402
from edgemobile.quantization.target import (  # noqa: E402
    HeldApart,
    Target,
    TargetMissed,
    search,
)
from edgemobile.quantization.techniques.recipe import PLAIN  # noqa: E402
from edgemobile.runtime.delegation import model_delegation  # noqa: E402
from edgemobile.runtime.interpreter import TFLiteClassifier, model_ops  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def converted():
    model = tiny_model(0, softmax_in_dense=False, size=SIZE)
    x = images(64, size=SIZE)
    done = convert_full_integer(model, "int8", x, PLAIN, progress=False)
    return model, x, done, model_layers(done.model, done.calibrated, x, model)


def test_ops_are_named_by_their_keras_layers(converted):
    _, _, _, layers = converted
    assert [layer.name for layer in layers] == ["conv", "dw", "pw", "gap", "fc"]
    by_name = {layer.name: layer for layer in layers}
    assert {"conv_bn", "conv_relu"} <= set(by_name["conv"].fused)  # BatchNorm and activation fused into the op
    assert "pad" in by_name["dw"].fused
    assert by_name["fc"].op == "FULLY_CONNECTED+SOFTMAX"  # the logits layer takes its softmax along


def test_a_layer_kept_float_is_the_only_float_op_and_xnnpack_still_runs_everything(converted):
    _, x, done, layers = converted
    pw = resolve(["pw_bn"], layers, [], "tiny")  # a BatchNorm names the conv it was folded into
    assert [layer.name for layer in pw] == ["pw"]
    model = done.keeping_float(float_tensors(pw))
    classifier = TFLiteClassifier(model)
    details = {d["index"]: d for d in classifier.interpreter.get_tensor_details()}
    float_ops = [op["op_name"] for op in model_ops(classifier.interpreter)
                 if np.dtype(details[int(op["outputs"][0])]["dtype"]) == np.float32]
    assert float_ops == ["DEQUANTIZE", "CONV_2D"]
    require_integer_only(classifier, kept_float=float_tensors(pw))
    with pytest.raises(EdgeMobileError, match="not all-integer"):
        require_integer_only(classifier)
    assert classifier.input.dtype == np.int8 and classifier.output.dtype == np.int8
    kept, plain = model_delegation(model), model_delegation(done.tflite)
    assert len(kept.slow_fallback) == len(plain.slow_fallback) == 0
    assert len(kept.delegated) == len(plain.delegated) + 2  # the DEQUANTIZE and QUANTIZE around it too


def test_a_logits_layer_kept_float_keeps_its_softmax_and_passes_the_integer_check(converted):
    _, _, done, layers = converted
    fc = resolve(["fc"], layers, [], "tiny")
    classifier = TFLiteClassifier(done.keeping_float(float_tensors(fc)))
    assert classifier.output.dtype == np.int8
    ops = [op["op_name"] for op in classifier.graph_ops()]
    assert ops[-3:] == ["FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"]  # the logits never rounded onto an int8 grid
    require_integer_only(classifier, kept_float=float_tensors(fc))
    with pytest.raises(EdgeMobileError, match="not all-integer"):
        require_integer_only(classifier, kept_float=float_tensors(resolve(["pw"], layers, [], "tiny")))


def test_a_layer_kept_float_computes_with_the_float_weights():
    """Bias correction and AdaRound shape the converted weights for int8 arithmetic: a layer
    kept float gets the float model's weights back (the other layers keep theirs)."""
    model = tiny_model(0, softmax_in_dense=False, size=SIZE)
    x = images(64, size=SIZE)
    done = convert_full_integer(model, "int8", x, PLAIN.replace(bias_correction=True, adaround=True), progress=False)
    layers = model_layers(done.model, done.calibrated, x, model)
    pw = resolve(["pw"], layers, [], "tiny")
    kept = TFLiteClassifier(done.keeping_float(float_tensors(pw))).interpreter
    reference = TFLiteClassifier(done.float_tflite()).interpreter

    def constants(interpreter, op_name, dtype):
        ops = [op for op in model_ops(interpreter) if op["op_name"] == op_name]
        return [interpreter.get_tensor(int(t)) for op in ops for t in op["inputs"][1:]
                if interpreter.get_tensor_details()[int(t)]["dtype"] == dtype]

    float_conv = constants(kept, "CONV_2D", np.float32)  # pw's filter and bias: the only float constants of a conv
    reference_pw = constants(reference, "CONV_2D", np.float32)[2:]  # conv, then pw
    assert len(float_conv) == 2 and all(np.array_equal(a, b) for a, b in zip(float_conv, reference_pw))
    calibrated_pw = constants(TFLiteClassifier(done.ranged).interpreter, "CONV_2D", np.float32)[2:]
    assert not np.array_equal(calibrated_pw[1], reference_pw[1])  # bias correction had moved pw's bias


def test_an_unknown_layer_name_is_one_line_naming_the_nearest(converted):
    model, _, _, layers = converted
    with pytest.raises(EdgeMobileError) as error:
        require_layers(["pw_rel"], [layer.name for layer in model.layers], "tiny")
    message = str(error.value)
    assert "\n" not in message and "--keep-float pw_rel: no such layer in tiny; nearest: pw_relu" in message
    with pytest.raises(EdgeMobileError, match="only moves data"):
        resolve(["softmax"], [layer for layer in layers if layer.name != "fc"], ["softmax"], "tiny")


def _outlier_model(seed: int = 0):
    """The tiny model with an outlier channel (one conv channel near 60 that nothing downstream
    reads, through unbounded ReLUs) crushing the int8 grids of the conv and dw outputs, and
    200 classes whose logits lie close together: int8 changes the top-1 of many images, and
    only keeping layers float with their outputs recovers it."""
    import keras

    model = tiny_model(seed, relu6=False, softmax_in_dense=False, size=SIZE)
    gamma, beta, mean, variance = model.get_layer("conv_bn").get_weights()
    beta[0] = 60.0
    model.get_layer("conv_bn").set_weights([gamma, beta, mean, variance])
    kernel, *rest = model.get_layer("pw").get_weights()
    kernel[:, :, 0, :] = 0.0
    model.get_layer("pw").set_weights([kernel, *rest])
    x = keras.layers.Dense(200, name="fc200", kernel_initializer=keras.initializers.RandomNormal(stddev=0.3,
                                                                                              seed=seed))(
        model.get_layer("gap").output)
    return keras.Model(model.input, keras.layers.Activation("softmax", name="softmax200")(x))


def _search(monkeypatch, target: Target, finetuned_already: bool = False, fallback=None):
    """The search on :func:`_outlier_model`, converting with PLAIN (and 1 epoch of fine-tuning);
    the conversions asked for are recorded."""
    model = _outlier_model()
    x = images(160, size=SIZE)
    asked = []

    def convert(finetune: bool) -> Conversion:
        asked.append(finetune)
        recipe = PLAIN.replace(finetune=True, finetune_epochs=1) if finetune else PLAIN
        done = convert_full_integer(model, "int8", x[:96], recipe, progress=False)
        return Conversion(done, model_layers(done.model, done.calibrated, x[:96], model))

    if fallback is not None:
        monkeypatch.setattr(target_module, "_slow_fallback", fallback)
    held = HeldApart(x[96:], None, "held-apart images")
    found = search(convert, finetuned_already, target, held, x[:32], None, progress=False)
    return found, asked


def test_the_escalation_order_stops_at_the_first_candidate_that_meets_the_target(monkeypatch):
    found, asked = _search(monkeypatch, Target(min_agreement=1.0))
    names = [c.name for c in found.candidates]
    assert names[:2] == ["post-training", "+ fine-tuning"] and asked == [False, True]
    base = "post-training"  # not the fine-tuned model, whichever agrees more
    selective = found.candidates[2:]
    ks = [len(c.kept_float) for c in selective]
    assert selective and names[2:] == [f"{base}, {k} layer{'s' if k > 1 else ''} float" for k in ks]
    doubled = next(n for n, c in enumerate(selective, 1) if c.meets)  # k = 1, 2, 4, … until one meets it
    assert ks[:doubled] == target_module._doublings(len(found.sensitivity["layers"]))[:doubled]
    assert not any(c.meets for c in found.candidates[:doubled + 1])  # it went on only while none met it
    met, missed = ks[doubled - 1], ks[doubled - 2] if doubled > 1 else 0
    for c in selective[doubled:]:  # then bisected between the last k that missed and the first that met
        assert missed < len(c.kept_float) < met
    fewest = min(len(c.kept_float) for c in selective if c.meets)
    assert all(c.meets == (len(c.kept_float) >= fewest) for c in selective[doubled - 1:])
    assert found.chosen.meets and found.chosen.measured.rate == 1.0
    cost = {row["layer"]: row["error_added"] for row in found.sensitivity["layers"]}
    ranked = sorted(cost, key=lambda name: -cost[name])
    for c in selective:  # the k layers whose int8 costs most
        assert {layer.name for layer in c.kept_float} == set(ranked[:len(c.kept_float)])
    for c in found.candidates:
        assert c.latency_ms > 0 and c.float_ms > 0 and c.measured.images == 64


def test_a_met_target_stops_at_post_training_and_fine_tuning_is_not_repeated(monkeypatch):
    found, asked = _search(monkeypatch, Target(min_agreement=0.01), finetuned_already=True)
    assert asked == [False] and [c.name for c in found.candidates] == ["post-training + fine-tuning"]
    assert found.chosen is found.candidates[0] and found.require_chosen() is found.chosen


def test_candidates_xnnpack_would_not_run_are_refused(monkeypatch):
    """A layer kept float that pushed ops to the builtin kernels makes no candidate (here the
    delegation is faked to say so; the real check on a kept-float model is above)."""
    def fallback(tflite: bytes):
        ops = TFLiteClassifier(tflite).graph_ops()
        return 3 if any(op["op_name"] == "DEQUANTIZE" for op in ops) else 0  # a layer kept float

    found, _ = _search(monkeypatch, Target(min_agreement=1.0), fallback=fallback)
    selective = found.candidates[2:]
    assert selective and all(c.refused and "3 more ops to builtin kernels" in c.refused for c in selective)
    assert all(c.measured is None and not c.meets for c in selective) and found.chosen is None
    with pytest.raises(TargetMissed) as missed:
        found.require_chosen()
    assert "closest: " in str(missed.value) and "\n" not in str(missed.value)
    assert "not a candidate" in found.table()


def test_all_integer_keeps_no_layer_float_and_names_the_closest(monkeypatch):
    found, _ = _search(monkeypatch, Target(min_agreement=1.0, all_integer=True))
    assert [c.name for c in found.candidates] == ["post-training", "+ fine-tuning"]
    assert found.skipped == ["layers kept float (--all-integer)"]
    if found.chosen is None:
        with pytest.raises(TargetMissed, match=r"no candidate reaches agreement ≥ 100 % \(all-integer\) on 64 held-apart images; "
                                               r"closest: (post-training|\+ fine-tuning), agreement"):
            found.require_chosen()


def test_the_fastest_candidate_wins_and_timing_noise_goes_to_the_fewest_float_layers():
    from edgemobile.quantization.keras_layers import Layer
    from edgemobile.quantization.target import Candidate, fastest

    def candidate(name, latency, floats):
        layers = tuple(Layer(f"l{k}", (f"l{k}",), "CONV_2D", (f"t{k}",)) for k in range(floats))
        return Candidate(name, b"", layers, latency_ms=latency, float_ms=1.0)

    integer, two, ten = candidate("int8", 1.00, 0), candidate("2 float", 0.97, 2), candidate("10 float", 0.60, 10)
    assert fastest([integer, two]) is integer  # 3 % apart: noise, and it keeps no layer float
    assert fastest([integer, two, ten]) is ten  # 40 % faster is not noise
    assert fastest([]) is None


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs --min-agreement A and/or --max-drop D"),
    ({"min_agreement": 0.0}, "give a fraction in (0, 1]"),
    ({"max_drop": 1.5}, "give a fraction in [0, 1)"),
])
def test_bad_targets_are_one_line_errors(kwargs, message):
    with pytest.raises(EdgeMobileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Target(**kwargs)


def test_convert_to_a_target_holds_calibration_images_apart_and_records_the_choice(tmp_path):
    """The API end to end on a small random MobileNet: 20 % of the calibration images measure
    the candidates (their synset folders give labels, so top-1 and its drop too); the choice
    and its table are in the provenance; --max-drop on images of other classes is refused."""
    import edgemobile as em
    from support.images import write_images

    synsets = ["n01440764", "n01443537", "n01484850", "n01491361"]
    calib = write_images(tmp_path / "calib", synsets, per_class=20)
    small = dict(alpha=0.25, resolution=128, weights="none", progress=False)
    converted = em.convert("mobilenet", "int8", calibration=calib, num_calibration=80, min_agreement=0.01,
                           techniques="plain", **small)
    search = converted.search
    assert [c.name for c in search.candidates] == ["post-training"] and search.chosen is search.candidates[0]
    assert search.images == 16 and search.source == "held-apart calibration images"
    assert search.candidates[0].measured.top1 is not None  # labeled by their synset folders
    provenance = converted.provenance
    assert provenance["calibration"]["images"] == 80 and provenance["calibration"]["held_apart"] == 16
    assert provenance["accuracy_target"]["chosen"] == "post-training"
    assert provenance["accuracy_target"]["candidates"][0]["latency_ms"] > 0
    assert "top-1 %" in search.table() and "chosen" in search.table()

    other = write_images(tmp_path / "flowers", ["daisy", "tulip"], per_class=40)
    with pytest.raises(EdgeMobileError, match="--max-drop needs labeled images"):
        em.convert("mobilenet", "int8", calibration=other, num_calibration=80, max_drop=0.01, techniques="plain",
                   **small)
    with pytest.raises(EdgeMobileError, match="give --num-calibration 80 or more"):
        em.convert("mobilenet", "int8", calibration=calib, num_calibration=40, min_agreement=0.5, **small)
