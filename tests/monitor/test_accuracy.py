"""Accuracy estimated from calibrated confidences (CBPE): the Poisson-binomial against brute force,
the estimate against the mean confidence, and on synthetic streams whose probabilities are
calibrated by construction — its interval covers the true accuracy, it drops under a covariate
shift, and it cannot see a concept shift (the documented limit)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stillhouse.monitor.accuracy import (
    EXACT_UP_TO,
    estimated_accuracy,
    poisson_binomial_interval,
    poisson_binomial_pmf,
)


def test_the_pmf_is_the_sum_over_every_outcome() -> None:
    p = np.array([0.9, 0.2, 0.65, 0.5, 0.99, 0.01])
    brute = np.zeros(p.size + 1)
    for outcome in itertools.product((0, 1), repeat=p.size):
        chosen = np.array(outcome)
        brute[chosen.sum()] += np.prod(np.where(chosen, p, 1 - p))
    assert poisson_binomial_pmf(p) == pytest.approx(brute, abs=1e-15)


def test_the_interval_is_the_central_95_percent_of_the_count() -> None:
    p = np.full(200, 0.8)  # a binomial: its quantiles are known
    from scipy.stats import binom

    low, high = poisson_binomial_interval(p)
    assert (low, high) == (binom.ppf(0.025, 200, 0.8), binom.ppf(0.975, 200, 0.8))


def test_above_the_exact_limit_the_normal_approximation_agrees() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(8, 2, EXACT_UP_TO)
    exact = poisson_binomial_interval(p)
    bigger = np.concatenate([p, p[:1]])  # one more prediction: the normal approximation
    approximate = poisson_binomial_interval(bigger)
    assert approximate[0] == pytest.approx(exact[0], abs=3) and approximate[1] == pytest.approx(
        exact[1], abs=3
    )


def test_the_estimate_is_the_mean_confidence_with_abstentions_as_errors() -> None:
    confidences = np.array([0.9, 0.8, 0.6, 0.3, 0.95])
    abstained = np.array([False, False, False, True, False])
    found = estimated_accuracy(confidences, abstained)
    assert found["estimate"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.95) / 5)
    assert found["estimate_answered"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.95) / 4)
    assert found["n"] == 5 and found["answered"] == 4
    assert found["low"] <= found["estimate"] <= found["high"]


def two_gaussians(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes ±1 with x | y ~ N(2y, 1), equal priors: P(y=1 | x) = sigmoid(4x) exactly. The
    model answers sign(x) with confidence max(P, 1 − P) — calibrated by construction; whether
    it is right is drawn from the true posterior."""
    posterior = 1 / (1 + np.exp(-4 * x))
    y = rng.random(x.size) < posterior
    answer = x > 0
    return np.maximum(posterior, 1 - posterior), answer == y


def test_on_a_calibrated_stream_the_interval_covers_the_true_accuracy() -> None:
    rng = np.random.default_rng(7)
    covered, gaps = 0, []
    for _ in range(200):
        y = rng.random(500) < 0.5
        x = rng.normal(np.where(y, 2.0, -2.0), 1.0)
        confidence, right = two_gaussians(rng, x)
        found = estimated_accuracy(confidence, np.zeros(x.size, dtype=bool))
        assert found["estimate"] == pytest.approx(confidence.mean())
        covered += found["low"] <= right.mean() <= found["high"]
        gaps.append(found["estimate"] - right.mean())
    # a 95% interval: about 190 of 200 (binomial sd ≈ 3)
    assert 180 <= covered <= 199
    assert abs(np.mean(gaps)) < 0.005


def test_under_a_covariate_shift_it_drops_with_the_true_accuracy() -> None:
    """Inputs move towards the boundary, P(y | x) stays: the calibration holds, so the
    estimate follows the accuracy down."""
    rng = np.random.default_rng(8)
    y = rng.random(2000) < 0.5
    calm = rng.normal(np.where(y, 2.0, -2.0), 1.0)
    shifted = rng.normal(0.0, 0.4, 2000)
    before = estimated_accuracy(*_answered(two_gaussians(rng, calm)[0]))
    confidence, right = two_gaussians(rng, shifted)
    after = estimated_accuracy(*_answered(confidence))
    assert right.mean() < 0.8 and after["high"] < before["low"]
    assert after["low"] <= right.mean() <= after["high"]


def test_under_a_concept_shift_it_cannot_see_the_drop() -> None:
    """The same inputs, but a third of the labels now mean something else: the confidences do
    not move, so neither does the estimate (the limit bench/monitor.py measures on real data)."""
    rng = np.random.default_rng(9)
    y = rng.random(2000) < 0.5
    x = rng.normal(np.where(y, 2.0, -2.0), 1.0)
    confidence, right = two_gaussians(rng, x)
    flipped = right ^ (rng.random(x.size) < 1 / 3)
    found = estimated_accuracy(*_answered(confidence))
    assert flipped.mean() < found["low"] - 0.2


def _answered(confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return confidence, np.zeros(confidence.size, dtype=bool)
