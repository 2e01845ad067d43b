"""Multilabel and span answers in predictions: parsed from predictions-file rows and checked
when a Predictor returns them (classification answers are handled in predictors.py).

Rows of a predictions file, by task kind::

    multilabel: {"id": "t1", "labels": ["billing", "refund"], "probs": {"billing": 0.93, ...}}
    spans:      {"id": "t1", "spans": [{"start": 0, "end": 5, "label": "person", "text": "Alice"}]}

Multilabel ``probs`` is optional (then on no row): an independent probability in [0, 1] for
every task label (they need not sum to 1). Span ``text`` is optional; offsets are characters,
``end`` exclusive, and are checked against the example's text when evaluated.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from stillhouse.data.records import Prediction, Span
from stillhouse.errors import Errors, fail
from stillhouse.task import Task

SHAPES = {
    "multilabel": '{"id": ..., "labels": [label, ...], "probs": {label: p, ...}} (probs optional)',
    "spans": '{"id": ..., "spans": [{"start": int, "end": int, "label": ..., "text": ..., '
    '"score": p}]} (text and score optional)',
}


def parse_structured_row(
    row: dict[str, Any], where: str, identifier: str, task: Task
) -> Prediction:
    """The prediction of one multilabel or spans row (E535 for its shape, E508 for an unknown
    label, E536 for bad multilabel probabilities)."""
    if task.kind == "multilabel":
        labels = _labels(row.get("labels"), where, identifier, task)
        probs = row.get("probs")
        if probs is not None:
            problem = independent_probability_problem(probs, task.label_names)
            if problem is not None:
                raise fail(Errors.E536, where=where, id=identifier, detail=problem)
            probs = {label: float(probs[label]) for label in task.label_names}
        return Prediction(answer=labels, probs=probs)
    spans = row.get("spans")
    if not isinstance(spans, list):
        _shape(where, task, f"id {identifier!r}: `spans` must be a list of span objects")
    parsed = [_span(item, number, where, identifier, task) for number, item in enumerate(spans, 1)]
    return Prediction(answer=tuple(sorted(parsed, key=lambda s: (s.start, s.end, s.label))))


def structured_problem(prediction: Prediction, task: Task) -> str | None:
    """Why a Predictor's multilabel or spans answer is not one of ``task``, or None."""
    answer = prediction.answer
    if not isinstance(answer, tuple):
        return f"answer {answer!r} must be a tuple of {'labels' if task.kind == 'multilabel' else 'spans'}"
    if task.kind == "multilabel":
        unknown = [label for label in answer if label not in task.labels]
        if unknown:
            return f"label {unknown[0]!r} is not one of the task's labels"
        if prediction.probs is not None:
            problem = independent_probability_problem(prediction.probs, task.label_names)
            if problem is not None:
                return f"probabilities {problem}"
        return None
    for span in answer:
        if not isinstance(span, Span) or span.label not in task.labels or not span.start < span.end:
            return f"{span!r} is not a span (start < end) with one of the task's labels"
        if span.score is not None and not _probability(span.score):
            return f"{span!r} has a score outside [0, 1]"
    return None


def independent_probability_problem(probs: Any, labels: list[str]) -> str | None:
    """Why ``probs`` is not one probability in [0, 1] per label (and nothing else), or None."""
    from stillhouse.predictors import label_map_problem

    problem = label_map_problem(probs, labels)
    if problem:
        return problem
    for label, value in probs.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return f"give {label!r} the value {value!r}, not a finite number"
        if not 0 <= value <= 1:
            return f"give {label!r} the value {value}, outside [0, 1]"
    return None


def _labels(value: Any, where: str, identifier: str, task: Task) -> tuple[str, ...]:
    if not isinstance(value, list):
        _shape(where, task, f"id {identifier!r}: `labels` must be a list of label names")
    names = []
    for item in value:
        name = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(name, str):
            _shape(where, task, f"id {identifier!r}: a label must be a string, got {item!r}")
        if name not in task.labels:
            labels = ", ".join(task.label_names)
            raise fail(Errors.E508, where=where, id=identifier, label=name, labels=labels)
        names.append(name)
    chosen = set(names)
    return tuple(label for label in task.label_names if label in chosen)  # task order, no repeats


def _span(item: Any, number: int, where: str, identifier: str, task: Task) -> Span:
    what = f"id {identifier!r}: span {number}"
    if not isinstance(item, dict):
        _shape(where, task, f"{what} must be an object")
    start, end, label = item.get("start"), item.get("end"), item.get("label")
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
    if not whole or not 0 <= start < end:
        _shape(where, task, f"{what}: `start` and `end` must be integers with 0 ≤ start < end")
    if label not in task.labels:
        labels = ", ".join(task.label_names)
        raise fail(Errors.E508, where=where, id=identifier, label=label, labels=labels)
    text = item.get("text")
    score = item.get("score")
    if score is not None and not _probability(score):
        _shape(where, task, f"{what}: `score` must be a number in [0, 1], got {score!r}")
    return Span(
        start,
        end,
        label,
        text if isinstance(text, str) else "",
        None if score is None else float(score),
    )


def _probability(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 1
    )


def _shape(where: str, task: Task, detail: str) -> NoReturn:
    raise fail(Errors.E535, where=where, detail=detail, kind=task.kind, shape=SHAPES[task.kind])
