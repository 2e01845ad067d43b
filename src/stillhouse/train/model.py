"""A trained classify or multilabel model folder as a Predictor: a recipe's fitted scorer (raw
logits over the card's labels) with the card's calibration applied.

Span models answer differently (spans, each with its own score) and are their recipe's own
Predictor (:mod:`stillhouse.train.recipes.spacy_ner`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.special import expit

from stillhouse.data.records import Prediction
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.calibration import apply_temperature


class Scorer(Protocol):
    """A recipe's fitted model: raw logits of shape (n, k) over the card's labels."""

    recipe: str

    def logits(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


class TrainedModel:
    """A trained model folder as a Predictor: calibrated probabilities over the card's labels.

    The classify model (one temperature, the most probable label); a kind with other answers or
    calibration (:class:`MultilabelModel`) overrides ``read_calibration``, ``calibrated``,
    ``answer`` and ``calibration_summary``. ``runtime`` is what runs the scorer (for
    ``describe``)."""

    kind = "classify"

    def __init__(
        self, path: Path, card: dict[str, Any], scorer: Scorer, *, runtime: str = "onnxruntime"
    ) -> None:
        self.path = path
        self.card = card
        self.scorer = scorer
        self.runtime = runtime
        self.labels: list[str] = list(card["labels"])
        self.read_calibration(card["calibration"])

    def read_calibration(self, calibration: dict[str, Any]) -> None:
        self.temperature = float(calibration["temperature"])

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from the scorer's logits."""
        return apply_temperature(logits, self.temperature)

    def answer(self, probs: np.ndarray) -> Any:
        """The answer for one text's probabilities."""
        return self.labels[int(probs.argmax())]

    def calibration_summary(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities, shape (len(texts), len(labels))."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        return self.calibrated(self.scorer.logits(list(texts)))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        start = time.perf_counter()
        probs = self.probabilities(texts)
        latency = (time.perf_counter() - start) * 1000 / max(len(texts), 1)
        return [
            Prediction(
                answer=self.answer(row),
                probs={label: float(p) for label, p in zip(self.labels, row, strict=True)},
                latency_ms=latency,
            )
            for row in probs
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "type": "trained-model",
            **({} if self.kind == "classify" else {"kind": self.kind}),
            "path": str(self.path),
            "recipe": self.card["recipe"],
            "model_sha256": self.card.get("model_sha256"),
            "size_bytes": self.card.get("size_bytes"),
            "quantization": self.card.get("quantization"),
            **self.calibration_summary(),
            "runtime": self.runtime,
        }


def independent_probabilities(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """Independent calibrated probabilities of a multilabel model, shape (n, k): the sigmoid of
    each label's logit divided by its own temperature."""
    return expit(logits / temperatures)


class MultilabelModel(TrainedModel):
    """A multilabel model folder as a Predictor: every label whose calibrated probability is at
    least the threshold, and the probability of each label (independent, need not sum to 1)."""

    kind = "multilabel"

    def __init__(
        self, path: Path, card: dict[str, Any], scorer: Scorer, *, runtime: str = "onnxruntime"
    ) -> None:
        try:
            super().__init__(path, card, scorer, runtime=runtime)
        except (KeyError, TypeError) as error:
            raise fail(
                Errors.E721,
                path=path,
                detail=f"its card has no per-label temperature or threshold ({error})",
            ) from None

    def read_calibration(self, calibration: dict[str, Any]) -> None:
        self.temperatures = np.array([calibration["temperature"][label] for label in self.labels])
        self.threshold = float(calibration["threshold"])

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return independent_probabilities(logits, self.temperatures)

    def answer(self, probs: np.ndarray) -> tuple[str, ...]:
        return tuple(
            label for label, p in zip(self.labels, probs, strict=True) if p >= self.threshold
        )

    def calibration_summary(self) -> dict[str, Any]:
        return {"threshold": self.threshold}
