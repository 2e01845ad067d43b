"""Multilabel tasks, recipes ``linear`` and ``encoder``: one-vs-rest binary logistic heads.

The features are the classify recipes' own (TF-IDF word + character n-grams fitted by
:func:`stillhouse.train.linear.fit_linear`; MiniLM ONNX embeddings from
:func:`stillhouse.train.encoder.open_encoder`), and so are the saved files: the model is a
:class:`~stillhouse.train.linear.LinearModel` or :class:`~stillhouse.train.encoder.EncoderModel`
whose head has one independent binary logistic regression per label. Each label's logit is
divided by its own temperature, fitted on the held-out split (binary NLL), and a label is
predicted when its calibrated probability is at least 0.5 (not tuned).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from stillhouse.errors import Errors, fail
from stillhouse.evaluate.calibration import expected_calibration_error, fit_temperature
from stillhouse.evaluate.structured import multilabel_results
from stillhouse.task import Task
from stillhouse.train.answers import AnswerSet, held_out_split
from stillhouse.train.head import ABSENT_LABEL_BIAS, LinearHead
from stillhouse.train.load import TrainedModel
from stillhouse.train.measure import structured_held_out
from stillhouse.train.memory import encoder_bytes, memory_check
from stillhouse.train.run import TrainSettings
from stillhouse.train.structured import Fitted

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


def probabilities(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """Independent calibrated probabilities, shape (n, k)."""
    return expit(logits / temperatures)


def decision_ece(probs: np.ndarray, indicator: np.ndarray) -> float:
    """ECE over every (text, label) decision: confidence max(p, 1 − p), right when the decision
    at :data:`THRESHOLD` matches the gold; 10 equal-mass bins."""
    confidence = np.maximum(probs, 1 - probs).ravel()
    correct = ((probs >= THRESHOLD) == indicator).ravel()
    return expected_calibration_error(confidence, correct, bins=10, scheme="mass")


def fit_multilabel(
    task: Task,
    answers: AnswerSet,
    settings: TrainSettings,
    say: Callable[[str], None],
    progress: Callable[..., None] | None,
) -> Fitted:
    """Fit the one-vs-rest recipe on the training rows, calibrate and measure on the held-out
    rows, then (``settings.refit``) refit on all rows."""
    labels = task.label_names
    indicator = np.zeros((len(answers), len(labels)), dtype=bool)
    column = {label: k for k, label in enumerate(labels)}
    for row in range(len(answers)):
        for label in answers.labels_of(row):
            indicator[row, column[label]] = True
    weights = np.array(answers.weights, dtype=np.float64)
    train_rows, held_rows = held_out_split(answers, task, settings.holdout, settings.seed)
    fit, hyper_parameters, base_model, quantization = _recipe(
        task, answers.texts, indicator, weights, settings, say, progress
    )
    say(f"fitting on {len(train_rows)} examples, calibrating on {len(held_rows)} held out")
    held_model = fit(np.array(train_rows))
    held_logits = held_model.logits([answers.texts[i] for i in held_rows])
    held_truth = indicator[held_rows]
    temperatures = fit_temperatures(held_logits, held_truth)
    held_probs = probabilities(held_logits, temperatures)
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
        "ece_before": decision_ece(probabilities(held_logits, np.ones(len(labels))), held_truth),
        "ece_after": decision_ece(held_probs, held_truth),
        "held_out": len(held_rows),
    }
    final = fit(np.arange(len(answers))) if settings.refit else held_model
    return Fitted(
        model=final,
        hyper_parameters=hyper_parameters,
        calibration=calibration,
        held_out=held_out,
        train_rows=len(train_rows),
        held_out_rows=len(held_rows),
        refit=settings.refit,
        base_model=base_model,
        quantization=quantization,
        extra={"head": "one-vs-rest binary logistic regression per label"},
    )


def _recipe(
    task: Task,
    texts: list[str],
    indicator: np.ndarray,
    weights: np.ndarray,
    settings: TrainSettings,
    say: Callable[[str], None],
    progress: Callable[..., None] | None,
) -> tuple[Callable[[np.ndarray], Any], dict[str, Any], dict[str, str] | None, str]:
    """A function fitting the recipe on some rows, its hyper-parameters, base model and
    quantization (the encoder embeds every text once; both fits reuse the vectors)."""
    n_labels = len(task.label_names)
    if settings.recipe == "linear":
        from stillhouse.train.linear import fit_linear, linear_params, params_to_json

        params = linear_params(settings)

        def fit_rows_linear(rows: np.ndarray) -> Any:
            chosen = [texts[i] for i in rows]
            return fit_linear(
                chosen,
                indicator[rows],
                n_labels,
                weights[rows],
                params,
                memory_check(settings),
                head_fitter=fit_ovr_head,
            )

        return fit_rows_linear, params_to_json(params), None, "none"

    from stillhouse.train.encoder import EncoderModel, EncoderParams, open_encoder
    from stillhouse.train.export import BASE_LICENSE, BASE_MODEL
    from stillhouse.train.linear import params_to_json

    encoder_params = EncoderParams(
        c=settings.c or EncoderParams.c, quantize=settings.quantize or "int8"
    )
    memory_check(settings)(*encoder_bytes(len(texts), n_labels, encoder_params))
    say(f"embedding {len(texts)} texts with all-MiniLM-L6-v2 (ONNX, {encoder_params.quantize})")
    encoder = open_encoder(encoder_params, settings.threads)
    features = encoder[0].embed(texts, batch_size=encoder_params.batch_size, progress=progress)

    def fit_rows_encoder(rows: np.ndarray) -> Any:
        head = fit_ovr_head(
            features[rows],
            indicator[rows],
            n_labels,
            weights[rows],
            c=encoder_params.c,
            max_iter=encoder_params.max_iter,
        )
        return EncoderModel(encoder[0], head, encoder_params, encoder[1], encoder[2])

    base = {"name": BASE_MODEL, "license": BASE_LICENSE}
    return fit_rows_encoder, params_to_json(encoder_params), base, encoder_params.quantize


class MultilabelModel(TrainedModel):
    """A multilabel model folder as a Predictor: every label whose calibrated probability is at
    least the threshold, and the probability of each label (independent, need not sum to 1)."""

    kind = "multilabel"

    def read_calibration(self, calibration: dict[str, Any]) -> None:
        self.temperatures = np.array([calibration["temperature"][label] for label in self.labels])
        self.threshold = float(calibration["threshold"])

    @classmethod
    def load(
        cls, folder: Path, card: dict[str, Any], threads: int | None = None
    ) -> MultilabelModel:
        from stillhouse.train.encoder import EncoderModel
        from stillhouse.train.linear import LinearModel

        if card["recipe"] == "linear":
            scorer: Any = LinearModel.load(folder, card["hyper_parameters"])
        else:
            scorer = EncoderModel.load(folder, card["hyper_parameters"], threads)
        try:
            return cls(folder, card, scorer)
        except (KeyError, TypeError) as error:
            raise fail(
                Errors.E721,
                path=folder,
                detail=f"its card has no per-label temperature or threshold ({error})",
            ) from None

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return probabilities(logits, self.temperatures)

    def answer(self, probs: np.ndarray) -> tuple[str, ...]:
        return tuple(
            label for label, p in zip(self.labels, probs, strict=True) if p >= self.threshold
        )

    def calibration_summary(self) -> dict[str, Any]:
        return {"threshold": self.threshold}
