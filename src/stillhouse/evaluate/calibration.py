"""Calibration: how well confidences match accuracy, and temperature scaling to improve it."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

# log(T) is searched in [log 0.01, log 100]: wide enough for any sane model, and bounded so that
# perfectly separable data (where NLL keeps falling as T → 0) still gives a finite answer.
_LOG_TEMPERATURE_BOUNDS = (math.log(1e-2), math.log(1e2))


class ReliabilityBin(NamedTuple):
    """One bar of a reliability diagram: items with confidence in [low, high)."""

    low: float
    high: float
    mean_confidence: float
    accuracy: float
    count: int


def expected_calibration_error(
    confidence: np.ndarray,
    correct: np.ndarray,
    bins: int = 10,
    scheme: Literal["width", "mass"] = "width",
) -> float:
    """ECE: the mean over bins of |accuracy − mean confidence|, weighted by bin size.

    ``confidence``: shape (n,), the probability of the predicted answer; ``correct``: shape (n,),
    1 where the prediction was right. ``scheme="width"``: bins of equal width on [0, 1];
    ``"mass"``: bins with equal numbers of items after sorting by confidence (HELM's
    ``ece_10_bin``).
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.size == 0:
        return 0.0
    if scheme == "width":
        index = _width_bin_index(confidence, bins)
        groups = [index == b for b in range(bins)]
    else:
        order = np.argsort(confidence, kind="stable")
        groups = []
        for chunk in np.array_split(order, bins):
            mask = np.zeros(confidence.size, dtype=bool)
            mask[chunk] = True
            groups.append(mask)
    total = 0.0
    for mask in groups:
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> list[ReliabilityBin]:
    """The bars of a reliability diagram over ``bins`` equal-width bins on [0, 1].

    ``confidence``: shape (n,), the probability of the predicted answer; ``correct``: shape (n,),
    1 where it was right. Bins are [low, high), the last one also holds 1.0 — the same bins as
    ``expected_calibration_error(..., scheme="width")``, which equals
    Σ count/n · |accuracy − mean_confidence| over them. Bins with no items are left out.
    """
    confidence, correct = _check_confidence(confidence, correct)
    index = _width_bin_index(confidence, bins)
    counts = np.bincount(index, minlength=bins)
    confidence_sums = np.bincount(index, weights=confidence, minlength=bins)
    correct_sums = np.bincount(index, weights=correct, minlength=bins)
    edges = np.linspace(0, 1, bins + 1)
    return [
        ReliabilityBin(
            low=float(edges[b]),
            high=float(edges[b + 1]),
            mean_confidence=float(confidence_sums[b] / counts[b]),
            accuracy=float(correct_sums[b] / counts[b]),
            count=int(counts[b]),
        )
        for b in range(bins)
        if counts[b]
    ]


def brier_score(probs: np.ndarray, y_index: np.ndarray) -> float:
    """Multiclass Brier score: mean over items of Σ_j (probs[i, j] − [j = y_i])², in [0, 2].

    ``probs``: shape (n, k), a probability per label; ``y_index``: shape (n,), the gold label's
    column. This is Brier's original sum over all k columns, also for k = 2 (scikit-learn's
    ``scale_by_half=False``), so it is twice the usual binary Brier score.
    """
    probs, y_index = _check_scores(probs, y_index)
    one_hot = np.zeros_like(probs)
    one_hot[np.arange(len(y_index)), y_index] = 1.0
    return float(((probs - one_hot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(probs: np.ndarray, y_index: np.ndarray) -> float:
    """Mean −log probs[i, y_i] over items (natural log): the log loss.

    ``probs``: shape (n, k); ``y_index``: shape (n,), the gold label's column. A gold probability
    of 0 is clipped to machine epsilon (as scikit-learn's ``log_loss``), so the result is finite.
    """
    probs, y_index = _check_scores(probs, y_index)
    gold = probs[np.arange(len(y_index)), y_index]
    return float(-np.log(np.clip(gold, np.finfo(float).eps, 1.0)).mean())


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) row by row: shape (n, k) → probabilities of shape (n, k).

    ``logits`` may also be log-probabilities (e.g. normalised label log-likelihoods): softmax
    ignores a constant per row. T > 1 softens the probabilities, T < 1 sharpens them.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(np.asarray(logits, dtype=float) / temperature, axis=1)


def fit_temperature(logits: np.ndarray, y_index: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on held-out items.

    ``logits``: shape (n, k), logits or log-probabilities; ``y_index``: shape (n,), the gold
    label's column. Minimises over log T in [log 0.01, log 100] with a bounded scalar search;
    fit on a calibration split, then :func:`apply_temperature` to the test predictions.
    """
    logits, y_index = _check_scores(logits, y_index)
    rows = np.arange(len(logits))

    def nll(log_temperature: float) -> float:
        log_probs = log_softmax(logits / math.exp(log_temperature), axis=1)
        return float(-log_probs[rows, y_index].mean())

    result = minimize_scalar(
        nll, bounds=_LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-8}
    )
    return float(math.exp(result.x))


def held_out_temperature_scaling(
    probs: np.ndarray,
    y_index: np.ndarray,
    predicted: np.ndarray,
    *,
    seed: int = 0,
    calibration_share: float = 0.3,
    bins: int = 10,
    minimum: int = 20,
) -> dict[str, float | int] | None:
    """ECE and NLL before and after temperature scaling, on items the temperature never saw.

    The items are split by ``np.random.default_rng(seed).permutation(n)``: the first
    ``round(calibration_share · n)`` fit the temperature (:func:`fit_temperature` on the log
    probabilities), the rest are scored with the original and the rescaled probabilities.
    ``predicted``: shape (n,), the column of each item's answer (confidence is its probability;
    a temperature never changes which label is largest). None when either part would hold
    fewer than ``minimum`` items.
    """
    probs, y_index = _check_scores(probs, y_index)
    n = len(y_index)
    fit_size = round(calibration_share * n)
    if fit_size < minimum or n - fit_size < minimum:
        return None
    order = np.random.default_rng(seed).permutation(n)
    fit_part, held = order[:fit_size], order[fit_size:]
    log_probs = np.log(np.clip(probs, np.finfo(float).eps, 1.0))
    temperature = fit_temperature(log_probs[fit_part], y_index[fit_part])
    scaled = apply_temperature(log_probs[held], temperature)
    rows = np.arange(len(held))
    correct = (predicted[held] == y_index[held]).astype(float)
    return {
        "temperature": temperature,
        "calibration_items": int(fit_size),
        "evaluation_items": len(held),
        "ece_before": expected_calibration_error(
            probs[held, predicted[held]], correct, bins, scheme="mass"
        ),
        "ece_after": expected_calibration_error(
            scaled[rows, predicted[held]], correct, bins, scheme="mass"
        ),
        "nll_before": negative_log_likelihood(probs[held], y_index[held]),
        "nll_after": negative_log_likelihood(scaled, y_index[held]),
    }


def _width_bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence among ``bins`` equal-width bins [low, high); 1.0 goes in the last."""
    return np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)


def _check_confidence(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.ndim != 1 or confidence.shape != correct.shape:
        raise ValueError(
            f"confidence and correct must be 1-d of the same length, got shapes "
            f"{confidence.shape} and {correct.shape}"
        )
    return confidence, correct


def _check_scores(scores: np.ndarray, y_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of shape (n, k) as floats and gold columns of shape (n,), validated."""
    scores = np.asarray(scores, dtype=float)
    y_index = np.asarray(y_index)
    if scores.ndim != 2 or y_index.shape != (scores.shape[0],):
        raise ValueError(
            f"expected scores of shape (n, k) and y_index of shape (n,), got {scores.shape} "
            f"and {y_index.shape}"
        )
    if scores.shape[0] == 0:
        raise ValueError("no items: there is nothing to evaluate")
    if (
        not np.issubdtype(y_index.dtype, np.integer)
        or y_index.min() < 0
        or y_index.max() >= scores.shape[1]
    ):
        raise ValueError(f"y_index must hold column indices in [0, {scores.shape[1]})")
    return scores, y_index
