"""Predictions files and Predictor answers: the row format for every task kind, and the checks
that a Prediction is a valid answer for a task.

Rows of a predictions file (JSON lines, one row per test example), by task kind::

    classify:   {"id": "ex-17", "label": "positive", "probs": {"positive": 0.91, "negative": 0.09}}
    multilabel: {"id": "t1", "labels": ["billing", "refund"], "probs": {"billing": 0.93, ...}}
    spans:      {"id": "t1", "spans": [{"start": 0, "end": 5, "label": "person", "text": "Alice"}]}

``probs`` is optional, but then on no row (:class:`stillhouse.predictors.PredictionsFile` reads
a whole file). Classification ``probs`` give every task label a probability, summing to 1 within
:data:`PROBABILITY_TOLERANCE`; multilabel ``probs`` an independent probability in [0, 1] for
every task label (they need not sum to 1). Span ``text`` is optional; offsets are characters,
``end`` exclusive, and are checked against the example's text when evaluated.

:func:`parse_row` reads one row; :func:`check_prediction` checks what a Predictor returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

from stillhouse.data.records import Prediction, Span
from stillhouse.errors import Errors, fail
from stillhouse.task import Task

# How far a row's probabilities may sum from 1 (rounding in the file that wrote them).
PROBABILITY_TOLERANCE = 1e-3
# What a line of a multilabel or spans predictions file looks like (E535 shows it).
SHAPES = {
    "multilabel": '{"id": ..., "labels": [label, ...], "probs": {label: p, ...}} (probs optional)',
    "spans": '{"id": ..., "spans": [{"start": int, "end": int, "label": ..., "text": ..., '
    '"score": p}]} (text and score optional)',
}


def parse_row(row: Any, where: str, task: Task) -> tuple[str, Prediction]:
    """The id and prediction of one row of a predictions file read from ``where`` (file:line).

    E506 for a row that is not an object or has a bad id or label, E508 for an unknown label,
    E509 for bad classification probabilities; multilabel and span rows as
    :func:`parse_structured_row`.
    """
    if not isinstance(row, dict):
        raise fail(Errors.E506, where=where, detail=f"expected an object, got {_type_name(row)}")
    identifier = row.get("id")
    if isinstance(identifier, float) and identifier.is_integer():
        identifier = int(identifier)  # as read_examples reads a numeric id
    if isinstance(identifier, bool) or not isinstance(identifier, str | int) or identifier == "":
        detail = f"`id` must be a non-empty string or an integer, got {_type_name(identifier)}"
        raise fail(Errors.E506, where=where, detail=detail)
    identifier = str(identifier)
    if task.kind != "classify":  # rows with `labels` or `spans`
        return identifier, parse_structured_row(row, where, identifier, task)
    label = row.get("label")
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)  # as read_examples reads a numeric gold label
    if not isinstance(label, str):
        detail = f"id {identifier!r}: `label` must be a string, got {_type_name(label)}"
        raise fail(Errors.E506, where=where, detail=detail)
    if label not in task.labels:
        labels = ", ".join(task.label_names)
        raise fail(Errors.E508, where=where, id=identifier, label=label, labels=labels)
    probs = row.get("probs")
    if probs is not None:
        problem = probability_problem(probs, task.label_names)
        if problem is not None:
            raise fail(
                Errors.E509,
                where=where,
                id=identifier,
                detail=problem,
                tolerance=PROBABILITY_TOLERANCE,
            )
        probs = {label_name: float(probs[label_name]) for label_name in task.label_names}
    return identifier, Prediction(answer=label, probs=probs)


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


def check_prediction(prediction: Prediction, task: Task, name: str, example_id: str) -> None:
    """Raise E514 if ``prediction`` is not a label of ``task`` with valid probabilities (or none);
    for a multilabel or spans task, if :func:`structured_problem` finds a problem."""
    if task.kind != "classify":
        problem = structured_problem(prediction, task)
        if problem is not None:
            raise fail(Errors.E514, name=name, id=example_id, detail=problem)
        return
    if prediction.answer == "" and prediction.info.get("abstained") is True:
        pass  # an abstention (a cascade sending the text to review): evaluate counts it wrong
    elif prediction.answer not in task.labels:
        detail = f"answer {prediction.answer!r} is not one of the task's labels"
        raise fail(Errors.E514, name=name, id=example_id, detail=detail)
    if prediction.probs is not None:
        problem = probability_problem(prediction.probs, task.label_names)
        if problem is not None:
            detail = f"probabilities {problem} (tolerance {PROBABILITY_TOLERANCE:g})"
            raise fail(Errors.E514, name=name, id=example_id, detail=detail)


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


def label_map_problem(probs: Any, labels: Sequence[str]) -> str | None:
    """Why ``probs`` is not an object with exactly the task's labels as keys (a phrase), or None."""
    if not isinstance(probs, dict):
        return f"must be an object mapping labels to numbers, got {type(probs).__name__}"
    known = set(labels)  # a set: 77 labels × 77 keys per row was a third of evaluate's time
    unknown = [label for label in probs if label not in known]
    if unknown:
        return f"name label {unknown[0]!r}, which is not one of the task's labels"
    missing = [label for label in labels if label not in probs]
    if missing:
        return f"miss label(s) {', '.join(repr(label) for label in missing)}"
    return None


def probability_problem(probs: Any, labels: Sequence[str]) -> str | None:
    """Why ``probs`` is not a distribution over ``labels`` (a phrase), or None when it is one.

    A distribution maps every label, and nothing else, to a finite number ≥ 0, summing to 1
    within :data:`PROBABILITY_TOLERANCE`.
    """
    problem = label_map_problem(probs, labels)
    if problem:
        return problem
    for label, value in probs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"give {label!r} a non-number {value!r}"
        if not math.isfinite(value):
            return f"give {label!r} the value {value}"
        if value < 0:
            return f"give {label!r} a negative value {value}"
    total = math.fsum(probs.values())
    if abs(total - 1) > PROBABILITY_TOLERANCE:
        return f"sum to {total:.6g}"
    return None


def independent_probability_problem(probs: Any, labels: list[str]) -> str | None:
    """Why ``probs`` is not one probability in [0, 1] per label (and nothing else), or None."""
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


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


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
