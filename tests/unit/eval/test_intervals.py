"""The 95 % intervals and the exact McNemar test behind eval's and report's uncertainty, checked
against published worked examples and against independent computations written here."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from edgemobile.eval.evaluate import compare
from edgemobile.intervals import Z95, mcnemar, paired_difference, wilson


@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of
    # seven methods", Stat. Med. 17:857, Table II, method 3 (score, no continuity correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_published_values(k, n, low, high):
    assert wilson(k, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("k, n", [(1, 7), (13, 40), (350, 700), (699, 700), (36000, 50000)])
def test_wilson_ends_are_where_the_score_test_just_rejects(k, n):
    """Independently of the closed form: at each end p the score statistic |k - np| / sqrt(np(1-p))
    equals z, and the observed proportion lies between the ends."""
    low, high = wilson(k, n)
    for p in (low, high):
        assert abs(k - n * p) / math.sqrt(n * p * (1 - p)) == pytest.approx(Z95, rel=1e-9)
    assert low < k / n < high


def test_wilson_at_the_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10) == pytest.approx((1 - wilson(0, 10)[1], 1.0))  # symmetric
    with pytest.raises(ValueError):
        wilson(5, 4)


def test_paired_difference_matches_published_example():
    """Cavo et al. (2012), complete response before/after consolidation therapy, a = 59, b = 6,
    c = 16, d = 80: Newcombe's square-and-add interval -0.1186 to -0.0046 (Fagerland, Lydersen &
    Laake 2014, "Recommended tests and confidence intervals for paired binomial proportions",
    Stat. Med. 33:2850; their R package contingencytables reproduces it)."""
    assert paired_difference(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=5e-5)


@pytest.mark.parametrize("a, b, c, d", [(59, 6, 16, 80), (1, 1, 7, 12), (300, 4, 9, 387), (5, 0, 0, 7),
                                        (0, 3, 0, 0), (700, 0, 0, 0)])
def test_paired_difference_is_consistent(a, b, c, d):
    """It holds the estimate, stays in [-1, 1], flips with the pair's order, and is narrower than
    the unpaired interval (phi = 0) when the two outcomes agree on most items."""
    n = a + b + c + d
    low, high = paired_difference(a, b, c, d)
    assert -1 <= low <= (b - c) / n <= high <= 1
    assert paired_difference(a, c, b, d) == pytest.approx((-high, -low))
    if a * d - b * c > n / 2:  # positively correlated: the correction narrows the interval
        wide = _unpaired(a, b, c, d)
        assert high - low < wide[1] - wide[0]


def _unpaired(a, b, c, d):
    """The square-and-add interval with phi = 0 (as if the two proportions were independent)."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson(a + b, n), wilson(a + c, n)
    return p1 - p2 - math.hypot(p1 - l1, u2 - p2), p1 - p2 + math.hypot(p2 - l2, u1 - p1)


def _brute_force_binomial_p(b: int, c: int) -> float:
    """The two-sided exact binomial test as R's binom.test defines it, in exact fractions: the
    probability of every outcome no more likely than the one observed, under Binomial(b + c, 1/2)."""
    n = b + c
    pmf = [Fraction(math.comb(n, j), 2**n) for j in range(n + 1)]
    return float(min(Fraction(1), sum(p for p in pmf if p <= pmf[b])))


def test_mcnemar_matches_published_values():
    assert mcnemar(6, 16) == pytest.approx(0.052479, abs=5e-7)  # Cavo et al.: Fagerland et al. (2014)
    assert mcnemar(1, 7) == 18 / 256  # 2 * (C(8,0) + C(8,1)) / 2^8
    assert mcnemar(0, 0) == 1.0 and mcnemar(5, 5) == 1.0


@pytest.mark.parametrize("b, c", [(0, 1), (0, 4), (3, 6), (6, 3), (10, 30), (57, 40), (0, 60), (120, 121)])
def test_mcnemar_matches_brute_force(b, c):
    assert mcnemar(b, c) == pytest.approx(_brute_force_binomial_p(b, c), rel=1e-12)


def test_mcnemar_on_many_discordant_images():
    """Exact where the normal approximation is good: close to it (continuity-corrected), and no
    underflow or overflow at tens of thousands of images."""
    b, c = 4800, 5000
    z = (abs(b - c) - 1) / math.sqrt(b + c)
    assert mcnemar(b, c) == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.02)
    assert 0.0 <= mcnemar(0, 40000) < 1e-300


def test_compare_counts_the_paired_table():
    """compare() builds the table from the per-image top-1 hits: 3 images only the model gets
    right, 6 only the reference, 41 both, and the figures follow from those counts."""
    labels = np.zeros(60, dtype=np.int64)
    model_hit = np.array([1] * 41 + [1] * 3 + [0] * 6 + [0] * 10, bool)
    ref_hit = np.array([1] * 41 + [0] * 3 + [1] * 6 + [0] * 10, bool)
    model = np.where(model_hit[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    ref = np.where(ref_hit[:, None], [[0.8, 0.2]], [[0.3, 0.7]])
    c = compare(model, ref, labels)
    assert (c.top1_only_model, c.top1_only_reference) == (3, 6)
    assert c.top1_delta == pytest.approx(100 * (3 - 6) / 60)
    assert c.mcnemar_p == mcnemar(3, 6) and not c.significant
    assert c.top1_delta_ci95 == pytest.approx([100 * x for x in paired_difference(41, 3, 6, 10)], abs=1e-4)
    assert c.top1_agreement == pytest.approx(100 * 51 / 60)
    assert c.top1_agreement_ci95 == pytest.approx([100 * x for x in wilson(51, 60)], abs=1e-4)
