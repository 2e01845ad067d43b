"""Vectorised bootstrap against a plain loop over the same resamples."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from stillhouse.evaluate.accuracy import span_match_counts, span_metrics
from stillhouse.evaluate.bootstrap import (
    bootstrap_interval,
    confusion_per_resample,
    macro_f1_per_resample,
    micro_f1_per_resample,
    resample_indices,
)


def three_class_predictions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Label indices 0..3 (label 3 rare), predictions right about 70% of the time."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(4, size=n, p=[0.5, 0.3, 0.17, 0.03])
    pred = np.where(rng.uniform(size=n) < 0.7, gold, rng.choice(4, size=n))
    return gold, pred


def percentile_reference(estimate: float, values: list[float]) -> tuple[float, float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return estimate, float(low), float(high)


def test_resample_indices_are_deterministic_draws_with_replacement() -> None:
    indices = resample_indices(50, n_resamples=400, seed=7)
    assert indices.shape == (400, 50) and np.issubdtype(indices.dtype, np.integer)
    assert indices.min() == 0 and indices.max() == 49
    assert np.array_equal(indices, resample_indices(50, n_resamples=400, seed=7))
    assert not np.array_equal(indices, resample_indices(50, n_resamples=400, seed=8))
    # with replacement: a resample of 50 holds about 1 − 1/e ≈ 63% distinct items
    distinct = np.mean([len(set(row.tolist())) for row in indices]) / 50
    assert 0.6 < distinct < 0.67


def test_accuracy_interval_equals_a_loop_over_resamples() -> None:
    gold, pred = three_class_predictions(300, seed=1)
    correct = (gold == pred).astype(int)
    indices = resample_indices(300, n_resamples=500, seed=0)
    per_resample = [sum(correct[i] for i in row) / len(row) for row in indices]
    expected = percentile_reference(correct.sum() / 300, per_resample)
    assert bootstrap_interval(correct, indices) == pytest.approx(expected, abs=1e-12)


def test_accuracy_interval_has_the_width_of_the_normal_approximation() -> None:
    rng = np.random.default_rng(2)
    correct = (rng.uniform(size=2000) < 0.8).astype(int)
    estimate, low, high = bootstrap_interval(correct, resample_indices(2000, 2000, seed=3))
    normal_width = 2 * 1.96 * np.sqrt(estimate * (1 - estimate) / 2000)
    assert low < estimate < high
    assert (high - low) == pytest.approx(normal_width, rel=0.1)


def test_confusion_per_resample_equals_sklearn_on_each_resample() -> None:
    gold, pred = three_class_predictions(200, seed=4)
    indices = resample_indices(200, n_resamples=30, seed=5)
    got = confusion_per_resample(gold, pred, indices, n_labels=4)
    for b, row in enumerate(indices):
        expected = confusion_matrix(gold[row], pred[row], labels=[0, 1, 2, 3])
        assert np.array_equal(got[b], expected)


def test_macro_f1_interval_equals_a_loop_over_resamples() -> None:
    gold, pred = three_class_predictions(300, seed=6)
    indices = resample_indices(300, n_resamples=200, seed=0)
    labels = [0, 1, 2, 3]

    def macro_f1(rows: np.ndarray) -> float:
        return f1_score(gold[rows], pred[rows], labels=labels, average="macro", zero_division=0)

    expected = percentile_reference(macro_f1(np.arange(300)), [macro_f1(row) for row in indices])
    metric = partial(macro_f1_per_resample, gold, pred, n_labels=4)
    assert bootstrap_interval(metric, indices) == pytest.approx(expected, abs=1e-12)


def test_span_f1_interval_resamples_documents() -> None:
    rng = np.random.default_rng(8)
    gold, pred = [], []
    for _ in range(120):
        spans = [
            (s, s + 3, str(rng.choice(["PER", "LOC"])))
            for s in range(0, 30, 6)
            if rng.uniform() < 0.5
        ]
        gold.append(spans)
        pred.append(
            [span for span in spans if rng.uniform() < 0.8]
            + [(40, 42, "PER")] * int(rng.uniform() < 0.2)
        )
    indices = resample_indices(120, n_resamples=100, seed=9)

    def strict_f1(rows: np.ndarray) -> float:
        return span_metrics([gold[i] for i in rows], [pred[i] for i in rows])["strict"]["f1"]

    expected = percentile_reference(strict_f1(np.arange(120)), [strict_f1(row) for row in indices])
    counts = span_match_counts(gold, pred)
    metric = partial(micro_f1_per_resample, counts[:, 0], counts[:, 1], counts[:, 2])
    assert bootstrap_interval(metric, indices) == pytest.approx(expected, abs=1e-12)


def test_per_item_values_must_match_the_resampled_items() -> None:
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        bootstrap_interval(np.ones(9), resample_indices(10, 5))
