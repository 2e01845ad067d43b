"""Realistic data for evaluate/gate tests: a 5-label support-ticket task, a gold test set and
predictions files with a chosen accuracy, made with numpy from the gold labels.

Imported by tests/evaluate/test_*.py, tests/test_gate.py and tests/test_cli_evaluate.py
(pytest puts tests/ on sys.path for them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ("billing", "delivery", "refund", "account", "other")
LANGUAGES = ("en", "id", "fr")

_PHRASES = {
    "billing": "I was charged twice for order {i}, please check the invoice",
    "delivery": "Parcel {i} has been stuck at the depot for a week",
    "refund": "I returned item {i} and still have not received my money back",
    "account": "I cannot log in to account {i} after resetting my password",
    "other": "Do you have a store near postcode {i}?",
}


def task_text(gate: str = "", *, kind: str = "classify") -> str:
    """task.toml of the ticket task, lang as a meta field, with ``gate`` lines under [gate]."""
    labels = "\n".join(f'{label} = "Tickets about {label}."' for label in LABELS)
    text = (
        f'name = "tickets"\nkind = "{kind}"\ninstructions = "Route the support ticket."\n'
        f'[labels]\n{labels}\n[input]\nmeta = ["lang"]\n'
    )
    return text + (f"[gate]\n{gate}\n" if gate else "")


def write_task(folder: Path, gate: str = "", *, kind: str = "classify") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.toml"
    path.write_text(task_text(gate, kind=kind), encoding="utf-8")
    return path


def gold_rows(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` gold-labelled tickets ``{"id", "text", "label", "lang"}``, labels and languages mixed."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(LABELS, size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    languages = rng.choice(LANGUAGES, size=n, p=[0.5, 0.3, 0.2])
    return [
        {
            "id": f"t{i:03d}",
            "text": _PHRASES[str(label)].format(i=i),
            "label": str(label),
            "lang": str(lang),
        }
        for i, (label, lang) in enumerate(zip(labels, languages, strict=True))
    ]


def prediction_rows(
    rows: Sequence[dict[str, Any]], accuracy: float, seed: int, *, probs: bool = True
) -> list[dict[str, Any]]:
    """Predictions right on exactly round(accuracy·n) rows (chosen at random), a random other
    label elsewhere; probs whose argmax is the predicted label, more confident when right."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    right = np.zeros(n, dtype=bool)
    right[rng.choice(n, size=round(accuracy * n), replace=False)] = True
    predictions = []
    for row, is_right in zip(rows, right, strict=True):
        others = [label for label in LABELS if label != row["label"]]
        label = row["label"] if is_right else str(rng.choice(others))
        prediction: dict[str, Any] = {"id": row["id"], "label": label}
        if probs:
            # confidence > 0.5 keeps the predicted label the argmax
            confidence = rng.uniform(0.7, 0.995) if is_right else rng.uniform(0.55, 0.85)
            rest = rng.dirichlet(np.ones(len(LABELS) - 1)) * (1 - confidence)
            not_predicted = [name for name in LABELS if name != label]
            distribution = {label: confidence, **dict(zip(not_predicted, rest, strict=True))}
            prediction["probs"] = {name: round(float(distribution[name]), 6) for name in LABELS}
        predictions.append(prediction)
    return predictions


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
