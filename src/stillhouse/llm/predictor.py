"""The task's prompt on an LLM as a Predictor, so evaluate (and later serve) treat it like any
other system: label scoring with per-label probabilities (constrained generation, without
probabilities, on a backend that cannot score)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from stillhouse.data.records import Prediction
from stillhouse.llm.answer import answer_many, content_free_probs
from stillhouse.llm.backend import Backend, BackendSettings, open_backend
from stillhouse.llm.prompts import build_prompt
from stillhouse.task import Task


class LLMPredictor:
    """``predict(texts)`` with the task's zero/fixed-shot prompt, one text at a time."""

    def __init__(self, task: Task, model: str, settings: BackendSettings | None = None) -> None:
        from stillhouse.annotate import backend_settings

        self.task = task
        self.model = model
        self.backend: Backend = open_backend(model, settings or backend_settings(task))
        self.method = "score" if self.backend.can_score or task.kind == "spans" else "constrained"
        scoring = task.kind == "classify" and self.method == "score"
        self._prior = (
            content_free_probs(self.backend, task)
            if scoring and task.llm.contextual_calibration
            else None
        )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions in batches of ``[llm].batch_size`` texts (label scoring decodes each batch
        together); each prediction's latency is its batch's time shared equally."""
        predictions = []
        size = self.task.llm.batch_size
        for start in range(0, len(texts), size):
            started = time.perf_counter()
            cuts = [
                self.backend.truncate(text, self.task.llm.max_text_tokens)[0]
                for text in texts[start : start + size]
            ]
            prompts = [build_prompt(self.task, cut) for cut in cuts]
            results = answer_many(self.backend, self.task, prompts, cuts, self.method, self._prior)  # type: ignore[arg-type]
            latency_ms = (time.perf_counter() - started) * 1000 / len(cuts)
            predictions.extend(
                Prediction(r.answer or "", r.probs, latency_ms, r.info) for r in results
            )
        return predictions

    def describe(self) -> dict[str, Any]:
        return {"kind": "llm", "method": self.method, **self.backend.describe()}

    def close(self) -> None:
        self.backend.close()
