"""Accuracy estimated without labels, from calibrated confidences (the idea of NannyML's CBPE,
confidence-based performance estimation).

A calibrated model's confidence c in its answer is the probability that the answer is right. So
the number of right answers among n predictions is a sum of independent Bernoulli(cᵢ) — a
Poisson-binomial variable — whose mean is Σ cᵢ: the estimated accuracy is the mean confidence,
an abstention counting as an error (confidence 0), as ``evaluate`` counts it. The 95% interval
is the 2.5% and 97.5% quantiles of that Poisson-binomial distribution (computed exactly up to
:data:`EXACT_UP_TO` predictions, by the normal approximation above), divided by n: the
randomness of which answers happen to be right, **given calibrated confidences**.

It is only as good as the calibration on the logged traffic: under a shift the model's
confidences move, but not necessarily as much as its accuracy does (overconfidence on
unfamiliar text, a concept shift the inputs do not show). The interval does not include that
error; compare the estimate with labelled samples now and then (bench/monitor.py measures it).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

EXACT_UP_TO = 5000
CONFIDENCE_LEVEL = 0.95


def poisson_binomial_pmf(probabilities: np.ndarray) -> np.ndarray:
    """P(S = k) for k = 0..n, S the number of successes of independent Bernoulli(pᵢ)."""
    pmf = np.zeros(probabilities.size + 1)
    pmf[0] = 1.0
    for i, p in enumerate(probabilities, start=1):
        pmf[1 : i + 1] = pmf[1 : i + 1] * (1 - p) + pmf[:i] * p
        pmf[0] *= 1 - p
    return pmf


def poisson_binomial_interval(
    probabilities: np.ndarray, level: float = CONFIDENCE_LEVEL
) -> tuple[float, float]:
    """The central ``level`` interval of the number of successes (as counts, 0..n)."""
    n = probabilities.size
    tail = (1 - level) / 2
    if n <= EXACT_UP_TO:
        cumulative = np.cumsum(poisson_binomial_pmf(probabilities))
        low = int(np.searchsorted(cumulative, tail))
        high = int(np.searchsorted(cumulative, 1 - tail))
        return float(low), float(min(high, n))
    mean = float(probabilities.sum())
    spread = math.sqrt(float((probabilities * (1 - probabilities)).sum()))
    z = NormalDist().inv_cdf(1 - tail)
    return max(0.0, mean - z * spread), min(float(n), mean + z * spread)


def estimated_accuracy(confidences: np.ndarray, abstained: np.ndarray) -> dict[str, Any]:
    """The estimate over every prediction (abstentions as errors) with its interval, and the
    mean confidence of the answered ones. ``confidences``: shape (n,), each answer's
    probability; ``abstained``: shape (n,) booleans."""
    n = confidences.size
    right = np.where(abstained, 0.0, np.clip(confidences, 0.0, 1.0))
    low, high = poisson_binomial_interval(right)
    answered = int((~abstained).sum())
    return {
        "estimate": float(right.mean()),
        "low": low / n,
        "high": high / n,
        "n": int(n),
        "answered": answered,
        "estimate_answered": float(right[~abstained].mean()) if answered else None,
        "interval": "exact Poisson-binomial" if n <= EXACT_UP_TO else "normal approximation",
    }
