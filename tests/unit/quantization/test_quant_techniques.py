"""Every registered technique through the same contract — it runs on a small model, keeps the
float function where it claims to, and is recorded in the report provenance is made from — and
a technique registered at run time (tests/support/demo_technique.py) appearing in the CLI flags, the
ablation rows, the API's ``techniques=`` and provenance with no other change."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("keras")

from edgemobile.quantization import graph, guards
from edgemobile.quantization.engine import prepare
from edgemobile.quantization.pipeline import convert_full_integer
from edgemobile.quantization.techniques import registry
from edgemobile.quantization.techniques.base import Statistic
from edgemobile.quantization.techniques.recipe import DEFAULT, PLAIN, Recipe, ablation_recipes, configure, recipe_from
from support import demo_technique
from support.images import write_images
from support.quant_models import images, tiny_model


QUICK = {"adaround_iterations": 20, "finetune_epochs": 1}  # a small model needs few steps


def quick_recipe(name: str) -> Recipe:
    technique = registry.get(name)
    settings = {field: value for field, value in QUICK.items() if field in {o.field for o in technique.options}}
    return Recipe.of(configure(name, **settings))


@pytest.fixture
def demo():
    registry.register(demo_technique.TECHNIQUE)
    yield demo_technique.TECHNIQUE
    registry.unregister(demo_technique.TECHNIQUE.name)


@pytest.fixture(params=[t.name for t in registry.registered()] + [demo_technique.TECHNIQUE.name])
def technique(request):
    """Every registered technique, and the demonstration one (registered for the test)."""
    if request.param == demo_technique.TECHNIQUE.name:
        registry.register(demo_technique.TECHNIQUE)
        yield demo_technique.TECHNIQUE
        registry.unregister(demo_technique.TECHNIQUE.name)
    else:
        yield registry.get(request.param)


def test_every_technique_runs_keeps_the_float_function_and_is_recorded(technique):
    from edgemobile.api import quiet_keras

    x = images(40, size=16)
    model = tiny_model(size=16)
    recipe = quick_recipe(technique.name)
    with quiet_keras():
        done = convert_full_integer(model, "int8", x, recipe, progress=False)
    assert done.tflite[4:8] == b"TFL3"
    report = done.report  # provenance records its techniques, options, seconds and skipped
    assert report["techniques"] == recipe.label() == technique.describe(recipe.steps[0].settings())
    assert report["options"] == recipe.as_dict()
    assert report["options"][technique.switch.field] == technique.switch.default
    assert not any(note.startswith(technique.describe(recipe.steps[0].settings()) + ":")
                   for note in report.get("skipped", [])), report.get("skipped")
    if technique.before_layers is not None or technique.after_layers is not None:
        assert technique.name in report  # a model step records what it did
    if Statistic.ACTIVATION_RANGES in technique.needs and technique.after_layers is not None:
        assert report[technique.name]["ranges"] > 0  # a step after the layer pass sees the chosen ranges
    if technique.layer_steps:
        assert len(report["layers"]) == len(graph.linear_layers(graph.fold_batchnorm(model)))
    if technique.converter_step is not None:
        assert technique.name in report
    if technique.keeps_float_function:
        prepared = prepare(model, x, recipe, progress=False)
        same, err = guards.FloatCheck(model, x).keeps(prepared.model)
        assert same, err


def test_recipe_flat_form_round_trips():
    assert PLAIN.as_dict()["ranges"] == "minmax" and PLAIN.label() == "plain converter (min/max)"
    assert Recipe.from_fields(DEFAULT.as_dict()) == DEFAULT
    assert DEFAULT.replace(adaround=False).label() == "mse ranges + equalization + bias correction"
    assert DEFAULT.replace(ranges="minmax").ranges == "minmax"
    together = DEFAULT.replace(finetune=True)  # fine-tuning is not in the default recipe: "all" adds it
    assert [label for label, _ in ablation_recipes(DEFAULT)] == [
        "plain converter", "MSE ranges", "equalization", "bias correction", "AdaRound", "fine-tuning",
        f"default ({DEFAULT.label()})", f"all ({together.label()})"]
    assert ablation_recipes(together)[-1][1] == together  # every technique already on: no separate "all" row


def test_api_techniques_forms():  # what the API's techniques= goes through
    from edgemobile.errors import EdgeMobileError

    assert recipe_from(None) == DEFAULT and recipe_from("plain") == PLAIN
    assert recipe_from({"adaround": False}) == DEFAULT.replace(adaround=False)
    assert recipe_from(["equalization", "ranges"]).label() == "equalization + mse ranges"
    assert recipe_from(DEFAULT) is DEFAULT
    with pytest.raises(EdgeMobileError, match="unknown technique option"):
        recipe_from({"adaroun": False})
    with pytest.raises(EdgeMobileError, match="unknown range method"):
        recipe_from({"ranges": "max"})


def test_a_registered_technique_reaches_flags_ablation_api_and_provenance(demo, tmp_path):
    import edgemobile as em
    from edgemobile.cli.arguments import add_technique_flags, options_from_args
    from edgemobile.metadata import read_metadata

    parser = argparse.ArgumentParser()
    add_technique_flags(parser)
    assert "--layer-census" in parser.format_help() and "--no-layer-census" in parser.format_help()
    chosen = options_from_args(parser.parse_args(["--plain", "--layer-census", "--layer-census-note", "hi"]))
    assert chosen.label() == "layer census" and chosen.layer_census_note == "hi"
    assert not options_from_args(parser.parse_args([])).includes("layer_census")  # not in the default recipe
    assert ("layer census", Recipe.of("layer_census")) in ablation_recipes(DEFAULT)
    assert ablation_recipes(DEFAULT)[-1][1].includes("layer_census")  # "all" runs it

    tiny_model().save(tmp_path / "plain.keras")  # 10 classes, 16×16 input
    train = write_images(tmp_path / "train", [f"class{k}" for k in range(10)], per_class=2, size=16)
    result = em.convert(tmp_path / "plain.keras", "int8", calibration=train, preprocess="mobilenet",
                        techniques={"layer_census": True, "adaround_iterations": 20}, progress=False)
    quantization = read_metadata(result.tflite).extra["provenance"]["quantization"]
    assert quantization["techniques"].endswith(" + layer census")
    assert quantization["options"]["layer_census"] is True and quantization["options"]["layer_census_note"] == "demo"
