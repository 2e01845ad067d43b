"""Which labels a model learns from: the label policy (gold > human > LLM) and sample weights.

A training set comes from a data file (its labels count as gold) or from the workspace store,
where every example may carry several annotations. The policy picks one per example with the
same rules as ``stillhouse export`` (:func:`stillhouse.export.choose`); an LLM label whose
probability is below ``min_llm_confidence`` is dropped, and a kept one is weighted by that
probability, so an unsure LLM label counts less than a person's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from stillhouse.data.io import read_examples
from stillhouse.data.records import Annotation, Answer
from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.export import choose
from stillhouse.task import Task

LABEL_POLICIES = ("best", "gold", "human", "llm")
_LABELS_SHOWN = 5


@dataclass(frozen=True)
class Answers:
    """One answer per example (a label, a label set or spans) of a ``kind`` task, with its
    weight and source, as the policy picked them: a :class:`TrainingSet` (classify) or an
    :class:`~stillhouse.train.answers.AnswerSet` (multilabel, spans)."""

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


A = TypeVar("A", bound=Answers)


class TrainingSet(Answers):
    """Texts with one label each, a sample weight per text and where each label came from: the
    :class:`Answers` of a classify task, whose answers are label names (``labels``).

    ``sources[i]`` is ``gold``, ``human`` or ``llm``; ``weights[i]`` is 1 for gold and human
    labels and the LLM's probability of its answer for LLM labels. ``mix`` counts the sources and
    what the policy dropped (``llm_below_confidence``, ``unlabelled``).
    """

    @property
    def labels(self) -> list[str]:
        return self.answers  # type: ignore[return-value]

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))


def from_file(task: Task, path: str | Path, *, skip_invalid: bool = False) -> TrainingSet:
    """Every gold-labelled row of a data file (read as ``stillhouse annotate`` reads it).

    Rows without a label are invalid here (E105 names the first), as are unknown labels.
    """
    return _training_set(file_answers(task, path, skip_invalid=skip_invalid, into=TrainingSet))


def from_store(task: Task, policy: str = "best", min_llm_confidence: float = 0.0) -> TrainingSet:
    """One label per example of the task's store, chosen by ``policy`` (see module docstring).

    A gold answer stored with the example itself counts as a gold annotation. E706: the store
    does not exist or gives no label under the policy.
    """
    return _training_set(
        store_answers(task, policy, min_llm_confidence, what="label", into=TrainingSet)
    )


def _training_set(chosen: TrainingSet) -> TrainingSet:
    """The set with every answer as a label name."""
    return replace(chosen, answers=[str(answer) for answer in chosen.answers])


def file_answers(
    task: Task, path: str | Path, *, skip_invalid: bool = False, into: type[A] = Answers
) -> A:
    """Every row of a data file with its answer, which counts as gold (read and checked as
    annotate reads it: labels known, span offsets within the text, E105 naming the first bad
    row), as an ``into``."""
    report = read_examples(
        path, task, skip_invalid=skip_invalid, offers_skip_invalid=False, require_gold=True
    )
    examples = report.examples
    mix = {"gold": len(examples)}
    if report.skipped:
        mix["skipped_rows"] = len(report.skipped)
    return into(
        kind=task.kind,
        ids=[example.id for example in examples],
        texts=[example.text for example in examples],
        answers=[example.gold for example in examples],  # type: ignore[misc]
        weights=[1.0] * len(examples),
        sources=["gold"] * len(examples),
        origin=str(path),
        mix=mix,
    )


def store_answers(
    task: Task,
    policy: str,
    min_llm_confidence: float,
    *,
    what: str = "label",
    into: type[A] = Answers,
) -> A:
    """One answer per stored example of the task's kind, chosen by ``policy``; an LLM answer
    below ``min_llm_confidence`` is dropped, a kept one weighted by its confidence
    (:func:`llm_confidence`; 1 where it has none). E403/E708 bad policy or threshold, E706 no
    store or no usable answer (``what`` names them in the message: label or answer), E205/E206
    a store of another task or with other labels. Returned as an ``into``."""
    if policy not in LABEL_POLICIES:
        raise fail(
            Errors.E403, what="--labels policy", value=policy, choices=", ".join(LABEL_POLICIES)
        )
    if not 0.0 <= min_llm_confidence <= 1.0:
        raise fail(
            Errors.E708,
            what="--min-llm-confidence",
            expected="between 0 and 1",
            value=min_llm_confidence,
        )
    path = task.store_path
    if not path.is_file():
        raise fail(Errors.E706, path=path, labels=policy, detail=" (the store does not exist)")
    with Store.for_task(task, create=False) as store:
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
        chosen = _choose(candidates, policy, min_llm_confidence, task.kind, mix)
        if chosen is None:
            continue
        (annotation, source), weight = chosen
        ids.append(example.id)
        texts.append(example.text)
        answers.append(annotation.answer)
        weights.append(weight)
        sources.append(source)
    if not texts:
        detail = f" ({len(examples)} example(s) stored"
        if mix["llm_below_confidence"]:
            detail += (
                f"; {mix['llm_below_confidence']} LLM {what}(s) below --min-llm-confidence "
                f"{min_llm_confidence:g}"
            )
        raise fail(Errors.E706, path=path, labels=policy, detail=detail + ")")
    mix.update(Counter(sources))
    return into(task.kind, ids, texts, answers, weights, sources, str(path), dict(mix))


def _choose(
    annotations: list[Annotation],
    policy: str,
    min_confidence: float,
    kind: str,
    mix: Counter[str],
) -> tuple[tuple[Annotation, str], float] | None:
    """The annotation the policy takes, its source and its weight; None (counted) if none."""
    chosen = choose(annotations, policy)
    if chosen is None:
        mix["unlabelled"] += 1
        return None
    source = "gold" if chosen.annotator == "gold" else chosen.annotator.split(":", 1)[0]
    if source != "llm":
        return (chosen, source), 1.0
    confidence = llm_confidence(chosen, kind)
    if confidence is not None and confidence < min_confidence:
        mix["llm_below_confidence"] += 1
        return None
    if confidence is None:
        mix["llm_without_probabilities"] += 1
    return (chosen, "llm"), 1.0 if confidence is None else confidence


def llm_confidence(annotation: Annotation, kind: str) -> float | None:
    """How sure the LLM was of its answer, or None where the method gave no probabilities.

    classify: its probability of the label it gave; multilabel (per-label P(yes)): the least
    sure of its label decisions (``p`` for a label it gave, ``1 − p`` for one it did not);
    spans: always None (span answers carry no probabilities).
    """
    if kind == "classify":
        if annotation.probs is None:
            return None
        return float(annotation.probs.get(str(annotation.answer), 0.0))
    if kind != "multilabel" or not annotation.probs:
        return None
    given = set(annotation.answer)  # type: ignore[arg-type]
    return min(
        float(p) if label in given else 1.0 - float(p) for label, p in annotation.probs.items()
    )


def fewest(counts: dict[str, int], minimum: int) -> tuple[str, int, str] | None:
    """The label with the fewest examples below ``minimum``, its count and the ``{more}`` part
    of E704/E741 naming the next few; None when every label has enough."""
    few = sorted((count, label) for label, count in counts.items() if count < minimum)
    if not few:
        return None
    count, label = few[0]
    more = ""
    if len(few) > 1:
        shown = ", ".join(f"{other!r} {n}" for n, other in few[1 : _LABELS_SHOWN + 1])
        more = f" (also: {shown}{' …' if len(few) > _LABELS_SHOWN + 1 else ''})"
    return label, count, more


def check_training_set(training: TrainingSet, task: Task, min_per_label: int) -> None:
    """E705: one label only; E704: a task label with fewer than ``min_per_label`` examples
    (a label with none counts as 0: pass ``min_per_label=0`` to train without it)."""
    counts = {label: 0 for label in task.label_names} | training.label_counts()
    if len(training.label_counts()) < 2:
        raise fail(Errors.E705, source=training.origin, label=training.labels[0])
    below = fewest(counts, min_per_label)
    if below is not None:
        label, count, more = below
        raise fail(
            Errors.E704,
            label=label,
            count=count,
            source=training.origin,
            minimum=min_per_label,
            more=more,
        )


def missing_labels(training: TrainingSet, task: Task) -> list[str]:
    """Task labels without a single training example (the model gives them probability 0)."""
    present = set(training.labels)
    return [label for label in task.label_names if label not in present]


def subset(training: TrainingSet, rows: Sequence[int]) -> TrainingSet:
    """The rows ``rows`` of a training set, in that order (mix and origin kept)."""
    return replace(
        training,
        ids=[training.ids[i] for i in rows],
        texts=[training.texts[i] for i in rows],
        answers=[training.answers[i] for i in rows],
        weights=[training.weights[i] for i in rows],
        sources=[training.sources[i] for i in rows],
    )
