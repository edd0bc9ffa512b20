"""Quantization-aware fine-tuning as a technique: after the post-training techniques, the float
model distils itself into its int8 simulation on the calibration images (the training:
:mod:`edgemobile.quantization.finetune`), and the converter is handed exactly the activation
ranges the training used, so the TFLite model computes what was trained.

It is an after-layers model step (it needs the layer pass's activation ranges and the float
weights from before it) and a converter step that forces those ranges: each trained tensor is
found in the calibrated model by value (:mod:`edgemobile.quantization.tensor_map`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from edgemobile.quantization.exact_ranges import exact_minmax_hook
from edgemobile.quantization.finetune import finetune
from edgemobile.quantization.ranges import force_ranges
from edgemobile.quantization.techniques.base import ConverterContext, ModelContext, Option, Statistic, Technique
from edgemobile.quantization.tensor_map import keras_to_tflite

DEFAULT_EPOCHS = 12
LEARN_RANGES = True  # the activation ranges are trained with the weights (LSQ-style)
MATCH_IMAGES = 2  # images the Keras and calibrated models are run on to pair their tensors
_RANGES = "_trained_ranges"  # the report key the model step leaves for the converter step (not provenance)


def train_step(context: ModelContext, options: Mapping[str, Any]) -> dict:
    """The model step: fine-tune ``context.model`` in place; what it did, for provenance.

    Args:
        context: the folded model, the calibration images, the chosen ranges, the float weights.
        options: ``finetune_epochs``.
    """
    if not context.activation_ranges or context.float_weights is None:
        raise ValueError("the layer pass measured no activation ranges to train with")
    images = context.calibration_images if context.calibration_images is not None else context.images
    result = finetune(context.model, images, context.activation_ranges, context.float_weights, context.spec,
                      epochs=options["finetune_epochs"], learn_ranges=LEARN_RANGES, progress=context.progress)
    return {**result.as_dict(), "ranges": len(result.ranges), _RANGES: result.ranges}


def force_step(context: ConverterContext, options: Mapping[str, Any]) -> Callable[[bytes], bytes]:
    """The converter step: the calibrated model's statistics set to the trained ranges.

    Args:
        context: the report (the model step's result) and the Keras model.
        options: unused.
    """
    def hook(calibrated: bytes) -> bytes:
        if "ranges" not in context.report:  # no range choice measured the statistics: exact min/max, as without us
            calibrated = exact_minmax_hook(context.representative)(calibrated)
        done = context.report.get("finetune")
        if not isinstance(done, dict) or _RANGES not in done:
            return calibrated  # the model step was dropped: the other steps' ranges stand
        ranges = done.pop(_RANGES)
        if done["best_epoch"] == 0:  # the post-training model was kept: so are its ranges (the default model)
            done["forced_ranges"] = 0
            return calibrated
        images = next(iter(context.representative()))[0][:MATCH_IMAGES]
        found = keras_to_tflite(context.model, calibrated, images, ranges)
        done["forced_ranges"] = len(found)
        done["unmatched_ranges"] = sorted(set(ranges) - set(found))
        return force_ranges(calibrated, {found[name]: ranges[name] for name in found})

    return hook


TECHNIQUE = Technique(
    name="finetune",
    switch=Option("finetune", default=True, off=False, flag="finetune",
                  help="quantization-aware fine-tuning: the float model distils itself into its int8 "
                       "simulation on the calibration images (a held-apart slice picks the epoch)"),
    settings=(Option("finetune_epochs", default=DEFAULT_EPOCHS, minimum=1, flag="finetune-epochs",
                     what="fine-tuning epochs", help="passes over the calibration images"),),
    describe=lambda options: f"fine-tuning ({options['finetune_epochs']} epochs)",
    ablation_label="fine-tuning",
    needs=frozenset({Statistic.ACTIVATION_RANGES}),
    after_layers=train_step,
    converter_step=force_step,
)
