"""Predictors: anything that predicts, so evaluate, gate and serve treat every system alike.

A :class:`Predictor` answers texts (``predict``) and says what it is (``describe``).
:class:`PredictionsFile` is one backed by a JSON-lines file of predictions made elsewhere, one
row per test example::

    {"id": "ex-17", "label": "positive", "probs": {"positive": 0.91, "negative": 0.09}}

``probs`` is optional but then on no row; when given it covers every task label. The file is
validated as it is read: every problem is one error naming ``file:line``, the id and the label.
Multilabel rows carry ``labels`` and span rows ``spans`` instead of ``label``
(:mod:`stillhouse.evaluate.answers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stillhouse.data.io import read_json_lines
from stillhouse.data.records import Example, Prediction, text_id
from stillhouse.errors import Errors, fail
from stillhouse.provenance import file_sha256
from stillhouse.task import Task

# How far a row's probabilities may sum from 1 (rounding in the file that wrote them).
PROBABILITY_TOLERANCE = 1e-3
_IDS_SHOWN = 5


@runtime_checkable
class Predictor(Protocol):
    """Anything that predicts: an LLM prompt, a distilled model, rules, a cascade, a file."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """What this predictor is (kind, size on disk, parameters, runtime): JSON-ready."""
        ...


@dataclass(frozen=True)
class _Row:
    where: str
    prediction: Prediction


class PredictionsFile:
    """A Predictor backed by a JSONL predictions file, validated against ``task`` when opened.

    Raises E101/E103/E107 for an unreadable file, E505 for another file type and E506–E510 for
    a bad row (not an object, duplicate id, unknown label, bad probabilities, probs on some rows
    only).
    """

    def __init__(self, path: str | Path, task: Task) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".jsonl":
            raise fail(Errors.E505, path=self.path, suffix=self.path.suffix)
        self.task = task
        self._rows: dict[str, _Row] = {}
        first_with_probs: tuple[str, bool] | None = None
        for where, row in read_json_lines(self.path):
            identifier, prediction = _parse_row(row, where, task)
            if identifier in self._rows:
                first = self._rows[identifier].where
                raise fail(Errors.E507, where=where, id=identifier, first=first)
            has_probs = prediction.probs is not None
            if first_with_probs is None:
                first_with_probs = (where, has_probs)
            elif has_probs != first_with_probs[1]:
                raise fail(
                    Errors.E510,
                    where=where,
                    id=identifier,
                    has=_with_or_without(has_probs),
                    first_where=first_with_probs[0],
                    first_has=_with_or_without(first_with_probs[1]),
                )
            self._rows[identifier] = _Row(where, prediction)

    @property
    def has_probabilities(self) -> bool:
        return any(row.prediction.probs is not None for row in self._rows.values())

    def for_examples(
        self, examples: Sequence[Example], *, source: str = "the test set"
    ) -> list[Prediction]:
        """The predictions for ``examples``, in their order.

        Every example needs exactly one row and every row must belong to an example: E511 names
        the first row whose id is not a test example, E512 the test examples with no row.
        ``source`` names the examples in those messages (e.g. "the test set data/test.jsonl").
        """
        wanted = {example.id for example in examples}
        unknown = [identifier for identifier in self._rows if identifier not in wanted]
        if unknown:
            first = self._rows[unknown[0]]
            raise fail(
                Errors.E511,
                path=self.path,
                count=len(unknown),
                test=source,
                first_id=unknown[0],
                where=first.where,
            )
        missing = [example.id for example in examples if example.id not in self._rows]
        if missing:
            shown = ", ".join(repr(identifier) for identifier in missing[:_IDS_SHOWN])
            if len(missing) > _IDS_SHOWN:
                shown += f" and {len(missing) - _IDS_SHOWN} more"
            raise fail(
                Errors.E512,
                path=self.path,
                count=len(missing),
                total=len(examples),
                test=source,
                ids=shown,
            )
        return [self._rows[example.id].prediction for example in examples]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The stored prediction of each text, found by the id a row without one gets (its hash).

        A file keyed by given ids answers through :meth:`for_examples` instead; a text it has no
        row for raises E514.
        """
        predictions = []
        for text in texts:
            row = self._rows.get(text_id(text))
            if row is None:
                detail = f"{self.path} has no prediction for this text (rows are found by id)"
                raise fail(Errors.E514, name=self.path.name, id=text_id(text), detail=detail)
            predictions.append(row.prediction)
        return predictions

    def describe(self) -> dict[str, Any]:
        return {
            "type": "predictions-file",
            "path": str(self.path),
            "sha256": file_sha256(self.path),
            "rows": len(self._rows),
            "probabilities": self.has_probabilities,
        }


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


def check_prediction(prediction: Prediction, task: Task, name: str, example_id: str) -> None:
    """Raise E514 if ``prediction`` is not a label of ``task`` with valid probabilities (or none)."""
    if task.kind != "classify":
        from stillhouse.evaluate.answers import structured_problem

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


def _parse_row(row: Any, where: str, task: Task) -> tuple[str, Prediction]:
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
        from stillhouse.evaluate.answers import parse_structured_row

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


def _with_or_without(has_probs: bool) -> str:
    return "`probs`" if has_probs else "no `probs`"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


# Sources a --system spec may name later.
PLANNED_SOURCES: tuple[str, ...] = ()
SOURCES = ("preds", "llm", "model", "cascade")


def open_systems(specs: Sequence[str], task: Task) -> dict[str, Predictor]:
    """Predictors from ``NAME=preds:FILE``, ``NAME=llm:MODEL``, ``NAME=model:DIR`` and
    ``NAME=cascade:STAGE@T,...`` specs, by name in the order given (``MODEL`` as for annotate:
    an embedded model, a .gguf path or openai:URL#MODEL; ``DIR`` a folder written by
    ``stillhouse train``, checked by :func:`stillhouse.train.load.load_model`: E720–E723;
    cascades as in :mod:`stillhouse.cascade`).

    E504: no spec; E517: a name twice; E502: not NAME=SOURCE:VALUE or an unknown source;
    E503: a source planned but not available yet; E539: a malformed cascade.
    """
    if not specs:
        raise fail(Errors.E504)
    sources: dict[str, tuple[str, str]] = {}
    for spec in specs:  # every spec is checked before any file is read or model loaded
        name, source, value = _split_spec(spec)
        if name in sources:
            raise fail(Errors.E517, name=name)
        if source in PLANNED_SOURCES:
            raise fail(Errors.E503, spec=spec, source=source)
        if source not in SOURCES:
            raise fail(Errors.E502, spec=spec, detail=f"unknown source `{source}:`")
        if source == "cascade":
            from stillhouse.cascade import check_cascade

            check_cascade(spec, value, task)
        sources[name] = (source, value)
    systems: dict[str, Predictor] = {}
    for name, (source, value) in sources.items():
        if source == "cascade":
            from stillhouse.cascade import open_cascade

            stage = partial(_open_predictor, task=task)
            systems[name] = open_cascade(f"{name}={source}:{value}", value, task, stage)
        else:
            systems[name] = _open_predictor(source, value, task)
    return systems


def _open_predictor(source: str, value: str, task: Task) -> Predictor:
    if source == "llm":
        from stillhouse.llm.predictor import LLMPredictor

        return LLMPredictor(task, value)
    if source == "model":
        from stillhouse.train.load import load_model

        return load_model(value, task=task)
    return PredictionsFile(value, task)


def _split_spec(spec: str) -> tuple[str, str, str]:
    name, equals, rest = spec.partition("=")
    source, colon, value = rest.partition(":")
    if not equals or not name.strip():
        raise fail(Errors.E502, spec=spec, detail="it needs a NAME= before the source")
    if not colon or not source or not value:
        raise fail(Errors.E502, spec=spec, detail="after NAME= comes SOURCE:VALUE")
    return name.strip(), source, value
