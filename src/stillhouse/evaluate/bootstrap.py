"""Bootstrap confidence intervals, vectorised over resamples.

One ``(B, n)`` array of resample indices is drawn once per evaluation and reused for every
metric and every system, so intervals of different systems come from the same resamples and
paired comparisons (:mod:`stillhouse.evaluate.paired`) are paired by construction.

A *resampled metric* is a callable that takes an ``(m, n)`` integer array of item indices and
returns shape ``(m,)``: the metric computed on each row's items. Given ``np.arange(n)[None]`` it
returns the metric on the data as observed. The ``*_per_resample`` functions here and in
:mod:`stillhouse.evaluate.selective` take their data, then ``indices``, then keyword options, so
``functools.partial(macro_f1_per_resample, y_true, y_pred, n_labels=3)`` is one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

ResampledMetric = Callable[[np.ndarray], np.ndarray]


class Interval(NamedTuple):
    """A point estimate with the bounds of its confidence interval."""

    estimate: float
    low: float
    high: float


def resample_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap resamples of ``n`` items: shape ``(n_resamples, n)``, int32 (int64 for huge ``n``).

    Row ``b`` holds the indices of the items drawn, with replacement, for resample ``b``.
    Deterministic given ``seed``; draw it once and pass it to every metric and system.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n), dtype=dtype)


def resample_counts(indices: np.ndarray) -> np.ndarray:
    """How often each item was drawn in each resample: shape ``(B, n)``, float64.

    ``counts @ values`` sums per-item ``values`` (shape ``(n,)`` or ``(n, k)``) over each
    resample in one matrix product; one bincount over (resample, item) keys builds it.
    """
    indices = _check_indices(indices)
    b, n = indices.shape
    keys = (indices + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(keys, minlength=b * n).reshape(b, n).astype(float)


def observed_indices(n: int) -> np.ndarray:
    """The single "resample" that is the data as observed: ``np.arange(n)`` of shape ``(1, n)``."""
    return np.arange(n)[None, :]


def resampled_values(statistic: np.ndarray | ResampledMetric, indices: np.ndarray) -> np.ndarray:
    """The statistic on each resample: shape ``(B,)`` for ``indices`` of shape ``(B, n)``.

    ``statistic`` is either a per-item array of shape ``(n,)`` whose mean is the metric
    (1/0 correctness gives accuracy) or a resampled metric (see the module docstring).
    """
    indices = _check_indices(indices)
    if callable(statistic):
        return np.asarray(statistic(indices), dtype=float)
    values = np.asarray(statistic, dtype=float)
    if values.shape != (indices.shape[1],):
        raise ValueError(
            f"statistic has shape {values.shape}; indices resample {indices.shape[1]} items, "
            f"so per-item values must have shape ({indices.shape[1]},)"
        )
    return values[indices].mean(axis=1)


def percentile_interval(estimate: float, values: np.ndarray, confidence: float = 0.95) -> Interval:
    """Percentile-method interval: the (1−confidence)/2 and (1+confidence)/2 quantiles of ``values``.

    ``values``: shape ``(B,)``, the statistic on each resample. Quantiles use numpy's default
    linear interpolation (Hyndman–Fan type 7).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.asarray(values, dtype=float), [tail, 1 - tail])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_interval(
    statistic: np.ndarray | ResampledMetric, indices: np.ndarray, confidence: float = 0.95
) -> Interval:
    """The statistic on the observed data with its percentile bootstrap interval.

    ``statistic``: per-item values of shape ``(n,)`` (the metric is their mean) or a resampled
    metric; ``indices``: shape ``(B, n)`` from :func:`resample_indices`.
    """
    n = _check_indices(indices).shape[1]
    estimate = resampled_values(statistic, observed_indices(n))[0]
    return percentile_interval(estimate, resampled_values(statistic, indices), confidence)


def confusion_per_resample(
    y_true: np.ndarray, y_pred: np.ndarray, indices: np.ndarray, *, n_labels: int
) -> np.ndarray:
    """Confusion matrix of each resample: shape ``(B, n_labels, n_labels)``, int64.

    ``y_true``, ``y_pred``: shape ``(n,)``, label indices in ``[0, n_labels)``. Entry
    ``[b, t, p]`` counts the items of resample ``b`` with gold ``t`` predicted as ``p``.
    """
    y_true = _check_codes(y_true, "y_true", n_labels)
    y_pred = _check_codes(y_pred, "y_pred", n_labels)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    indices = _check_indices(indices)
    cells = n_labels * n_labels
    # one bincount over (resample, gold, predicted) keys instead of a loop over resamples
    keys = (y_true * n_labels + y_pred)[indices] + (np.arange(indices.shape[0]) * cells)[:, None]
    counts = np.bincount(keys.ravel(), minlength=indices.shape[0] * cells)
    return counts.reshape(indices.shape[0], n_labels, n_labels)


def f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-label F1 from confusion matrices: shape ``(..., k, k)`` (rows gold) → ``(..., k)``.

    F1 = 2·TP / (2·TP + FP + FN); a label never gold and never predicted gets 0 (as
    scikit-learn's ``zero_division=0``).
    """
    confusion = np.asarray(confusion)
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1).astype(float)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)  # gold + predicted
    return divide_or_zero(2 * true_positives, denominator)


def macro_f1_per_resample(
    y_true: np.ndarray, y_pred: np.ndarray, indices: np.ndarray, *, n_labels: int
) -> np.ndarray:
    """Macro-F1 (unweighted mean of per-label F1 over all ``n_labels``) of each resample: ``(B,)``.

    ``y_true``, ``y_pred``: shape ``(n,)``, label indices in ``[0, n_labels)``.
    """
    confusion = confusion_per_resample(y_true, y_pred, indices, n_labels=n_labels)
    return f1_from_confusion(confusion).mean(axis=-1)


def micro_f1_per_resample(
    true_positives: np.ndarray, predicted: np.ndarray, gold: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """Pooled (micro) F1 = 2·ΣTP / (Σpredicted + Σgold) of each resample: shape ``(B,)``.

    Each argument has shape ``(n,)`` with one count per item: e.g. per document, the spans
    matched, predicted and gold (:func:`stillhouse.evaluate.accuracy.span_match_counts`), or per
    row of a multilabel indicator matrix, the labels right, predicted and gold. 0 when nothing
    is predicted or gold.
    """
    indices = _check_indices(indices)
    columns = np.stack([np.asarray(a, dtype=float) for a in (true_positives, predicted, gold)])
    if columns.shape[1] != indices.shape[1]:
        raise ValueError(
            f"counts have {columns.shape[1]} items but indices resample {indices.shape[1]}"
        )
    sums = columns[:, indices].sum(axis=-1)
    return divide_or_zero(2 * sums[0], sums[1] + sums[2])


def divide_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise (broadcast), 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _check_indices(indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 2 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"indices must be a 2-d integer array (resamples × items) from resample_indices, "
            f"got shape {indices.shape} and dtype {indices.dtype}"
        )
    return indices


def _check_codes(codes: np.ndarray, name: str, n_labels: int) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-d array of label indices, got {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= n_labels):
        raise ValueError(f"{name} has label indices outside [0, {n_labels})")
    return codes.astype(np.int64)
