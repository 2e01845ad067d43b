"""`review --input FILE`: the rows to review, each with the suggestion its row carries.

The rows are read as every command reads data (:func:`stillhouse.data.io.read_examples`, fields
mapped by the task's ``[input]``) and reviewed in queue order; they are added to the store as
examples (an id keeps its text: E207). A row's label field is **not** gold here: a ``.jsonl`` row
with ``probs`` and/or ``label`` (``labels`` for multilabel, ``spans`` for spans) — a predictions
file of `stillhouse predict` merged with its texts — is shown as the suggestion (source
``input:FILE``); a row without one gets the best stored LLM answer, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stillhouse.data.io import read_examples, read_json_lines
from stillhouse.data.predictions import parse_row
from stillhouse.data.records import Example
from stillhouse.review.decisions import Suggestion
from stillhouse.review.queue import score_of
from stillhouse.task import Task

_ANSWER_FIELDS = {"classify": "label", "multilabel": "labels", "spans": "spans"}


@dataclass(frozen=True)
class ReviewInput:
    path: Path
    examples: list[Example]
    suggestions: dict[str, Suggestion]


def read_review_input(task: Task, path: str | Path) -> ReviewInput:
    """The examples of ``path`` and the suggestions of its rows (E1xx for an unusable file or
    row, E506/E508/E509/E535/E536 for a bad suggestion, naming file:line)."""
    path = Path(path)
    report = read_examples(path, task, read_gold=False, offers_skip_invalid=False)
    suggestions: dict[str, Suggestion] = {}
    if path.suffix.lower() == ".jsonl":
        rows = list(read_json_lines(path))
        # every row was valid (or read_examples had refused), so rows and examples line up
        for (where, row), example in zip(rows, report.examples, strict=True):
            found = _suggestion_row(row, task)
            if found is None:
                continue
            _, prediction = parse_row({**found, "id": example.id}, where, task)
            suggestions[example.id] = Suggestion(
                f"input:{path.name}",
                prediction.answer,
                prediction.probs,
                score_of(prediction.answer, prediction.probs, task.kind),
            )
    return ReviewInput(path, report.examples, suggestions)


def _suggestion_row(row: dict[str, Any], task: Task) -> dict[str, Any] | None:
    """The suggestion fields of a row, or None when it has none; a classify row with ``probs``
    and no label suggests the most probable label."""
    field = _ANSWER_FIELDS[task.kind]
    answer = row.get(field)
    probs = row.get("probs")
    if answer is None and probs is None:
        return None
    if answer is None and task.kind == "multilabel" and isinstance(probs, dict):
        answer = [label for label, p in probs.items() if isinstance(p, float | int) and p >= 0.5]
    if answer is None and task.kind == "classify" and isinstance(probs, dict) and probs:
        answer = max(
            probs, key=lambda label: probs[label] if isinstance(probs[label], float | int) else -1
        )
    found: dict[str, Any] = {field: answer}
    if probs is not None:
        found["probs"] = probs
    return found
