"""Loading a trained model folder as a Predictor, after checking it is complete and compatible.

A folder is complete when ``card.json`` parses, names this format and a version this code
reads, and every model file it lists exists with the recorded sha256 (a copy cut short or a
file from another model is refused, not silently used).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stillhouse.data.records import Prediction
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.calibration import apply_temperature
from stillhouse.provenance import file_sha256
from stillhouse.task import Task

FORMAT = "stillhouse-model"
FORMAT_VERSION = 1
CARD_FILE = "card.json"
README_FILE = "README.md"
_REQUIRED = (
    "format",
    "format_version",
    "recipe",
    "labels",
    "hyper_parameters",
    "files",
    "calibration",
)


class Scorer(Protocol):
    """A recipe's fitted model: raw logits of shape (n, k) over the card's labels."""

    recipe: str

    def logits(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...


def read_card(path: str | Path, *, verify_files: bool = True) -> dict[str, Any]:
    """The folder's card, checked: E720 no folder, E721 incomplete, E722 another format version."""
    folder = Path(path)
    if not folder.is_dir():
        raise fail(Errors.E720, path=folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise fail(Errors.E721, path=folder, detail=f"it has no {CARD_FILE}")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise fail(
            Errors.E721, path=folder, detail=f"{CARD_FILE} is not valid JSON ({error})"
        ) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise fail(Errors.E721, path=folder, detail=f"{CARD_FILE} is not a stillhouse model card")
    if card.get("format_version") != FORMAT_VERSION:
        raise fail(
            Errors.E722, path=folder, found=card.get("format_version"), expected=FORMAT_VERSION
        )
    missing = [key for key in _REQUIRED if key not in card]
    if missing:
        raise fail(Errors.E721, path=folder, detail=f"{CARD_FILE} lacks {', '.join(missing)}")
    if verify_files:
        for name, recorded in card["files"].items():
            file = folder / name
            if not file.is_file():
                raise fail(Errors.E721, path=folder, detail=f"model file {name} is missing")
            if file_sha256(file) != recorded["sha256"]:
                raise fail(
                    Errors.E721,
                    path=folder,
                    detail=f"model file {name} does not have the sha256 recorded in {CARD_FILE}",
                )
    return card


class TrainedModel:
    """A trained model folder as a Predictor: calibrated probabilities over the card's labels.

    The classify model (one temperature, the most probable label); a kind with other answers or
    calibration (:class:`stillhouse.train.multilabel.MultilabelModel`) overrides
    ``read_calibration``, ``calibrated``, ``answer`` and ``calibration_summary``."""

    kind = "classify"

    def __init__(self, path: Path, card: dict[str, Any], scorer: Scorer) -> None:
        self.path = path
        self.card = card
        self.scorer = scorer
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
            "runtime": {"linear": "numpy/scipy", "lora-llm": "llama.cpp"}.get(
                self.card["recipe"], "onnxruntime"
            ),
        }


def load_model(
    path: str | Path, *, threads: int | None = None, task: Task | None = None
) -> TrainedModel:
    """Load a model folder written by ``stillhouse train``; with ``task``, its labels must be the
    task's labels in the same order (E723)."""
    from stillhouse.train.contrastive import ContrastiveEncoderModel
    from stillhouse.train.encoder import EncoderModel
    from stillhouse.train.linear import LinearModel
    from stillhouse.train.lora_encoder import LoraEncoderModel
    from stillhouse.train.lora_llm import LoraLlmModel

    folder = Path(path)
    card = read_card(folder)
    if task is not None and list(card["labels"]) != task.label_names:
        raise fail(
            Errors.E723,
            path=folder,
            found=", ".join(card["labels"]),
            task=task.path or task.name,
            expected=", ".join(task.label_names),
        )
    if card.get("task", {}).get("kind", "classify") != "classify":
        from stillhouse.train.structured import load_structured

        return load_structured(folder, card, threads=threads)  # type: ignore[no-any-return]
    recipe = card["recipe"]
    scorer: Scorer
    if recipe == "linear":
        scorer = LinearModel.load(folder, card["hyper_parameters"])
    elif recipe == "encoder":
        scorer = EncoderModel.load(folder, card["hyper_parameters"], threads)
    elif recipe == "contrastive-encoder":
        scorer = ContrastiveEncoderModel.load(folder, card["hyper_parameters"], threads)
    elif recipe == "lora-encoder":
        scorer = LoraEncoderModel.load(folder, card["hyper_parameters"], threads)
    elif recipe == "lora-llm":
        scorer = LoraLlmModel.load(folder, card, threads)
    else:
        raise fail(
            Errors.E721, path=folder, detail=f"its recipe `{recipe}` is not one this version loads"
        )
    return TrainedModel(folder, card, scorer)
