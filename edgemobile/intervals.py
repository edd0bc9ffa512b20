"""How sure a measured accuracy is: 95 % intervals and the exact McNemar test (``math`` only).

On a few hundred images one image moves top-1 by a few tenths of a point, so a figure needs its
interval before two of them can be compared:

- :func:`wilson` — the Wilson score interval of one proportion (top-1, top-5, top-1 agreement).
- :func:`paired_difference` — the interval of the difference of two proportions measured on
  the *same* images (model top-1 minus reference top-1): Newcombe's hybrid score interval for
  paired data, method 10 of Newcombe (1998), "Improved confidence intervals for the difference
  between binomial proportions based on paired data", Stat. Med. 17:2635-2650. It combines
  the Wilson intervals of the two proportions, corrected for their correlation (phi).
- :func:`mcnemar` — the exact McNemar test of that difference: only the discordant images
  count (``b`` right only for the model, ``c`` right only for the reference), and under "no
  difference" each is equally likely to fall either way, so ``b ~ Binomial(b + c, 1/2)``;
  the p-value is the exact two-sided binomial tail.

The runtime install has no SciPy; everything here is closed-form or an exact integer sum.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile: two-sided 95 %


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """(low, high), proportions in [0, 1]: the Wilson score interval of ``successes/trials`` —
    every p the score test at level ``z`` does not reject. No trials: (0, 1), nothing is known."""
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    if trials == 0:
        return 0.0, 1.0
    n, p = trials, successes / trials
    z2 = z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # The exact ends at 0 and n (float rounding would leave 1e-17 past them).
    low = 0.0 if successes == 0 else max(0.0, center - half)
    return low, 1.0 if successes == trials else min(1.0, center + half)


def paired_difference(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) of ``p1 - p2 = (b - c) / n`` for paired outcomes, Newcombe (1998) method 10.

    The 2x2 table of the same n items judged twice: ``a`` right both times, ``b`` right only the
    first time (p1's side), ``c`` right only the second time, ``d`` wrong both times. With
    Wilson intervals (l1, u1) of p1 = (a+b)/n and (l2, u2) of p2 = (a+c)/n and phi the
    correlation of the two outcomes,
    ``low = D - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)`` and
    ``high = D + sqrt((p2-l2)^2 - 2 phi (p2-l2)(u1-p1) + (u1-p1)^2)``.
    As in the paper phi's numerator ad - bc is lowered by n/2 when positive (0 if that crosses
    zero), and phi is 0 when a margin is empty."""
    n = a + b + c + d
    if min(a, b, c, d) < 0:
        raise ValueError(f"negative count in the paired table {a, b, c, d}")
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    phi = 0.0 if margins == 0 else (max(cross - n / 2, 0.0) if cross > 0 else cross) / math.sqrt(margins)
    diff = p1 - p2
    low = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return max(-1.0, low), min(1.0, high)


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of ``b`` vs ``c`` discordant pairs: twice the smaller
    binomial tail of ``Binomial(b + c, 1/2)``, at most 1; 1 when there is no discordant pair."""
    if b < 0 or c < 0:
        raise ValueError(f"negative discordant counts {b}, {c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    # The tail as an exact integer (C(n, 0) + … + C(n, k)) divided by 2^n: no rounding until
    # the one division, no underflow for tens of thousands of images.
    term, tail = 1, 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)
