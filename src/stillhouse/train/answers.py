"""Training sets of multilabel and span tasks: one answer (a label set or spans) per text.

The label policy is the classify one (:mod:`stillhouse.train.labels`): a data file's answers
count as gold; from the store, :func:`stillhouse.export.choose` picks gold > human > LLM. An LLM
answer's confidence is, for a multilabel answer with per-label P(yes), the least sure of its
label decisions (``p`` for a label it gave, ``1 − p`` for one it did not); it is dropped below
``--min-llm-confidence`` and otherwise weights the example. Span answers from the LLM come
without probabilities (weight 1, counted as ``llm_without_probabilities``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stillhouse.data.records import Span
from stillhouse.errors import Errors, fail
from stillhouse.task import Task
from stillhouse.train.labels import Answers, fewest, file_answers, store_answers
from stillhouse.train.split import stratified_holdout


class AnswerSet(Answers):
    """Texts with their answers (tuples of labels or of :class:`Span`), weights and sources."""

    def labels_of(self, row: int) -> list[str]:
        """The labels of row ``row``: its label set, or its spans' types (with repeats)."""
        answer = self.answers[row]
        return [item.label if isinstance(item, Span) else str(item) for item in answer]

    def label_counts(self, task: Task) -> dict[str, int]:
        """Per task label: examples it applies to (multilabel) or spans of that type (spans)."""
        counts = Counter(label for row in range(len(self)) for label in self.labels_of(row))
        return {label: counts.get(label, 0) for label in task.label_names}


def from_file(task: Task, path: str | Path, *, skip_invalid: bool = False) -> AnswerSet:
    """Every row of a data file with its answer (read and checked as annotate reads it: labels
    known, span offsets within the text, E105 naming the first bad row)."""
    return file_answers(task, path, skip_invalid=skip_invalid, into=AnswerSet)


def from_store(task: Task, policy: str = "best", min_llm_confidence: float = 0.0) -> AnswerSet:
    """One answer per stored example, chosen by ``policy``; E706 when none is usable, E205/E206
    when the store is another task's or holds other labels."""
    return store_answers(task, policy, min_llm_confidence, what="answer", into=AnswerSet)


def check_answers(answers: AnswerSet, task: Task, min_per_label: int) -> None:
    """E743: no example has any label or span; E741: a task label below ``min_per_label``
    (examples it applies to, or spans of its type); E742 (multilabel): a label on every example."""
    what = "label" if task.kind == "multilabel" else "span"
    counts = answers.label_counts(task)
    if not any(counts.values()):
        raise fail(Errors.E743, source=answers.origin, what=f"{what}s")
    below = fewest(counts, min_per_label)
    if below is not None:
        label, count, more = below
        raise fail(
            Errors.E741,
            label=label,
            count=count,
            what="example(s) with it" if task.kind == "multilabel" else "span(s)",
            source=answers.origin,
            minimum=min_per_label,
            more=more,
        )
    if task.kind == "multilabel":
        for label, count in counts.items():
            if count == len(answers):
                raise fail(Errors.E742, label=label, count=count, source=answers.origin)


def stratification_keys(answers: AnswerSet, task: Task) -> list[str]:
    """One key per row for :func:`stillhouse.train.split.stratified_holdout`: the row's rarest
    label (``""`` for none), so every label is held out in about the set share."""
    counts = answers.label_counts(task)
    keys = []
    for row in range(len(answers)):
        labels = answers.labels_of(row)
        keys.append(min(labels, key=lambda label: (counts[label], label)) if labels else "")
    return keys


def held_out_split(
    answers: AnswerSet, task: Task, share: float, seed: int
) -> tuple[list[int], list[int]]:
    """Rows ``(train, held_out)`` stratified on :func:`stratification_keys`; E747 when no row
    is held out (every key has one row only)."""
    train_rows, held_rows = stratified_holdout(stratification_keys(answers, task), share, seed)
    if not held_rows:
        raise fail(Errors.E747, count=len(answers), source=answers.origin, holdout=share)
    return train_rows, held_rows
