"""Robustness and fairness: how a system's answers change when its test texts are perturbed.

For every perturbation (:mod:`stillhouse.evaluate.perturb`) the system predicts the perturbed
texts again; only texts the perturbation changed are re-predicted (an unchanged text keeps its
original prediction). Reported per perturbation: accuracy, the *flip rate* (share of all items
whose predicted label differs from the prediction on the original text) and how many texts the
perturbation changed; per family, the *worst-case accuracy* as HELM reports it: an item counts
as right only if the system is right on the original text and under every perturbation of
that family that was run. Every rate has a bootstrap interval from the evaluation's shared
resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stillhouse.evaluate.bootstrap import Interval, bootstrap_interval
from stillhouse.evaluate.perturb import PERTURBATIONS, perturb

# predict(texts) → label indices of shape (len(texts),), already validated.
PredictLabels = Callable[[Sequence[str]], np.ndarray]


def measure_perturbations(
    texts: Sequence[str],
    predicted: np.ndarray,
    gold: np.ndarray,
    names: Sequence[str],
    predict: PredictLabels,
    *,
    seed: int,
    indices: np.ndarray,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The ``robustness`` section of a system in results.json (see results.py).

    ``predicted``, ``gold``: shape (n,), label indices of the system's answers on the original
    texts and of the gold labels; ``names``: perturbation names, in report order; ``seed``:
    the perturbations' seed; ``indices``: bootstrap resamples of shape (B, n).
    """
    original = (predicted == gold).astype(np.int64)
    rows: dict[str, Any] = {}
    worst = {"robustness": original.copy(), "fairness": original.copy()}
    for name in names:
        perturbation = PERTURBATIONS[name]
        perturbed = perturb(texts, name, seed)
        changed = np.array([new != old for new, old in zip(perturbed, texts, strict=True)])
        answers = predicted.copy()
        if changed.any():
            answers[changed] = predict([perturbed[i] for i in np.flatnonzero(changed)])
        correct = (answers == gold).astype(np.int64)
        flipped = (answers != predicted).astype(np.int64)
        worst[perturbation.family] &= correct
        accuracy = bootstrap_interval(correct, indices, confidence)
        rows[name] = {
            "family": perturbation.family,
            "description": perturbation.description,
            "changed": int(changed.sum()),
            "accuracy": _interval(accuracy),
            "accuracy_drop": float(original.mean() - accuracy.estimate),
            "flip_rate": _interval(bootstrap_interval(flipped, indices, confidence)),
            "flipped": int(flipped.sum()),
        }
    ran = {family: [n for n in names if PERTURBATIONS[n].family == family] for family in worst}
    highest = max(rows, key=lambda n: rows[n]["flip_rate"]["estimate"]) if rows else None
    return {
        "seed": seed,
        "perturbations": rows,
        "worst_case_accuracy": _worst(worst["robustness"], ran["robustness"], indices, confidence),
        "fairness_worst_case_accuracy": _worst(
            worst["fairness"], ran["fairness"], indices, confidence
        ),
        "max_flip_rate": None
        if highest is None
        else {"perturbation": highest, "value": rows[highest]["flip_rate"]["estimate"]},
    }


def _worst(
    correct: np.ndarray, ran: list[str], indices: np.ndarray, confidence: float
) -> dict[str, Any] | None:
    if not ran:
        return None
    return {"over": ran, **_interval(bootstrap_interval(correct, indices, confidence))}


def _interval(interval: Interval) -> dict[str, float]:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}
