"""The task's prompt on an LLM as a Predictor, so evaluate (and later serve) treat it like any
other system: label scoring with per-label probabilities (constrained generation, without
probabilities, on a backend that cannot score).

Each prediction's ``info`` counts tokens (what evaluate's efficiency family averages):

- label scoring (classification, multilabel yes/no): ``tokens_in``, the prompt's tokens (chat
  template included); ``tokens_in_new``, those after the fixed part (instructions, few-shot
  examples) that the runtime keeps decoded between texts, i.e. the prompt tokens this text
  really costs; ``tokens_out`` 0 (nothing is generated); ``tokens_decoded``, every token the
  runtime decoded for the batch (the new prompt tokens, the label tokens after each label's
  first, which the prompt's last logits score already, and the fixed part when it had to be
  decoded again) divided equally among the batch's texts. The prompt
  counts need a runtime that splits prompts (llama.cpp's ``prompt_tokens``), the decoded count
  one that counts (llama.cpp's ``tokens_processed``); otherwise they are left out.
- generation (constrained, free, spans, multilabel JSON): ``tokens_in`` / ``tokens_out`` as the
  runtime reports them for the request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from stillhouse.data.records import Prediction
from stillhouse.llm.answer import answer_many, content_free_probs
from stillhouse.llm.backend import Backend, BackendSettings, open_backend
from stillhouse.llm.prompts import ChatPrompt, build_prompt
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
        # whether answers come from label scoring (no generation): classify or multilabel
        self._scoring = self.backend.can_score and task.kind != "spans"
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
            decoded_before = getattr(self.backend, "tokens_processed", None)
            results = answer_many(self.backend, self.task, prompts, cuts, self.method, self._prior)  # type: ignore[arg-type]
            latency_ms = (time.perf_counter() - started) * 1000 / len(cuts)
            counts = self._scoring_tokens(prompts, decoded_before)
            predictions.extend(
                Prediction(r.answer or "", r.probs, latency_ms, {**r.info, **count, **_blocked(r)})
                for r, count in zip(results, counts, strict=True)
            )
        return predictions

    def _scoring_tokens(
        self, prompts: Sequence[ChatPrompt], decoded_before: int | None
    ) -> list[dict[str, float]]:
        """Token counts of a label-scoring batch (see the module docstring); empty dicts when
        the batch was answered by generation, whose answers carry their own counts."""
        if not self._scoring:
            return [{} for _ in prompts]
        split = getattr(self.backend, "prompt_tokens", None)
        counts: list[dict[str, float]] = []
        for prompt in prompts:
            count: dict[str, float] = {"tokens_out": 0}
            if callable(split):
                fixed, variable = split(prompt)
                count["tokens_in"] = len(fixed) + len(variable)
                count["tokens_in_new"] = len(variable)
            counts.append(count)
        decoded_after = getattr(self.backend, "tokens_processed", None)
        if isinstance(decoded_before, int) and isinstance(decoded_after, int):
            for count in counts:
                count["tokens_decoded"] = (decoded_after - decoded_before) / len(prompts)
        return counts

    def describe(self) -> dict[str, Any]:
        return {"kind": "llm", "method": self.method, **self.backend.describe()}

    def close(self) -> None:
        self.backend.close()


def _blocked(result: Any) -> dict[str, Any]:
    """A text ``[privacy]`` kept from the server is an abstention (sent to review), not an
    answer: evaluate counts it as such."""
    return {"abstained": True} if result.info.get("privacy_blocked") else {}
