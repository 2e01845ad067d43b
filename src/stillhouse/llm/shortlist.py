"""Label shortlists: the LLM scores only the retriever's top K labels of a many-label task.

``[llm].shortlist = K`` (unset: 10 for a classify task with more than 20 labels, else off;
0: off; K at or above the number of labels: off). For each text the
:class:`~stillhouse.llm.retrieval.LabelRetriever` ranks every label and the LLM scores the top K
labels' trie only, which costs a fraction of scoring all of them.

The probabilities stay honest: the LLM's distribution over the shortlist is scaled by the
shortlist's coverage ``c``, the chance that the gold label is in it (measured on the labelled
seed by leave-one-out, else ``[llm].shortlist_coverage``, an assumption), and the remaining
``1 - c`` is spread over the other labels in proportion to the retriever's probabilities. Each
answer's ``info`` records the shortlist, ``c`` and where ``c`` came from.

With ``--shots k`` and a seed, the k demonstrations of a text are drawn to cover its top
``[llm].shortlist_cover`` (default 0: none, the k nearest only) shortlisted labels (one nearest seed text each)
before the nearest seed texts fill the rest
(retrieval-based in-context learning for many labels, Milios et al. 2023).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stillhouse.data.records import Example
from stillhouse.errors import Errors, fail
from stillhouse.guard.privacy import PrivacyBlocked
from stillhouse.llm.answer import LLMAnswer, Method, calibrate, parse_label, softmax
from stillhouse.llm.backend import Backend
from stillhouse.llm.prompts import ChatPrompt
from stillhouse.llm.retrieval import LabelRetriever
from stillhouse.task import Task

SHORTLIST_VERSION = 1  # part of cache keys and annotator ids: bump when plans change meaning
AUTO_SHORTLIST = 10
AUTO_ABOVE_LABELS = 20


def shortlist_size(task: Task, override: int | None = None) -> int:
    """The K in effect (0: off) for ``task``, ``override`` (--shortlist) before ``[llm]``.

    E560 for a shortlist asked of a task that is not ``classify``; E561 for K = 1 (no choice
    left to the LLM)."""
    asked = override if override is not None else task.llm.shortlist
    where = "--shortlist" if override is not None else "[llm].shortlist"
    if asked is None:
        many = task.kind == "classify" and len(task.label_names) > AUTO_ABOVE_LABELS
        return AUTO_SHORTLIST if many else 0
    if asked and task.kind != "classify":
        raise fail(Errors.E560, where=where, k=asked, kind=task.kind)
    if asked == 1:
        raise fail(Errors.E561, where=where)
    return 0 if asked >= len(task.label_names) else asked


@dataclass(frozen=True)
class Plan:
    """One text's shortlist (label indexes, best first), its coverage, the retriever's
    probabilities over all labels and the demonstrations for its prompt."""

    indexes: tuple[int, ...]
    coverage: float
    source: str
    retriever: np.ndarray
    demos: tuple[Example, ...] = ()

    def record(self, labels: Sequence[str]) -> dict[str, Any]:
        """What an annotation's details keep."""
        return {
            "shortlist": [labels[i] for i in self.indexes],
            "shortlist_coverage": round(self.coverage, 4),
            "shortlist_coverage_source": self.source,
        }

    def key(self) -> list[Any]:
        """The part of a cache key that shapes the answer beyond the prompt."""
        return [SHORTLIST_VERSION, list(self.indexes), round(self.coverage, 6)]


class Shortlister:
    """Plans shortlists for ``task`` with ``k`` labels, from its labels and ``seed``."""

    def __init__(self, task: Task, k: int, seed: Sequence[Example] = ()) -> None:
        self.task = task
        self.k = k
        self.cover = task.llm.shortlist_cover
        self.retriever = LabelRetriever(task, seed)
        loo = self.retriever.leave_one_out
        if loo is not None:
            self.coverage = loo.coverage(k)
            self.source = f"leave-one-out on {loo.n} seed texts"
        else:
            self.coverage = task.llm.shortlist_coverage
            self.source = "assumed ([llm].shortlist_coverage; no labelled seed)"

    def settings(self) -> dict[str, Any]:
        """Everything that shapes plans, for annotator ids."""
        return {
            "version": SHORTLIST_VERSION,
            "k": self.k,
            "coverage": round(self.coverage, 6),
            "seed": len(self.retriever.seed),
        }

    def plan(
        self, texts: Sequence[str], ids: Sequence[str] | None = None, shots: int = 0
    ) -> list[Plan]:
        """A plan per text; ``ids`` keep a seed text from retrieving itself; ``shots`` > 0
        draws that many demonstrations from the seed."""
        vectors = self.retriever.embed_texts(texts)
        scores = self.retriever.scores(vectors, ids)
        probs = self.retriever.probabilities(scores)
        plans = []
        for row, (vector, score) in enumerate(zip(vectors, scores, strict=True)):
            top = tuple(int(i) for i in np.argsort(-score, kind="stable")[: self.k])
            demos = self.retriever.demonstrations(
                vector, ids[row] if ids is not None else None, top, shots, self.cover
            )
            plans.append(Plan(top, self.coverage, self.source, probs[row], tuple(demos)))
        return plans


def shortlister_for(
    task: Task, seed: Sequence[Example] = (), override: int | None = None
) -> Shortlister | None:
    """The task's shortlister, None when shortlists are off."""
    k = shortlist_size(task, override)
    return Shortlister(task, k, seed) if k else None


def task_seed(task: Task) -> list[Example]:
    """The task's fixed few-shot examples as a seed (what the predictor has without data)."""
    return [
        Example(f"task-shot-{i}", shot.text, gold=shot.label)
        for i, shot in enumerate(task.examples)
        if shot.label is not None
    ]


def mix(
    labels: Sequence[str], scores: np.ndarray, plan: Plan, prior: np.ndarray | None
) -> LLMAnswer:
    """The answer from the LLM's log-likelihoods of the shortlisted labels (``scores`` over all
    labels; only the shortlist's entries are read): its softmax over the shortlist times the
    coverage, the rest spread by the retriever's probabilities."""
    chosen = np.array(plan.indexes)
    inside = softmax(scores[chosen])
    info: dict[str, Any] = plan.record(labels)
    if prior is not None:
        info["uncalibrated_top"] = labels[int(chosen[np.argmax(inside)])]
        inside = calibrate(inside, prior[chosen])
    probs = np.zeros(len(labels))
    probs[chosen] = plan.coverage * inside
    rest = np.ones(len(labels), dtype=bool)
    rest[chosen] = False
    weights = plan.retriever[rest]
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(rest.sum(), 1 / rest.sum())
    probs[rest] = (1.0 - plan.coverage) * weights
    return LLMAnswer(
        labels[int(np.argmax(probs))], dict(zip(labels, probs.tolist(), strict=True)), info
    )


def answer_shortlisted(
    backend: Backend,
    task: Task,
    prompts: Sequence[ChatPrompt],
    plans: Sequence[Plan],
    method: Method,
    prior: np.ndarray | None = None,
) -> list[LLMAnswer]:
    """Classify answers with shortlists: label scoring of each text's shortlist only (batched
    across texts where the backend can, see ``score_label_subsets``), or generation restricted
    to the shortlist (``constrained``) or matched against every label (``generate``)."""
    labels = task.label_names
    if backend.can_score and method == "score":
        subsets = [plan.indexes for plan in plans]
        if hasattr(backend, "score_label_subsets"):
            rows = backend.score_label_subsets(prompts, labels, subsets)
        else:
            rows = [
                _score_subset(backend, p, labels, s) for p, s in zip(prompts, subsets, strict=True)
            ]
        return [mix(labels, row, plan, prior) for row, plan in zip(rows, plans, strict=True)]
    return [
        _generate(backend, p, labels, plan, method) for p, plan in zip(prompts, plans, strict=True)
    ]


def _score_subset(
    backend: Backend, prompt: ChatPrompt, labels: Sequence[str], subset: Sequence[int]
) -> np.ndarray:
    row = np.full(len(labels), -np.inf)
    row[list(subset)] = backend.score_labels(prompt, [labels[i] for i in subset])
    return row


def _generate(
    backend: Backend, prompt: ChatPrompt, labels: Sequence[str], plan: Plan, method: Method
) -> LLMAnswer:
    shortlist = [labels[i] for i in plan.indexes]
    try:
        generation = backend.generate(
            prompt,
            choices=shortlist if method == "constrained" else None,
            max_tokens=None if method == "constrained" else 24,
        )
    except PrivacyBlocked as blocked:
        return LLMAnswer(None, None, {"privacy_blocked": True, "pii": blocked.counts})
    info = {
        "reply": generation.text,
        "tokens_in": generation.tokens_in,
        "tokens_out": generation.tokens_out,
        **plan.record(labels),
    }
    return LLMAnswer(parse_label(generation.text, labels), None, info)
