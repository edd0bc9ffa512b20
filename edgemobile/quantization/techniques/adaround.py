"""AdaRound as a technique: every conv/dense kernel's weights rounded up or down on the
converter's int8 grid so that the layer's output on the calibration images changes least (the
math: :mod:`edgemobile.quantization.rounding`).

It is a kernel step: each layer is rounded from its float input-patch moments alone, so the
engine runs it on a second thread ahead of the int8 stream. The objective uses centred
moments when bias correction runs after it (that removes the mean), raw second moments
otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping

from edgemobile.quantization.rounding import DEFAULT_ITERATIONS, adaround_with
from edgemobile.quantization.techniques.base import LayerContext, Option, Statistic, Technique


def round_step(context: LayerContext, options: Mapping[str, Any]) -> dict:
    """The technique's kernel step: AdaRound the layer in place; its errors and flips.

    Args:
        context: the layer and its patch moments.
        options: ``adaround_iterations``.
    """
    covariance = context.moments.covariance(centered=context.recipe.includes("bias_correction"))
    return adaround_with(context.layer, covariance, options["adaround_iterations"]).as_dict()


TECHNIQUE = Technique(
    name="adaround",
    switch=Option("adaround", default=True, off=False, flag="adaround", help="AdaRound: learned weight rounding"),
    settings=(Option("adaround_iterations", default=DEFAULT_ITERATIONS, minimum=1, what="AdaRound iterations",
                     help="optimisation steps per layer"),),
    describe=lambda options: "AdaRound",
    ablation_label="AdaRound",
    needs=frozenset({Statistic.PATCH_MOMENTS}),
    kernel_step=round_step,
)
