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

``[guard] injection`` (:mod:`stillhouse.guard.screen`): every text is screened before its batch
goes to the LLM and carries ``info["guard"]``; under ``route`` and ``block`` a flagged text is not
sent: it is an abstention (answer ``""``, or ``()`` for multilabel and spans; ``abstained``;
probabilities uniform, or 0.5 per label for multilabel, where the LLM's answers have them). A
cascade screens its texts itself and turns its LLM stages' screening off (:attr:`guard`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from stillhouse.data.records import Prediction
from stillhouse.guard.screen import guard_info, keeps_from_llm, screen_texts
from stillhouse.llm.answer import answer_many, content_free_probs
from stillhouse.llm.backend import Backend, BackendSettings, open_backend
from stillhouse.llm.prompts import ChatPrompt, build_prompt
from stillhouse.llm.shortlist import answer_shortlisted, shortlister_for, task_seed
from stillhouse.task import GuardSection, Task


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
        # label shortlists on many-label tasks, the task's fixed examples as the seed
        self._shortlist = shortlister_for(task, task_seed(task))
        # None: no screening (mode off, or a cascade that screens its texts before its stages)
        self.guard: GuardSection | None = task.guard if task.guard.injection != "off" else None

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
            guard = self.guard
            screened = screen_texts(cuts, guard) if guard is not None else []
            kept = {i for i, s in enumerate(screened) if keeps_from_llm(s, guard)}  # type: ignore[arg-type]
            sent = [cut for i, cut in enumerate(cuts) if i not in kept]
            prompts = [build_prompt(self.task, cut) for cut in sent]
            decoded_before = getattr(self.backend, "tokens_processed", None)
            results = self._answer(prompts, sent) if sent else []
            latency_ms = (time.perf_counter() - started) * 1000 / len(cuts)
            counts = self._scoring_tokens(prompts, decoded_before)
            answered = iter(zip(results, counts, strict=True))
            for i in range(len(cuts)):
                info = {"guard": guard_info(screened[i], guard)} if guard is not None else {}
                if i in kept:
                    predictions.append(self._abstention(latency_ms, info))
                    continue
                r, count = next(answered)
                predictions.append(
                    Prediction(
                        # no answer: "" for classify, () for multilabel/spans (an empty label
                        # set is an answer, not a missing one)
                        r.answer
                        if r.answer is not None
                        else ("" if self.task.kind == "classify" else ()),
                        r.probs,
                        latency_ms,
                        {**r.info, **count, **_blocked(r), **info},
                    )
                )
        return predictions

    def _answer(self, prompts: Sequence[ChatPrompt], texts: Sequence[str]) -> list[Any]:
        """The LLM's answers; with a label shortlist (llm/shortlist.py) each text scores only
        its retrieved labels."""
        if self._shortlist is None:
            return answer_many(self.backend, self.task, prompts, texts, self.method, self._prior)  # type: ignore[arg-type]
        plans = self._shortlist.plan(texts)
        return answer_shortlisted(self.backend, self.task, prompts, plans, self.method, self._prior)  # type: ignore[arg-type]

    def _abstention(self, latency_ms: float, info: dict[str, Any]) -> Prediction:
        """The prediction for a text ``[guard]`` kept from the LLM: no answer, and probabilities
        only where the LLM's own answers have them (evaluate wants all or none)."""
        labels = self.task.label_names
        probs: dict[str, float] | None = None
        if self._scoring and self.task.kind == "classify" and self.method == "score":
            probs = dict.fromkeys(labels, 1.0 / len(labels))
        elif self._scoring and self.task.kind == "multilabel":
            probs = dict.fromkeys(labels, 0.5)
        answer: Any = "" if self.task.kind == "classify" else ()
        return Prediction(answer, probs, latency_ms, {**info, "abstained": True})

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
