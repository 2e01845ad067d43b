"""Calibration metrics and temperature scaling against their definitions and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from stillhouse.evaluate.calibration import (
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)


def brute_force_width_ece(confidence: list[float], correct: list[int], bins: int = 10) -> float:
    total = 0.0
    n = len(confidence)
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [
            i for i, c in enumerate(confidence) if (low <= c < high) or (b == bins - 1 and c == 1.0)
        ]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_confidence = sum(confidence[i] for i in members) / len(members)
            total += len(members) / n * abs(accuracy - mean_confidence)
    return total


def test_equal_width_ece_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, size=500)
    correct = (rng.uniform(size=500) < confidence**1.5).astype(int)
    expected = brute_force_width_ece(confidence.tolist(), correct.tolist())
    assert abs(expected_calibration_error(confidence, correct) - expected) < 1e-12


def test_equal_mass_ece_uses_bins_of_equal_size() -> None:
    confidence = np.array([0.9] * 5 + [0.6] * 5)
    correct = np.array([1] * 5 + [0] * 5)
    # two bins of five: |1 - 0.9| and |0 - 0.6|, each weighted 1/2
    assert (
        abs(expected_calibration_error(confidence, correct, bins=2, scheme="mass") - 0.35) < 1e-12
    )


def test_perfectly_calibrated_predictions_have_zero_ece() -> None:
    confidence = np.array([1.0, 1.0, 0.5, 0.5])
    correct = np.array([1, 1, 1, 0])
    assert expected_calibration_error(confidence, correct) == 0.0


def overconfident_classifier(n: int, k: int, temperature: float, seed: int):
    """Gold labels drawn from softmax(true logits); the model reports true logits × temperature.

    Returns (reported logits (n, k), gold (n,)): dividing by ``temperature`` recalibrates them.
    """
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(n, k)) * 1.5 + rng.normal(size=k)
    true_probs = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(k, p=row) for row in true_probs])
    return true_logits * temperature, gold


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    return np.array(
        [
            [math.exp(z - max(row)) / sum(math.exp(v - max(row)) for v in row) for z in row]
            for row in logits
        ]
    )


def test_reliability_bins_match_the_definition_and_add_up_to_ece() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.beta(5, 2, size=600)
    correct = (rng.uniform(size=600) < confidence**1.3).astype(int)
    got = reliability_bins(confidence, correct, bins=10)
    expected = []
    for b in range(10):
        members = [
            i
            for i, c in enumerate(confidence)
            if b / 10 <= c < (b + 1) / 10 or (b == 9 and c == 1.0)
        ]
        if members:
            expected.append(
                (
                    b / 10,
                    (b + 1) / 10,
                    sum(confidence[i] for i in members) / len(members),
                    sum(correct[i] for i in members) / len(members),
                    len(members),
                )
            )
    assert len(got) == len(expected)
    for bar, reference in zip(got, expected, strict=True):
        assert tuple(bar) == pytest.approx(reference, abs=1e-12)
    assert sum(bar.count for bar in got) == 600
    ece = sum(bar.count / 600 * abs(bar.accuracy - bar.mean_confidence) for bar in got)
    assert ece == pytest.approx(expected_calibration_error(confidence, correct), abs=1e-12)


def test_brier_score_matches_sklearn_and_the_definition() -> None:
    logits, gold = overconfident_classifier(300, 4, temperature=2.0, seed=2)
    probs = softmax_rows(logits)
    expected = (
        sum(sum((probs[i, j] - (j == gold[i])) ** 2 for j in range(4)) for i in range(300)) / 300
    )
    assert brier_score(probs, gold) == pytest.approx(expected, abs=1e-12)
    sklearn_value = brier_score_loss(gold, probs, labels=[0, 1, 2, 3], scale_by_half=False)
    assert brier_score(probs, gold) == pytest.approx(sklearn_value, abs=1e-12)


def test_negative_log_likelihood_matches_sklearn_and_the_definition() -> None:
    logits, gold = overconfident_classifier(300, 3, temperature=2.0, seed=3)
    probs = softmax_rows(logits)
    expected = -sum(math.log(probs[i, gold[i]]) for i in range(300)) / 300
    assert negative_log_likelihood(probs, gold) == pytest.approx(expected, abs=1e-12)
    assert negative_log_likelihood(probs, gold) == pytest.approx(
        log_loss(gold, probs, labels=[0, 1, 2]), abs=1e-12
    )
    # a gold probability of 0 is clipped, not infinite
    assert math.isfinite(negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1])))


def test_apply_temperature_is_softmax_of_scaled_logits() -> None:
    logits, _ = overconfident_classifier(50, 3, temperature=1.0, seed=4)
    assert apply_temperature(logits, 1.0) == pytest.approx(softmax_rows(logits), abs=1e-12)
    assert apply_temperature(logits, 2.5) == pytest.approx(softmax_rows(logits / 2.5), abs=1e-12)
    # log-probabilities give the same answer as the logits they came from
    log_probs = np.log(softmax_rows(logits))
    assert apply_temperature(log_probs, 2.5) == pytest.approx(
        apply_temperature(logits, 2.5), abs=1e-12
    )


def test_fit_temperature_minimises_nll_and_recovers_the_overconfidence() -> None:
    logits, gold = overconfident_classifier(3000, 4, temperature=2.5, seed=5)
    fitted = fit_temperature(logits, gold)

    def nll(temperature: float) -> float:
        return negative_log_likelihood(apply_temperature(logits, temperature), gold)

    assert nll(fitted) <= nll(1.0)
    for temperature in np.geomspace(0.1, 10, 81):
        assert nll(fitted) <= nll(temperature) + 1e-12
    for step in (1e-4, 1e-3, 1e-2):  # a minimum, not just a point on the right side of the grid
        assert nll(fitted) <= min(nll(fitted * math.exp(step)), nll(fitted * math.exp(-step)))
    assert fitted == pytest.approx(2.5, rel=0.1)
    # from log-probabilities (what label scoring gives) the fitted temperature is the same
    log_probs = np.log(apply_temperature(logits, 1.0))
    assert fit_temperature(log_probs, gold) == pytest.approx(fitted, rel=1e-6)
    assert expected_calibration_error(
        apply_temperature(logits, fitted).max(axis=1),
        apply_temperature(logits, fitted).argmax(axis=1) == gold,
    ) < expected_calibration_error(
        apply_temperature(logits, 1.0).max(axis=1),
        apply_temperature(logits, 1.0).argmax(axis=1) == gold,
    )
