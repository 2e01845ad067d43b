"""How the LLM answers one prompt, per task kind and method.

Methods for classification:

- ``score`` (default): log-likelihood of every label as the reply, softmax over labels. Every
  answer is a valid label and comes with a probability per label; optional contextual
  calibration divides by the probabilities for content-free inputs (Zhao et al. 2021).
- ``constrained``: greedy generation restricted by a grammar to the label names.
- ``generate``: free generation, then the reply is matched to a label (as spacy-llm does);
  replies that match no label are counted as invalid.

Multilabel tasks get an independent P(yes) per label; span tasks use JSON-schema-constrained
generation whose entity texts are then located in the input.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from stillhouse.data.records import Answer, Span
from stillhouse.guard.privacy import PrivacyBlocked
from stillhouse.llm.backend import Backend
from stillhouse.llm.prompts import CONTENT_FREE_TEXTS, ChatPrompt, build_prompt, span_schema
from stillhouse.llm.spotlight import unmark
from stillhouse.task import Task

Method = Literal["score", "constrained", "generate"]
METHODS: tuple[str, ...] = ("score", "constrained", "generate")
MULTILABEL_THRESHOLD = 0.5


@dataclass(frozen=True)
class LLMAnswer:
    answer: Answer | None  # None: a free-form reply that matched no label
    probs: dict[str, float] | None
    info: dict[str, Any] = field(default_factory=dict)


def softmax(log_likelihoods: np.ndarray) -> np.ndarray:
    shifted = np.exp(log_likelihoods - log_likelihoods.max())
    return shifted / shifted.sum()


def content_free_probs(backend: Backend, task: Task) -> np.ndarray:
    """Mean label probabilities for content-free texts: the model's prior under this prompt."""
    prompts = [build_prompt(task, text) for text in CONTENT_FREE_TEXTS]
    rows = [softmax(scores) for scores in backend.score_labels_many(prompts, task.label_names)]
    return np.mean(rows, axis=0)


def calibrate(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Contextual calibration: divide by the content-free prior and renormalise."""
    adjusted = probs / np.maximum(prior, 1e-12)
    return adjusted / adjusted.sum()


def normalise_label(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\s_\-]+", " ", re.sub(r"[^\w\s\-]", " ", text)).strip()


def parse_label(reply: str, labels: Sequence[str]) -> str | None:
    """Match a free-form reply to a label: exact after normalisation, else the single label
    whose name appears in the reply (the longest wins when names nest), else None."""
    wanted = normalise_label(reply)
    by_form = {normalise_label(label): label for label in labels}
    if wanted in by_form:
        return by_form[wanted]
    found = [
        (len(form), label)
        for form, label in by_form.items()
        if form and re.search(rf"\b{re.escape(form)}\b", wanted)
    ]
    if not found:
        return None
    found.sort(reverse=True)
    return found[0][1]


def scored_answer(labels: Sequence[str], scores: np.ndarray, prior: np.ndarray | None) -> LLMAnswer:
    """The answer from label scores: softmax, then contextual calibration when ``prior``."""
    probs = softmax(scores)
    info: dict[str, Any] = {}
    if prior is not None:
        info["uncalibrated_top"] = labels[int(np.argmax(probs))]
        probs = calibrate(probs, prior)
    return LLMAnswer(
        labels[int(np.argmax(probs))], dict(zip(labels, probs.tolist(), strict=True)), info
    )


def answer_classify(
    backend: Backend, task: Task, prompt: ChatPrompt, method: Method, prior: np.ndarray | None
) -> LLMAnswer:
    labels = task.label_names
    if method == "score":
        return scored_answer(labels, backend.score_labels(prompt, labels), prior)
    generation = backend.generate(
        prompt,
        choices=labels if method == "constrained" else None,
        max_tokens=None if method == "constrained" else 24,
    )
    info = {
        "reply": generation.text,
        "tokens_in": generation.tokens_in,
        "tokens_out": generation.tokens_out,
    }
    if generation.logprob is not None:
        info["reply_logprob"] = generation.logprob
    return LLMAnswer(parse_label(generation.text, labels), None, info)


def yes_no_answer(labels: Sequence[str], p_yes: np.ndarray) -> LLMAnswer:
    """The multilabel answer from each label's P(yes)."""
    chosen = tuple(
        label for label, p in zip(labels, p_yes, strict=True) if p >= MULTILABEL_THRESHOLD
    )
    return LLMAnswer(
        chosen, dict(zip(labels, p_yes.tolist(), strict=True)), {"threshold": MULTILABEL_THRESHOLD}
    )


def answer_multilabel(backend: Backend, task: Task, prompt: ChatPrompt) -> LLMAnswer:
    labels = task.label_names
    if not backend.can_score:
        schema = {
            "type": "object",
            "properties": {
                "labels": {"type": "array", "items": {"type": "string", "enum": labels}}
            },
            "required": ["labels"],
        }
        generation = backend.generate(prompt, json_schema=schema)
        info = {
            "reply": generation.text[:200],
            "tokens_in": generation.tokens_in,
            "tokens_out": generation.tokens_out,
        }
        try:
            chosen = [
                label for label in json.loads(generation.text).get("labels", []) if label in labels
            ]
        except (ValueError, AttributeError):
            return LLMAnswer(None, None, info)
        return LLMAnswer(tuple(dict.fromkeys(chosen)), None, info)
    return yes_no_answer(labels, backend.score_yes_no(prompt, labels))


def locate_spans(
    text: str, entities: Sequence[dict[str, Any]], labels: Sequence[str]
) -> tuple[tuple[Span, ...], int]:
    """Map entity texts to character offsets: every occurrence in the text (exact match, else
    case-insensitive) gets the label; overlaps keep the earlier, then longer, span. Returns the
    spans sorted by start and how many entities were dropped (not in the text, or unknown label)."""
    found: list[Span] = []
    dropped = 0
    lowered = text.lower()
    for entity in entities:
        surface, label = str(entity.get("text", "")).strip(), entity.get("label")
        if not surface or label not in labels:
            dropped += 1
            continue
        starts = [m.start() for m in re.finditer(re.escape(surface), text)]
        if not starts:
            starts = [m.start() for m in re.finditer(re.escape(surface.lower()), lowered)]
        if not starts:
            dropped += 1
            continue
        found.extend(
            Span(s, s + len(surface), str(label), text[s : s + len(surface)]) for s in starts
        )
    kept: list[Span] = []
    for span in sorted(set(found), key=lambda s: (s.start, -(s.end - s.start), s.label)):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return tuple(kept), dropped


def answer_spans(backend: Backend, task: Task, prompt: ChatPrompt, text: str) -> LLMAnswer:
    generation = backend.generate(prompt, json_schema=span_schema(task.label_names))
    try:
        entities = json.loads(generation.text).get("entities", [])
        valid_json = isinstance(entities, list)
    except (ValueError, AttributeError):
        entities, valid_json = [], False
    found = [e for e in entities if isinstance(e, dict)] if valid_json else []
    if task.llm.spotlight == "datamark":  # copied from the marked text: spaces back first
        found = [{**e, "text": unmark(str(e.get("text", "")))} for e in found]
    spans, dropped = locate_spans(text, found, task.label_names)
    info = {
        "dropped_spans": dropped,
        "tokens_in": generation.tokens_in,
        "tokens_out": generation.tokens_out,
    }
    if not valid_json:  # e.g. cut off at max_new_tokens
        info["invalid_reply"] = generation.text[:200]
        info["invalid"] = True
    return LLMAnswer(spans, None, info)


def answer(
    backend: Backend,
    task: Task,
    prompt: ChatPrompt,
    text: str,
    method: Method = "score",
    prior: np.ndarray | None = None,
) -> LLMAnswer:
    """The LLM's answer for one prompt, by task kind and method. A text ``[privacy] remote =
    "block"`` kept from a remote server has no answer and ``info["privacy_blocked"]`` (with the
    entity counts under ``info["pii"]``)."""
    try:
        if task.kind == "classify":
            return answer_classify(backend, task, prompt, method, prior)
        if task.kind == "multilabel":
            return answer_multilabel(backend, task, prompt)
        return answer_spans(backend, task, prompt, text)
    except PrivacyBlocked as blocked:
        return LLMAnswer(None, None, {"privacy_blocked": True, "pii": blocked.counts})


def answer_many(
    backend: Backend,
    task: Task,
    prompts: Sequence[ChatPrompt],
    texts: Sequence[str],
    method: Method = "score",
    prior: np.ndarray | None = None,
) -> list[LLMAnswer]:
    """:func:`answer` for many prompts; label scoring batches them across texts."""
    labels = task.label_names
    if backend.can_score and task.kind == "classify" and method == "score":
        return [
            scored_answer(labels, scores, prior)
            for scores in backend.score_labels_many(prompts, labels)
        ]
    if backend.can_score and task.kind == "multilabel":
        return [yes_no_answer(labels, p) for p in backend.score_yes_no_many(prompts, labels)]
    return [
        answer(backend, task, prompt, text, method, prior)
        for prompt, text in zip(prompts, texts, strict=True)
    ]
