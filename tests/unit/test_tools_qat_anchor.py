"""tools/accuracy_table.py --qat-anchor's verdict: two int8 models' agreement with the float
model compared image by image (no data, no TensorFlow)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from support.paths import ROOT


@pytest.fixture(scope="module")
def accuracy_table():
    spec = importlib.util.spec_from_file_location("accuracy_table", ROOT / "tools" / "accuracy_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_hot(top1: list[int], classes: int = 5) -> np.ndarray:
    probs = np.full((len(top1), classes), 0.1 / (classes - 1), np.float32)
    probs[np.arange(len(top1)), top1] = 0.9
    return probs


def test_paired_agreements_is_the_difference_of_the_two_agreements(accuracy_table):
    reference = _one_hot([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    ours = _one_hot([0, 1, 2, 3, 4, 0, 1, 2, 0, 0])  # agrees on 8 images
    google = _one_hot([0, 1, 2, 0, 0, 1, 2, 2, 3, 4])  # agrees on 6 images; only it agrees on the last two
    paired = accuracy_table.paired_agreements(ours, google, reference)
    assert paired.top1_delta == pytest.approx(80.0 - 60.0)
    assert (paired.top1_only_model, paired.top1_only_reference) == (4, 2)
    assert paired.top1_delta_ci95[0] < paired.top1_delta < paired.top1_delta_ci95[1]
    assert paired.mcnemar_p == pytest.approx(0.6875)  # exact two-sided binomial, 4 against 2


@pytest.mark.parametrize("delta, p, verdict", [(2.0, 0.01, "yes"), (-2.0, 0.01, "no"), (2.0, 0.2, "not significantly"),
                                               (0.0, 1.0, "not significantly")])
def test_agrees_more_needs_a_significant_difference(accuracy_table, delta, p, verdict):
    assert accuracy_table.agrees_more(delta, p) == verdict
