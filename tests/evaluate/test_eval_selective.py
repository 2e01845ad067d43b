"""Selective prediction against brute force that tries every threshold."""

from __future__ import annotations

from fractions import Fraction
from functools import partial
from itertools import combinations

import numpy as np
import pytest

from stillhouse.evaluate.bootstrap import bootstrap_interval, resample_indices
from stillhouse.evaluate.selective import (
    accuracy_at_top,
    accuracy_at_top_per_resample,
    area_under_risk_coverage,
    area_under_risk_coverage_per_resample,
    coverage_at_precision,
    coverage_at_precision_per_resample,
    risk_coverage_curve,
    selective_per_resample,
)


def confident_classifier(
    n: int, seed: int, decimals: int | None = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Confidences skewed high (rounded, so there are ties), right more often when confident."""
    rng = np.random.default_rng(seed)
    confidence = rng.beta(6, 1.5, size=n)
    if decimals is not None:
        confidence = confidence.round(decimals)
    correct = (rng.uniform(size=n) < confidence**1.5).astype(int)
    return confidence, correct


def brute_force_curve(
    confidence: np.ndarray, correct: np.ndarray
) -> list[tuple[float, float, float]]:
    """(threshold, coverage, risk) for every distinct threshold, answering iff confidence ≥ it."""
    n = len(confidence)
    points = []
    for threshold in sorted(set(confidence.tolist()), reverse=True):
        answered = [i for i in range(n) if confidence[i] >= threshold]
        wrong = sum(1 - correct[i] for i in answered)
        points.append((threshold, len(answered) / n, wrong / len(answered)))
    return points


def brute_force_coverage_at_precision(confidence: np.ndarray, correct: np.ndarray, target: float):
    best = (0.0, None)
    for threshold in sorted(set(confidence.tolist())):
        answered = [i for i in range(len(confidence)) if confidence[i] >= threshold]
        if Fraction(int(sum(correct[i] for i in answered)), len(answered)) >= Fraction(str(target)):
            best = max(best, (len(answered) / len(confidence), threshold), key=lambda x: x[0])
    return best


def test_risk_coverage_curve_has_one_step_per_distinct_confidence() -> None:
    confidence, correct = confident_classifier(400, seed=1)
    curve = risk_coverage_curve(confidence, correct)
    expected = brute_force_curve(confidence, correct)
    assert len(curve.thresholds) == len(set(confidence.tolist())) < 400  # ties are one step
    got = np.column_stack([curve.thresholds, curve.coverages, curve.risks])
    assert got == pytest.approx(np.array(expected), abs=1e-12)
    assert curve.coverages[-1] == 1.0


def test_aurc_with_distinct_confidences_is_the_mean_risk_of_the_top_i() -> None:
    confidence, correct = confident_classifier(300, seed=2, decimals=None)
    order = sorted(range(300), key=lambda i: -confidence[i])
    mean_risk = sum(sum(1 - correct[j] for j in order[:i]) / i for i in range(1, 301)) / 300
    assert area_under_risk_coverage(confidence, correct) == pytest.approx(mean_risk, abs=1e-12)


def test_aurc_with_ties_is_the_area_under_the_step_curve() -> None:
    confidence, correct = confident_classifier(300, seed=3, decimals=1)
    area, previous = 0.0, 0.0
    for _, coverage, risk in brute_force_curve(confidence, correct):
        area += (coverage - previous) * risk
        previous = coverage
    assert area_under_risk_coverage(confidence, correct) == pytest.approx(area, abs=1e-12)
    # a system that ranks its errors last has the smallest possible area
    ranked = np.where(correct == 1, 1.0, 0.5)
    assert area_under_risk_coverage(ranked, correct) < area_under_risk_coverage(confidence, correct)


def test_accuracy_at_top_takes_the_most_confident_share() -> None:
    confidence, correct = confident_classifier(300, seed=4, decimals=None)
    order = sorted(range(300), key=lambda i: -confidence[i])
    for share, k in ((0.10, 30), (0.25, 75), (0.001, 1), (1.0, 300)):
        expected = sum(correct[i] for i in order[:k]) / k
        assert accuracy_at_top(confidence, correct, share) == pytest.approx(expected, abs=1e-12)
    # 0.07 · 100 is 7.000000000000001 in floating point: still the top 7, all of them right
    ranked = np.linspace(1.0, 0.01, 100)
    assert accuracy_at_top(ranked, np.arange(100) < 7, 0.07) == 1.0


def test_accuracy_at_top_averages_a_tie_over_every_way_to_break_it() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 1, 0, 0, 1, 1, 0, 1])
    # top 30% = 3 items: the two above the tie, plus one of the five tied at 0.9
    choices = list(combinations(range(2, 7), 1))
    expected = sum((correct[0] + correct[1] + sum(correct[list(c)])) / 3 for c in choices) / len(
        choices
    )
    assert accuracy_at_top(confidence, correct, 0.3) == pytest.approx(expected, abs=1e-12)
    # top 50% = 5 items: three of the five tied
    choices = list(combinations(range(2, 7), 3))
    expected = sum((correct[0] + correct[1] + sum(correct[list(c)])) / 5 for c in choices) / len(
        choices
    )
    assert accuracy_at_top(confidence, correct, 0.5) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_coverage_at_precision_matches_trying_every_threshold(target: float) -> None:
    confidence, correct = confident_classifier(500, seed=5)
    result = coverage_at_precision(confidence, correct, target)
    coverage, threshold = brute_force_coverage_at_precision(confidence, correct, target)
    assert (result.coverage, result.threshold) == pytest.approx((coverage, threshold), abs=1e-12)
    if threshold is not None:
        answered = confidence >= threshold
        assert result.accuracy == pytest.approx(correct[answered].mean(), abs=1e-12)
        assert result.accuracy >= target


def test_coverage_at_precision_when_accuracy_is_not_monotone_or_unreachable() -> None:
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 0, 1, 1, 0])
    # thresholds 0.9 … 0.5 give accuracy 1, 1/2, 2/3, 3/4, 3/5: at 0.7, 0.6 qualifies below
    # two thresholds that do not
    assert coverage_at_precision(confidence, correct, 0.7)[:3] == (0.8, 0.6, 0.75)
    assert coverage_at_precision(confidence, correct, 0.6)[:3] == (1.0, 0.5, 0.6)
    assert coverage_at_precision(np.array([0.9, 0.8]), np.array([0, 1]), 0.99)[:3] == (
        0.0,
        None,
        None,
    )
    # 99 right of 100: exactly at the target counts
    assert coverage_at_precision(np.full(100, 0.9), np.array([1] * 99 + [0]), 0.99).coverage == 1.0


def test_per_resample_functions_equal_the_metric_on_each_resample() -> None:
    confidence, correct = confident_classifier(250, seed=6)
    indices = resample_indices(250, n_resamples=60, seed=7)
    cases = [
        (area_under_risk_coverage_per_resample, area_under_risk_coverage, {}),
        (accuracy_at_top_per_resample, accuracy_at_top, {"share": 0.1}),
        (
            coverage_at_precision_per_resample,
            lambda c, y, target: coverage_at_precision(c, y, target).coverage,
            {"target": 0.95},
        ),
    ]
    for vectorised, scalar, options in cases:
        got = vectorised(confidence, correct, indices, **options)
        expected = [scalar(confidence[row], correct[row], *options.values()) for row in indices]
        assert got == pytest.approx(expected, abs=1e-12), vectorised.__name__


def test_coverage_at_precision_interval_comes_from_the_shared_resamples() -> None:
    confidence, correct = confident_classifier(400, seed=8)
    indices = resample_indices(400, n_resamples=300, seed=9)
    result = coverage_at_precision(confidence, correct, 0.95, indices=indices)
    per_resample = [
        brute_force_coverage_at_precision(confidence[row], correct[row], 0.95)[0]
        for row in indices[:20]
    ]
    metric = partial(coverage_at_precision_per_resample, confidence, correct, target=0.95)
    assert metric(indices[:20]) == pytest.approx(per_resample, abs=1e-12)
    assert result.interval == bootstrap_interval(metric, indices)
    assert result.interval.estimate == result.coverage
    assert result.interval.low < result.coverage < result.interval.high
    assert coverage_at_precision(confidence, correct, 0.95).interval is None


def test_one_counting_pass_gives_the_three_resampled_metrics() -> None:
    confidence, correct = confident_classifier(400, seed=11)
    indices = resample_indices(400, 300, seed=5)
    together = selective_per_resample(confidence, correct, indices, share=0.2, target=0.95)
    np.testing.assert_array_equal(
        together["aurc"], area_under_risk_coverage_per_resample(confidence, correct, indices)
    )
    np.testing.assert_array_equal(
        together["accuracy_at_top"],
        accuracy_at_top_per_resample(confidence, correct, indices, share=0.2),
    )
    np.testing.assert_array_equal(
        together["coverage_at_precision"],
        coverage_at_precision_per_resample(confidence, correct, indices, target=0.95),
    )


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_abstentions_are_answered_at_no_threshold(target: float) -> None:
    """A negative confidence (a cascade's abstention): the curve and coverage at precision stop
    at the answered share even where counting abstentions as errors would still reach the
    target; AURC and accuracy at the top rank them below every answer, as errors."""
    confidence, correct = confident_classifier(300, seed=11)
    abstained = np.zeros(300, dtype=bool)
    abstained[np.argsort(confidence)[:6]] = True  # the six least confident go to review
    confidence = np.where(abstained, -1.0, confidence)
    correct = np.where(abstained, 0, correct)
    answered = ~abstained

    curve = risk_coverage_curve(confidence, correct)
    expected = [p for p in brute_force_curve(confidence, correct) if p[0] >= 0]
    assert np.allclose(np.column_stack(curve), expected, atol=1e-12)
    assert curve.coverages[-1] == pytest.approx(answered.mean())

    result = coverage_at_precision(confidence, correct, target)
    best = (0.0, None)
    for threshold in sorted(set(confidence[answered].tolist())):
        chosen = confidence >= threshold
        if correct[chosen].mean() >= target and chosen.mean() > best[0]:
            best = (chosen.mean(), threshold)
    assert (result.coverage, result.threshold) == pytest.approx(best, abs=1e-12)
    assert result.coverage <= answered.mean()
    indices = resample_indices(300, 50, seed=2)
    per_resample = coverage_at_precision_per_resample(confidence, correct, indices, target=target)
    assert (per_resample <= answered[indices].mean(axis=1) + 1e-12).all()

    # AURC: the full curve to coverage 1, abstentions as the last (wrong) step
    full = brute_force_curve(confidence, correct)
    before = [0.0] + [coverage for _, coverage, _ in full[:-1]]
    area = sum(
        (coverage - previous) * risk
        for (_, coverage, risk), previous in zip(full, before, strict=True)
    )
    assert full[-1][1] == 1.0 and full[-1][2] > 0
    assert area_under_risk_coverage(confidence, correct) == pytest.approx(area, abs=1e-12)
