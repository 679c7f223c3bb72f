"""Ratios of paired measurements with their spread, and the verdict they allow.

A row of the benchmark measures ours and the reference in alternation, each in a fresh
process: pair ``i`` is ``(ours[i], reference[i])``, measured next to each other. A ratio per
pair removes what the machine did in that minute from the comparison; what is left varies from
pair to pair, and the row's ratio is the median of the pairs' ratios with a distribution-free
interval for that median:

- the interval ``[r(k), r(n+1-k)]`` between two order statistics of the ``n`` sorted ratios
  contains the median of the ratios' distribution with probability
  ``1 - 2 * P(Binomial(n, 1/2) <= k - 1)`` (the sign test), whatever that distribution is,
  as long as the pairs are independent; ``k`` is the largest with at least 90 % coverage.
  With 5 or 6 pairs that is the pairs' min–max (93.8 % / 96.9 %), with 10 pairs the second
  smallest to the second largest (97.9 %), with 4 or fewer no interval reaches 90 % (min–max:
  87.5 % with 4) and the coverage is reported;
- a bootstrap of the median over 5 pairs can only return the observed ratios and covers the
  median less often than it claims, so it is not used.

The verdict compares the interval with the target: ``PASS`` when it lies at or above it,
``FAIL`` when it lies below it, ``UNDECIDED: noise`` when it straddles it.
"""
import math
import statistics
from typing import Sequence, Tuple

CONFIDENCE = 0.90
PASS, FAIL, UNDECIDED = 'PASS', 'FAIL', 'UNDECIDED: noise'


def median_coverage(n: int, k: int) -> float:
    """Probability that ``[x(k), x(n+1-k)]`` of ``n`` independent draws holds their median."""
    below = sum(math.comb(n, i) for i in range(k)) / 2**n
    return max(0.0, 1 - 2 * below)


def median_interval(values: Sequence[float],
                    confidence: float = CONFIDENCE) -> Tuple[float, float, float]:
    """``(low, high, coverage)``: the narrowest order-statistic interval of ``values`` that
    holds their distribution's median with at least ``confidence`` (min–max, with the
    coverage it has, when even that falls short)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError('No values: at least one pair is needed.')
    n, k = len(ordered), 1
    while k < (n + 1) // 2 and median_coverage(n, k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], median_coverage(n, k)


def paired_ratios(ours: Sequence[float], reference: Sequence[float]) -> dict:
    """Throughputs of ours and the reference, pair by pair → the pairs' ratios (ours /
    reference), their median and its interval (``low``, ``high``, ``coverage``)."""
    if len(ours) != len(reference) or not ours:
        raise ValueError(f'Paired measurements differ in number: {len(ours)} ours, '
                         f'{len(reference)} reference.')
    ratios = [a / b for a, b in zip(ours, reference)]
    low, high, coverage = median_interval(ratios)
    return dict(ratio=statistics.median(ratios), low=low, high=high, coverage=coverage,
                pair_ratios=ratios)


def verdict(low: float, high: float, target: float) -> str:
    """``PASS`` (the interval lies at or above ``target``), ``FAIL`` (below it) or
    ``UNDECIDED: noise`` (it straddles it)."""
    if low >= target:
        return PASS
    if high < target:
        return FAIL
    return UNDECIDED
