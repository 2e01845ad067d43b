"""A real system for evaluate tests: TF-IDF + logistic regression (scikit-learn) trained on a
quarter of banking77's train split (about 2,500 texts, half a second), as a Predictor.

Imported by the tests under tests/evaluate that need a system which can answer new texts
(perturbations, efficiency, reproducibility). Data: ../shared/datasets/banking77 (CC BY 4.0,
Casanueva et al. 2020); tests skip with a message where that folder is absent.
"""

from __future__ import annotations

import csv
import json
import pickle
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from threadpoolctl import threadpool_limits

from stillhouse.data.records import Prediction

REPO = Path(__file__).resolve().parents[2]
BANKING = REPO.parent / "shared" / "datasets" / "banking77"
TASK_TOML = REPO / "examples" / "banking77" / "task.toml"


def require_banking() -> None:
    if not (BANKING / "test.csv").is_file():
        pytest.skip(f"banking77 is not in {BANKING} (the shared datasets folder is absent)")


def read_csv(name: str) -> list[dict[str, str]]:
    with (BANKING / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def sample_test_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` banking77 test rows drawn at random (sorted by their position), with ids."""
    rows = read_csv("test.csv")
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return [{"id": f"b{i:04d}", **rows[i]} for i in chosen]


def write_banking_task(folder: Path, gate: str = "", meta: Sequence[str] = ()) -> Path:
    """examples/banking77/task.toml (77 labels, text/category columns) with ``[gate]`` lines
    and ``meta`` fields under ``[input]``."""
    folder.mkdir(parents=True, exist_ok=True)
    # the example's own [gate] (its last table) gives way to the rules a test checks
    text = TASK_TOML.read_text(encoding="utf-8").partition("\n[gate]\n")[0]
    text += f"\n[gate]\n{gate}\n" if gate else ""
    if meta:
        assert text.count("[input]\n") == 1, "examples/banking77/task.toml changed"
        text = text.replace("[input]\n", f"[input]\nmeta = {json.dumps(list(meta))}\n")
    path = folder / "task.toml"
    path.write_text(text, encoding="utf-8")
    return path


def write_rows_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@cache
def trained_pipeline() -> Pipeline:
    train = read_csv("train.csv")[::4]  # the file is sorted by label: every 4th row keeps all 77
    model = make_pipeline(
        TfidfVectorizer(sublinear_tf=True), LogisticRegression(C=20, max_iter=200)
    )
    with threadpool_limits(1):  # BLAS threads only fight each other on a shared 2-core machine
        return model.fit([row["text"] for row in train], [row["category"] for row in train])


class TfidfSystem:
    """The trained pipeline as a Predictor, its pickle on disk so its size can be measured."""

    def __init__(self, labels: Sequence[str], folder: Path) -> None:
        self.labels = list(labels)
        self.model = trained_pipeline()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "model.pkl"
        self.path.write_bytes(pickle.dumps(self.model))
        classes = list(self.model.classes_)
        self._columns = [classes.index(label) if label in classes else -1 for label in self.labels]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        started = time.perf_counter()
        probs = self.model.predict_proba(list(texts))
        latency_ms = (time.perf_counter() - started) * 1000 / max(len(texts), 1)
        predictions = []
        for row in probs:
            by_label = {
                label: float(row[column]) if column >= 0 else 0.0
                for label, column in zip(self.labels, self._columns, strict=True)
            }
            answer = max(by_label, key=by_label.__getitem__)
            predictions.append(Prediction(answer, by_label, latency_ms))
        return predictions

    def describe(self) -> dict[str, Any]:
        classifier = self.model[-1]
        return {
            "kind": "sklearn",
            "model": "tfidf+logistic-regression",
            "path": str(self.path),
            "parameters": int(classifier.coef_.size + classifier.intercept_.size),
        }
