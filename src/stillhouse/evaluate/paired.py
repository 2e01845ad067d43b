"""Paired comparisons of two systems scored on the same items, and corrections for many of them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import binom

from stillhouse.evaluate.bootstrap import percentile_interval


class PairedDifference(NamedTuple):
    """Metric of A minus metric of B, its percentile interval and a two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float


class McNemarResult(NamedTuple):
    """``b``: items only A got right; ``c``: items only B got right; exact two-sided p-value."""

    b: int
    c: int
    p_value: float


def paired_bootstrap(
    metric_a_per_resample: np.ndarray,
    metric_b_per_resample: np.ndarray,
    observed_diff: float,
    confidence: float = 0.95,
) -> PairedDifference:
    """Paired bootstrap test of metric(A) − metric(B).

    ``metric_a_per_resample``, ``metric_b_per_resample``: shape (B,), each system's metric on
    the SAME resamples (one ``resample_indices`` array for both); ``observed_diff``: A − B on
    the data as observed. The interval is the percentile interval of the per-resample
    differences d_b. The p-value tests "no difference" by centring the bootstrap distribution
    on 0: p = (1 + #{b : |d_b − observed_diff| ≥ |observed_diff|}) / (B + 1), the share of
    centred resamples at least as extreme as what was observed, with the +1 that keeps a
    Monte-Carlo p-value valid (never 0; at least 1/(B + 1)).
    """
    a = np.asarray(metric_a_per_resample, dtype=float)
    b = np.asarray(metric_b_per_resample, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"per-resample metrics must be 1-d of the same length, got shapes {a.shape} and {b.shape}"
        )
    differences = a - b
    interval = percentile_interval(observed_diff, differences, confidence)
    extreme = np.count_nonzero(np.abs(differences - observed_diff) >= abs(observed_diff))
    p_value = (1 + extreme) / (len(differences) + 1)
    return PairedDifference(interval.estimate, interval.low, interval.high, float(p_value))


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """Exact McNemar test: do A and B have the same accuracy on these items?

    ``correct_a``, ``correct_b``: shape (n,), 1 where each system was right on the item.
    Only discordant items count: b = A right and B wrong, c = A wrong and B right. Under the
    null each discordant item is a fair coin, so p = min(1, 2·BinomCDF(min(b, c); b + c, ½))
    (statsmodels' ``mcnemar(exact=True)``; equal to scipy's two-sided ``binomtest``); 1 when
    there are no discordant items.
    """
    a = _as_correct(correct_a, "correct_a")
    b = _as_correct(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a has {a.size} items but correct_b has {b.size}")
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    discordant = only_a + only_b
    p_value = (
        1.0
        if discordant == 0
        else min(1.0, 2 * float(binom.cdf(min(only_a, only_b), discordant, 0.5)))
    )
    return McNemarResult(only_a, only_b, p_value)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, shape (m,) in the input order.

    With p sorted ascending, p_(i) becomes max_{j ≤ i} min(1, (m − j + 1)·p_(j)). Rejecting
    where the adjusted p < α controls the family-wise error rate at α for any dependence
    between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must be a 1-d array of probabilities in [0, 1]")
    order = np.argsort(p, kind="stable")
    multipliers = len(p) - np.arange(len(p))
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(multipliers * p[order]))
    adjusted = np.empty_like(p)
    adjusted[order] = adjusted_sorted
    return adjusted


def describe_difference(
    name_a: str,
    name_b: str,
    diff: float,
    low: float,
    high: float,
    p_adjusted: float,
    alpha: float = 0.05,
    *,
    confidence: float = 0.95,
    higher_is_better: bool = True,
) -> str:
    """One sentence saying whether A and B really differ, for the report.

    ``diff``, ``low``, ``high``: metric(A) − metric(B) and its interval, on a 0–1 scale, written
    as points (×100); ``p_adjusted``: the p-value after Holm's correction over all comparisons.
    The difference is called real iff ``p_adjusted < alpha``. The better system is named
    first (for a loss, pass ``higher_is_better=False``), so the numbers shown are positive
    when it is ahead.
    """
    # advantage of A over B, positive when A is better
    advantage, adv_low, adv_high = (diff, low, high) if higher_is_better else (-diff, -high, -low)
    better, worse = name_a, name_b
    if advantage < 0:
        better, worse = name_b, name_a
        advantage, adv_low, adv_high = -advantage, -adv_high, -adv_low
    details = (
        f"{confidence * 100:g}% CI {_format_range(adv_low * 100, adv_high * 100)}, "
        f"{_format_p(p_adjusted)} after Holm"
    )
    if advantage == 0:
        return (
            f"{name_a} and {name_b} score the same ({details}): the difference is not significant."
        )
    if p_adjusted < alpha:
        return (
            f"{better} is better than {worse} by {advantage * 100:.1f} points ({details}): "
            "a real difference."
        )
    return (
        f"{better} is ahead of {worse} by {advantage * 100:.1f} points ({details}), "
        f"but the difference is not significant at α={alpha:g}."
    )


def _format_range(low: float, high: float) -> str:
    if low >= 0:
        return f"{low:.1f}–{high:.1f}"
    return f"{low:.1f} to {high:.1f}"


def _format_p(p: float) -> str:
    # three significant digits, so a p just under alpha never prints as alpha itself
    return "p<0.001" if p < 0.001 else f"p={p:.3g}"


def _as_correct(correct: np.ndarray, name: str) -> np.ndarray:
    correct = np.asarray(correct)
    if correct.ndim != 1 or not np.isin(correct, (0, 1)).all():
        raise ValueError(f"{name} must be a 1-d array of 0/1 (or booleans), 1 where right")
    return correct.astype(bool)
