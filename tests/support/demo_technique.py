"""A demonstration technique, registered at run time by tests/unit/quantization/test_quant_techniques.py: what
adding a technique takes (this file plus one ``registry.register`` line).

After the layer pass it counts the conv/dense layers of the folded model and the activation
ranges the pass chose (the statistic it declares), and leaves the model as it is (so it keeps
the float function, as it claims)."""

from __future__ import annotations

from edgemobile.quantization import graph
from edgemobile.quantization.techniques.base import Option, Statistic, Technique


def count_layers(context, options) -> dict:
    """The model step: how many conv/dense layers and activation ranges, and the note it was given."""
    return {"layers": len(graph.linear_layers(context.model)), "ranges": len(context.activation_ranges),
            "note": options["layer_census_note"]}


TECHNIQUE = Technique(
    name="layer_census",
    switch=Option("layer_census", default=True, off=False, flag="layer-census",
                  help="demonstration: count the conv/dense layers"),
    settings=(Option("layer_census_note", default="demo", flag="layer-census-note", help="a note recorded with it"),),
    describe=lambda options: "layer census",
    ablation_label="layer census",
    needs=frozenset({Statistic.ACTIVATION_RANGES}),
    after_layers=count_layers,
    keeps_float_function=True,
)
