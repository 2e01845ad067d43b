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
from dataclasses import dataclass, field
from pathlib import Path

from stillhouse.data.io import read_examples
from stillhouse.data.records import Annotation, Answer, Span
from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.export import choose
from stillhouse.task import Task
from stillhouse.train.labels import LABEL_POLICIES
from stillhouse.train.split import stratified_holdout

_LABELS_SHOWN = 5


@dataclass(frozen=True)
class AnswerSet:
    """Texts with their answers (tuples of labels or of :class:`Span`), weights and sources."""

    kind: str
    ids: list[str]
    texts: list[str]
    answers: list[Answer]
    weights: list[float]
    sources: list[str]
    origin: str
    mix: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

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
    report = read_examples(path, task, skip_invalid=skip_invalid, require_gold=True)
    examples = report.examples
    mix = {"gold": len(examples)}
    if report.skipped:
        mix["skipped_rows"] = len(report.skipped)
    return AnswerSet(
        kind=task.kind,
        ids=[example.id for example in examples],
        texts=[example.text for example in examples],
        answers=[example.gold for example in examples],  # type: ignore[misc]
        weights=[1.0] * len(examples),
        sources=["gold"] * len(examples),
        origin=str(path),
        mix=mix,
    )


def from_store(task: Task, policy: str = "best", min_llm_confidence: float = 0.0) -> AnswerSet:
    """One answer per stored example, chosen by ``policy``; E706 when none is usable."""
    if policy not in LABEL_POLICIES:
        raise fail(
            Errors.E403, what="--labels policy", value=policy, choices=", ".join(LABEL_POLICIES)
        )
    path = task.store_path
    if not path.is_file():
        raise fail(Errors.E706, path=path, labels=policy, detail=" (the store does not exist)")
    with Store(path) as store:
        examples = store.examples(task.kind)
        by_example: dict[str, list[Annotation]] = {}
        for annotation in store.annotations(task.kind):
            by_example.setdefault(annotation.example_id, []).append(annotation)
    mix: Counter[str] = Counter()
    ids, texts, answers, weights, sources = [], [], [], [], []
    for example in examples:
        candidates = list(by_example.get(example.id, []))
        if example.gold is not None and not any(a.annotator == "gold" for a in candidates):
            candidates.append(Annotation(example.id, "gold", example.gold, created_at=0.0))
        chosen = choose(candidates, policy)
        if chosen is None:
            mix["unlabelled"] += 1
            continue
        source = "gold" if chosen.annotator == "gold" else chosen.annotator.split(":", 1)[0]
        weight = 1.0
        if source == "llm":
            confidence = llm_confidence(chosen, task)
            if confidence is None:
                mix["llm_without_probabilities"] += 1
            elif confidence < min_llm_confidence:
                mix["llm_below_confidence"] += 1
                continue
            else:
                weight = confidence
        ids.append(example.id)
        texts.append(example.text)
        answers.append(chosen.answer)
        weights.append(weight)
        sources.append(source)
    if not texts:
        detail = f" ({len(examples)} example(s) stored"
        if mix["llm_below_confidence"]:
            detail += f"; {mix['llm_below_confidence']} LLM answer(s) below --min-llm-confidence"
        raise fail(Errors.E706, path=path, labels=policy, detail=detail + ")")
    mix.update(Counter(sources))
    return AnswerSet(
        task.kind, ids, texts, answers, weights, sources, origin=str(path), mix=dict(mix)
    )


def llm_confidence(annotation: Annotation, task: Task) -> float | None:
    """How sure the LLM was of its whole multilabel answer (its least sure label decision), or
    None where it gave no per-label probabilities (always for spans)."""
    if task.kind != "multilabel" or not annotation.probs:
        return None
    given = set(annotation.answer)  # type: ignore[arg-type]
    return min(
        float(p) if label in given else 1.0 - float(p) for label, p in annotation.probs.items()
    )


def check_answers(answers: AnswerSet, task: Task, min_per_label: int) -> None:
    """E743: no example has any label or span; E741: a task label below ``min_per_label``
    (examples it applies to, or spans of its type); E742 (multilabel): a label on every example."""
    what = "label" if task.kind == "multilabel" else "span"
    counts = answers.label_counts(task)
    if not any(counts.values()):
        raise fail(Errors.E743, source=answers.origin, what=f"{what}s")
    few = sorted((count, label) for label, count in counts.items() if count < min_per_label)
    if few:
        count, label = few[0]
        more = ""
        if len(few) > 1:
            shown = ", ".join(f"{other!r} {n}" for n, other in few[1 : _LABELS_SHOWN + 1])
            more = f" (also: {shown}{' …' if len(few) > _LABELS_SHOWN + 1 else ''})"
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
