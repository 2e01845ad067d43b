"""Plain typed records that cross module boundaries (DESIGN.md: Example, Annotation, Prediction).

An *answer* depends on the task kind: a label name (``classify``), a tuple of label names
(``multilabel``) or a tuple of :class:`Span` (``spans``). ``answer_to_json`` / ``answer_from_json``
convert it to and from the JSON stored in SQLite and written to files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["classify", "multilabel", "spans"]


@dataclass(frozen=True)
class Span:
    """A labelled character range ``text[start:end]``; ``score`` is a model's calibrated
    probability that exactly this span is right (None for gold, human and LLM spans). The score
    takes no part in equality: a predicted span equals the gold span it matches."""

    start: int
    end: int
    label: str
    text: str
    score: float | None = field(default=None, compare=False)


Answer = str | tuple[str, ...] | tuple[Span, ...]


@dataclass(frozen=True)
class Example:
    """One input text; ``gold`` is the known answer, if any; ``meta`` holds extra fields (lang, split…)."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    gold: Answer | None = None


@dataclass(frozen=True)
class Annotation:
    """What one annotator said about one example.

    ``annotator`` is ``llm:<model>@<prompt-hash>``, ``human:<name>`` or ``gold``. ``probs`` maps
    every label to its probability (classification with label scoring) or is ``None`` where the
    method gives none. ``info`` holds method details (truncated text, dropped spans, …).
    """

    example_id: str
    annotator: str
    answer: Answer
    probs: dict[str, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class Prediction:
    """What a Predictor returns for one text."""

    answer: Answer
    probs: dict[str, float] | None = None
    latency_ms: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def text_id(text: str) -> str:
    """A stable id for a text without one: the first 16 hex digits of its sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def answer_to_json(answer: Answer, kind: Kind) -> Any:
    """The JSON form of an answer: a string, a list of strings, or a list of span objects."""
    if kind == "classify":
        return answer
    if kind == "multilabel":
        return list(answer)
    return [_span_to_json(s) for s in answer]  # type: ignore[arg-type]


def _span_to_json(span: Span) -> dict[str, Any]:
    row: dict[str, Any] = {
        "start": span.start,
        "end": span.end,
        "label": span.label,
        "text": span.text,
    }
    if span.score is not None:
        row["score"] = round(span.score, 6)
    return row


def answer_from_json(value: Any, kind: Kind) -> Answer:
    """Inverse of :func:`answer_to_json`."""
    if kind == "classify":
        return str(value)
    if kind == "multilabel":
        return tuple(str(v) for v in value)
    return tuple(
        Span(
            int(s["start"]),
            int(s["end"]),
            str(s["label"]),
            str(s["text"]),
            None if s.get("score") is None else float(s["score"]),
        )
        for s in value
    )
