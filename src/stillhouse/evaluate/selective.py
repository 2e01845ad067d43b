"""Selective prediction: how good a system is when it may abstain on its least confident items.

The system answers an item iff its confidence ≥ a threshold. Thresholds are the distinct
confidence values, so items with equal confidence are answered or skipped together: a tie is
one step of the curve, never split in an arbitrary order (the one exception, documented there,
is :func:`accuracy_at_top`, which needs an exact share of items).

``confidence``: shape (n,), the probability of the predicted answer; ``correct``: shape (n,),
1 where the prediction was right. A negative confidence marks an **abstention** (a cascade
sending the item to review): the system answers it at no threshold, so the risk–coverage curve
and coverage at precision stop at the share of items answered; the area under the curve and the
accuracy at the top share count abstentions as errors ranked below every answer. The ``*_per_resample`` functions take bootstrap ``indices``
of shape (B, n) from :func:`stillhouse.evaluate.bootstrap.resample_indices` and return (B,).
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import numpy as np

from stillhouse.evaluate.bootstrap import (
    Interval,
    bootstrap_interval,
    divide_or_zero,
    observed_indices,
)


class RiskCoverageCurve(NamedTuple):
    """One point per distinct confidence, from the most confident down (all shape (G,)).

    Point g answers the items with confidence ≥ ``thresholds[g]``: ``coverages[g]`` is their
    share of all items, ``risks[g]`` the share of them that is wrong.
    """

    thresholds: np.ndarray
    coverages: np.ndarray
    risks: np.ndarray


class CoverageAtPrecision(NamedTuple):
    """The most a system can answer at a required accuracy, and where to put its threshold.

    ``threshold`` is None (and ``coverage`` 0, ``accuracy`` None) when no threshold reaches the
    target: abstain on everything. ``interval`` is the bootstrap interval of ``coverage``, None
    when no resample indices were given.
    """

    coverage: float
    threshold: float | None
    accuracy: float | None
    interval: Interval | None


def risk_coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> RiskCoverageCurve:
    """The risk–coverage curve: items sorted by confidence, descending, ties as one step."""
    confidence, correct = _check(confidence, correct)
    thresholds, group = _confidence_groups(confidence)
    answered, right = _cumulative_counts(
        group, correct, observed_indices(len(confidence)), len(thresholds)
    )
    usable = thresholds >= 0  # abstentions are answered at no threshold
    return RiskCoverageCurve(
        thresholds=thresholds[usable],
        coverages=answered[0][usable] / len(confidence),
        risks=(answered[0][usable] - right[0][usable]) / answered[0][usable],
    )


def area_under_risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> float:
    """AURC: the area under the risk–coverage step curve (lower is better).

    Σ_g (coverage_g − coverage_{g−1}) · risk_g with coverage_{−1} = 0. With distinct
    confidences this is the mean over i = 1..n of the error rate of the i most confident items
    (Geifman et al., 2019); a tie group contributes its width times the risk after it.
    """
    confidence, correct = _check(confidence, correct)
    return float(
        area_under_risk_coverage_per_resample(
            confidence, correct, observed_indices(len(confidence))
        )[0]
    )


def area_under_risk_coverage_per_resample(
    confidence: np.ndarray, correct: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """:func:`area_under_risk_coverage` of each bootstrap resample: shape (B,)."""
    answered, right, _ = _resampled_counts(confidence, correct, indices)
    return _aurc(answered, right, indices.shape[1])


def _aurc(answered: np.ndarray, right: np.ndarray, n: int) -> np.ndarray:
    risk = divide_or_zero(answered - right, answered)
    width = np.diff(answered, axis=1, prepend=0) / n
    return (width * risk).sum(axis=1)


def accuracy_at_top(confidence: np.ndarray, correct: np.ndarray, share: float = 0.10) -> float:
    """Accuracy on the k = ⌈share·n⌉ most confident items (at least one).

    If the k-th item ties with items left out, the tied group counts by its mean accuracy
    (the expected accuracy over random orders of the tie), so exactly k items are weighed.
    """
    confidence, correct = _check(confidence, correct)
    return float(
        accuracy_at_top_per_resample(
            confidence, correct, observed_indices(len(confidence)), share=share
        )[0]
    )


def accuracy_at_top_per_resample(
    confidence: np.ndarray, correct: np.ndarray, indices: np.ndarray, *, share: float = 0.10
) -> np.ndarray:
    """:func:`accuracy_at_top` of each bootstrap resample: shape (B,)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    answered, right, _ = _resampled_counts(confidence, correct, indices)
    return _accuracy_at_top(answered, right, indices.shape[1], share)


def _accuracy_at_top(answered: np.ndarray, right: np.ndarray, n: int, share: float) -> np.ndarray:
    top = max(1, math.ceil(share * n - 1e-9))  # tolerance: 0.07 * 100 is 7.000000000000001
    rows = np.arange(len(answered))
    cut = np.argmax(answered >= top, axis=1)  # the group holding the top-th item
    before = np.where(cut > 0, answered[rows, cut - 1], 0)
    right_before = np.where(cut > 0, right[rows, cut - 1], 0)
    in_cut = answered[rows, cut] - before
    right_in_cut = right[rows, cut] - right_before
    return (right_before + (top - before) * right_in_cut / in_cut) / top


def coverage_at_precision(
    confidence: np.ndarray,
    correct: np.ndarray,
    target: float = 0.99,
    indices: np.ndarray | None = None,
    interval_confidence: float = 0.95,
) -> CoverageAtPrecision:
    """The largest coverage at which the answered items are at least ``target`` accurate.

    Tries every threshold (answer iff confidence ≥ threshold) and keeps the one answering the
    most items whose accuracy ≥ ``target``; accuracy need not fall monotonically, so a lower
    threshold may qualify where a higher one does not. With ``indices`` from
    :func:`stillhouse.evaluate.bootstrap.resample_indices`, ``interval`` is the percentile
    interval of the coverage, the threshold being chosen anew on each resample.
    """
    _check_target(target)
    confidence, correct = _check(confidence, correct)
    thresholds, group = _confidence_groups(confidence)
    answered, right = _cumulative_counts(
        group, correct, observed_indices(len(confidence)), len(thresholds)
    )
    accuracy = right[0] / answered[0]
    feasible = np.flatnonzero((accuracy >= target) & (thresholds >= 0))
    interval = None
    if indices is not None:
        metric = partial(coverage_at_precision_per_resample, confidence, correct, target=target)
        interval = bootstrap_interval(metric, indices, interval_confidence)
    if feasible.size == 0:
        return CoverageAtPrecision(0.0, None, None, interval)
    best = feasible[-1]  # coverage grows with the group index
    return CoverageAtPrecision(
        coverage=float(answered[0, best] / len(confidence)),
        threshold=float(thresholds[best]),
        accuracy=float(accuracy[best]),
        interval=interval,
    )


def coverage_at_precision_per_resample(
    confidence: np.ndarray, correct: np.ndarray, indices: np.ndarray, *, target: float = 0.99
) -> np.ndarray:
    """The coverage of :func:`coverage_at_precision` on each bootstrap resample: shape (B,)."""
    _check_target(target)
    answered, right, thresholds = _resampled_counts(confidence, correct, indices)
    return _coverage(answered, right, indices.shape[1], target, thresholds >= 0)


def _coverage(
    answered: np.ndarray, right: np.ndarray, n: int, target: float, usable: np.ndarray
) -> np.ndarray:
    """``usable``: shape (G,), False for the group of abstentions (confidence < 0)."""
    feasible = (answered > 0) & (divide_or_zero(right, answered) >= target) & usable
    return np.where(feasible, answered / n, 0.0).max(axis=1)


def selective_per_resample(
    confidence: np.ndarray,
    correct: np.ndarray,
    indices: np.ndarray,
    *,
    share: float = 0.10,
    target: float = 0.99,
) -> dict[str, np.ndarray]:
    """AURC, accuracy at the top ``share`` and coverage at precision ``target`` of each
    resample, shape (B,) each, from one pass of counting (the three functions above share it)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    _check_target(target)
    answered, right, thresholds = _resampled_counts(confidence, correct, indices)
    n = indices.shape[1]
    return {
        "aurc": _aurc(answered, right, n),
        "accuracy_at_top": _accuracy_at_top(answered, right, n, share),
        "coverage_at_precision": _coverage(answered, right, n, target, thresholds >= 0),
    }


def _resampled_counts(
    confidence: np.ndarray, correct: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_cumulative_counts` and the distinct confidences, descending (G,)."""
    confidence, correct = _check(confidence, correct)
    thresholds, group = _confidence_groups(confidence)
    return (*_cumulative_counts(group, correct, indices, len(thresholds)), thresholds)


def _confidence_groups(confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct confidences, descending (G,), and each item's position among them (n,)."""
    negated, group = np.unique(-confidence, return_inverse=True)
    return -negated, group.reshape(-1)


def _cumulative_counts(
    group: np.ndarray, correct: np.ndarray, indices: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per resample and group g: items answered at threshold g, and how many right: (B, G) each."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[1] != len(group):
        raise ValueError(
            f"indices must have shape (B, {len(group)}) from resample_indices, got {indices.shape}"
        )
    # one bincount over (resample, group) keys instead of a loop over resamples
    keys = (group[indices] + (np.arange(indices.shape[0]) * n_groups)[:, None]).ravel()
    size = indices.shape[0] * n_groups
    counts = np.bincount(keys, minlength=size).reshape(-1, n_groups)
    right = np.bincount(keys, weights=correct[indices].ravel(), minlength=size).reshape(
        -1, n_groups
    )
    return counts.cumsum(axis=1).astype(float), right.cumsum(axis=1)


def _check(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.ndim != 1 or confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError(
            f"confidence and correct must be 1-d, non-empty and of the same length, got shapes "
            f"{confidence.shape} and {correct.shape}"
        )
    if np.isnan(confidence).any():
        raise ValueError("confidence contains NaN")
    return confidence, correct


def _check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1], got {target}")
