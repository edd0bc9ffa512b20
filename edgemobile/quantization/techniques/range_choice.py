"""Activation-range choice as a technique: which [min, max] each int8 activation tensor gets
(``minmax``: the converter's own, i.e. the technique left out; ``percentile``; ``mse``).

The range math is :mod:`edgemobile.quantization.ranges`. The choice shapes the engine's int8
simulation (the layer pass quantizes each activation to the range the converter will use) and
reaches the converter as calibration statistics, through :func:`range_hook`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from edgemobile.progress import Progress
from edgemobile.quantization.ranges import RANGE_METHODS, apply_ranges
from edgemobile.quantization.techniques.base import ConverterContext, Option, Statistic, Technique


def range_hook(context: ConverterContext, options: Mapping[str, Any]) -> Callable[[bytes], bytes]:
    """The converter step: replaces the calibrated model's recorded min/max by the chosen
    ranges (measured on a replay of every calibration image) and records them in the report.

    Args:
        context: the replay, the report and the progress bar's total.
        options: this technique's options (``ranges``: the method).
    """
    method = options["ranges"]

    def hook(calibrated: bytes) -> bytes:
        start = time.perf_counter()
        # The replay of every calibration image: the calibration the user asked for, counted.
        bar = Progress(context.progress_total, f"calibrating ({method} ranges)") if context.progress_total else None
        out, rows = apply_ranges(calibrated, context.representative, method, progress=bar)
        if bar:
            bar.close()
        changed = [r for r in rows if tuple(np.round(r.calibrated, 6)) != tuple(np.round(r.chosen, 6))]
        context.report["ranges"] = {"method": method, "tensors": len(rows), "changed": len(changed),
                                    "changes": [r.as_dict() for r in changed],
                                    "seconds": round(time.perf_counter() - start, 2)}
        return out

    return hook


TECHNIQUE = Technique(
    name="ranges",
    switch=Option("ranges", default="mse", off="minmax", choices=RANGE_METHODS, flag="ranges", what="range method",
                  help="activation ranges: converter min/max, 99.99th percentile, or MSE-optimal clipping"),
    describe=lambda options: f"{options['ranges']} ranges",
    ablation_label="MSE ranges",
    needs=frozenset({Statistic.ACTIVATION_HISTOGRAMS}),
    range_method=lambda options: options["ranges"],
    converter_step=range_hook,
)
