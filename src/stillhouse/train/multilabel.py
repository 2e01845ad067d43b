"""Multilabel tasks (recipes ``linear`` and ``encoder``): one-vs-rest binary logistic heads.

The features are the classify recipes' own (the recipe's :meth:`~.recipe.Recipe.plan` fits
them, given :func:`fit_ovr_head` as its head), and so are the saved files: the model is a
:class:`~.recipes.linear.LinearModel` or :class:`~.recipes.encoder.EncoderModel` whose head has
one independent binary logistic regression per label, loaded as a
:class:`~.model.MultilabelModel`. Each label's logit is
divided by its own temperature, fitted on the held-out split (binary NLL), and a label is
predicted when its calibrated probability is at least 0.5 (not tuned).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.evaluate.calibration import expected_calibration_error, fit_temperature
from stillhouse.evaluate.structured import multilabel_results
from stillhouse.task import Task
from stillhouse.train.answers import AnswerSet, held_out_split
from stillhouse.train.head import ABSENT_LABEL_BIAS, LinearHead
from stillhouse.train.measure import structured_held_out
from stillhouse.train.model import independent_probabilities
from stillhouse.train.recipe import Fitted, Fitting, Log, Progress, Recipe
from stillhouse.train.settings import TrainSettings

THRESHOLD = 0.5
N_RESAMPLES = 1000
CALIBRATION_METHOD = (
    "per-label temperature scaling on the held-out split (binary NLL; T = 1 for the labels in "
    "not_fitted: one class only or already perfectly separated there); a label is predicted "
    "when its calibrated probability is at least the threshold"
)


def fit_ovr_head(
    features: Any,
    indicator: np.ndarray,
    n_labels: int,
    sample_weight: np.ndarray,
    *,
    c: float,
    max_iter: int,
) -> LinearHead:
    """One binary logistic regression (L2 with inverse strength ``c``) per column of
    ``indicator`` (shape (n, k), True where the label applies), stacked as a (k, d) head.

    liblinear's primal trust-region solver: deterministic, and on 400 presidio texts × 28k
    TF-IDF features 6× faster than lbfgs for the same binary problem (0.34 s vs 1.95 s).

    A label that applies to none (or all) of the rows gets a zero weight row and a bias of
    :data:`ABSENT_LABEL_BIAS` (or its negation): probability ≈ 0 (or 1) for every text.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    dimension = features.shape[1]
    weight = np.zeros((n_labels, dimension), dtype=np.float32)
    bias = np.zeros(n_labels, dtype=np.float32)
    for k in range(n_labels):
        column = indicator[:, k]
        if column.all() or not column.any():
            bias[k] = -ABSENT_LABEL_BIAS if column.all() else ABSENT_LABEL_BIAS
            continue
        model = LogisticRegression(C=c, max_iter=max_iter, solver="liblinear")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features, column.astype(np.int64), sample_weight=sample_weight)
        weight[k] = model.coef_[0]
        bias[k] = model.intercept_[0]
    return LinearHead(weight, bias)


def fit_temperatures(logits: np.ndarray, indicator: np.ndarray) -> np.ndarray:
    """One temperature per label (shape (k,)) minimising the binary NLL of sigmoid(z / T) on
    held-out ``logits`` (n, k). A label is left at T = 1 where there is nothing to fit: its
    held-out column is all one class, or the logits' signs already separate it perfectly (the
    NLL would then fall all the way to the lowest temperature searched, 0.01, and turn every
    probability into 0 or 1 on the strength of a small split)."""
    temperatures = np.ones(logits.shape[1])
    for k in range(logits.shape[1]):
        column = indicator[:, k]
        if column.all() or not column.any() or unfitted(logits[:, k], column):
            continue
        # sigmoid(z / T) is the softmax of (0, z / T): the multiclass fit on two columns
        pairs = np.stack([np.zeros(len(column)), logits[:, k]], axis=1)
        temperatures[k] = fit_temperature(pairs, column.astype(np.int64))
    return temperatures


def unfitted(logits: np.ndarray, column: np.ndarray) -> bool:
    """Whether one label's held-out logits are perfectly separated at 0 (nothing to fit)."""
    return bool((logits[column] > 0).all() and (logits[~column] < 0).all())


def decision_ece(probs: np.ndarray, indicator: np.ndarray) -> float:
    """ECE over every (text, label) decision: confidence max(p, 1 − p), right when the decision
    at :data:`THRESHOLD` matches the gold; 10 equal-mass bins."""
    confidence = np.maximum(probs, 1 - probs).ravel()
    correct = ((probs >= THRESHOLD) == indicator).ravel()
    return expected_calibration_error(confidence, correct, bins=10, scheme="mass")


def fit_multilabel(
    recipe: Recipe,
    task: Task,
    answers: AnswerSet,
    settings: TrainSettings,
    say: Log,
    progress: Progress | None,
) -> Fitted:
    """Fit ``recipe``'s features with one-vs-rest heads on the training rows, calibrate and
    measure on the held-out rows, then (``settings.refit``) refit on all rows."""
    labels = task.label_names
    indicator = np.zeros((len(answers), len(labels)), dtype=bool)
    column = {label: k for k, label in enumerate(labels)}
    for row in range(len(answers)):
        for label in answers.labels_of(row):
            indicator[row, column[label]] = True
    weights = np.array(answers.weights, dtype=np.float64)
    train_rows, held_rows = held_out_split(answers, task, settings.holdout, settings.seed)
    # the recipe's checkpoint folder is unused: linear and encoder fit without checkpoints
    fitting = Fitting(
        task, answers.texts, indicator, weights, settings, fit_ovr_head, Path(), say, progress
    )
    plan = recipe.plan(fitting)
    say(f"fitting on {len(train_rows)} examples, calibrating on {len(held_rows)} held out")
    held_model = plan.fit(np.array(train_rows))
    held_logits = held_model.logits([answers.texts[i] for i in held_rows])
    held_truth = indicator[held_rows]
    temperatures = fit_temperatures(held_logits, held_truth)
    held_probs = independent_probabilities(held_logits, temperatures)
    predicted = [
        [label for label, p in zip(labels, row, strict=True) if p >= THRESHOLD]
        for row in held_probs
    ]
    gold = [answers.labels_of(i) for i in held_rows]
    held_out = structured_held_out(
        lambda indices: multilabel_results(gold, predicted, labels, indices),
        len(held_rows),
        n_resamples=N_RESAMPLES,
        seed=settings.seed,
        threshold=THRESHOLD,
    )
    calibration = {
        "method": CALIBRATION_METHOD,
        "temperature": {label: float(t) for label, t in zip(labels, temperatures, strict=True)},
        "not_fitted": [
            label
            for k, label in enumerate(labels)
            if held_truth[:, k].all()
            or not held_truth[:, k].any()
            or unfitted(held_logits[:, k], held_truth[:, k])
        ],
        "threshold": THRESHOLD,
        "threshold_tuned": False,
        "ece_before": decision_ece(
            independent_probabilities(held_logits, np.ones(len(labels))), held_truth
        ),
        "ece_after": decision_ece(held_probs, held_truth),
        "held_out": len(held_rows),
    }
    refit = settings.refit and recipe.refits
    final = plan.fit(np.arange(len(answers))) if refit else held_model
    return Fitted(
        model=final,
        hyper_parameters=plan.hyper_parameters,
        calibration=calibration,
        held_out=held_out,
        train_rows=len(train_rows),
        held_out_rows=len(held_rows),
        refit=refit,
        base_model=recipe.base_model(final),
        quantization=plan.quantization,
        extra={"head": "one-vs-rest binary logistic regression per label"},
    )
