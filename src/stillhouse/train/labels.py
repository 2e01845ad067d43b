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
from dataclasses import dataclass, field
from pathlib import Path

from stillhouse.data.io import read_examples
from stillhouse.data.records import Annotation
from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.export import choose
from stillhouse.task import Task

LABEL_POLICIES = ("best", "gold", "human", "llm")
_LABELS_SHOWN = 5


@dataclass(frozen=True)
class TrainingSet:
    """Texts with one label each, a sample weight per text and where each label came from.

    ``sources[i]`` is ``gold``, ``human`` or ``llm``; ``weights[i]`` is 1 for gold and human
    labels and the LLM's probability of its answer for LLM labels. ``mix`` counts the sources and
    what the policy dropped (``llm_below_confidence``, ``unlabelled``).
    """

    ids: list[str]
    texts: list[str]
    labels: list[str]
    weights: list[float]
    sources: list[str]
    origin: str
    mix: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))


def from_file(task: Task, path: str | Path, *, skip_invalid: bool = False) -> TrainingSet:
    """Every gold-labelled row of a data file (read as ``stillhouse annotate`` reads it).

    Rows without a label are invalid here (E105 names the first), as are unknown labels.
    """
    report = read_examples(path, task, skip_invalid=skip_invalid, require_gold=True)
    examples = report.examples
    mix = {"gold": len(examples)}
    if report.skipped:
        mix["skipped_rows"] = len(report.skipped)
    return TrainingSet(
        ids=[example.id for example in examples],
        texts=[example.text for example in examples],
        labels=[str(example.gold) for example in examples],
        weights=[1.0] * len(examples),
        sources=["gold"] * len(examples),
        origin=str(path),
        mix=mix,
    )


def from_store(task: Task, policy: str = "best", min_llm_confidence: float = 0.0) -> TrainingSet:
    """One label per example of the task's store, chosen by ``policy`` (see module docstring).

    A gold answer stored with the example itself counts as a gold annotation. E706: the store
    does not exist or gives no label under the policy.
    """
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
    with Store(path) as store:
        examples = store.examples(task.kind)
        by_example: dict[str, list[Annotation]] = {}
        for annotation in store.annotations(task.kind):
            by_example.setdefault(annotation.example_id, []).append(annotation)
    mix: Counter[str] = Counter()
    ids, texts, labels, weights, sources = [], [], [], [], []
    for example in examples:
        candidates = list(by_example.get(example.id, []))
        if example.gold is not None and not any(a.annotator == "gold" for a in candidates):
            candidates.append(Annotation(example.id, "gold", example.gold, created_at=0.0))
        chosen = _choose(candidates, policy, min_llm_confidence, mix)
        if chosen is None:
            continue
        source, weight = chosen
        ids.append(example.id)
        texts.append(example.text)
        labels.append(str(source[0].answer))
        weights.append(weight)
        sources.append(source[1])
    if not texts:
        detail = f" ({len(examples)} example(s) stored"
        if mix["llm_below_confidence"]:
            detail += f"; {mix['llm_below_confidence']} LLM label(s) below --min-llm-confidence {min_llm_confidence:g}"
        raise fail(Errors.E706, path=path, labels=policy, detail=detail + ")")
    mix.update(Counter(sources))
    return TrainingSet(ids, texts, labels, weights, sources, origin=str(path), mix=dict(mix))


def _choose(
    annotations: list[Annotation], policy: str, min_confidence: float, mix: Counter[str]
) -> tuple[tuple[Annotation, str], float] | None:
    """The annotation the policy takes, its source and its weight; None (counted) if none."""
    chosen = choose(annotations, policy)
    if chosen is None:
        mix["unlabelled"] += 1
        return None
    source = "gold" if chosen.annotator == "gold" else chosen.annotator.split(":", 1)[0]
    if source != "llm":
        return (chosen, source), 1.0
    confidence = _llm_confidence(chosen)
    if confidence is not None and confidence < min_confidence:
        mix["llm_below_confidence"] += 1
        return None
    if confidence is None:
        mix["llm_without_probabilities"] += 1
    return (chosen, "llm"), 1.0 if confidence is None else confidence


def _llm_confidence(annotation: Annotation) -> float | None:
    """The LLM's probability of its own answer, or None where the method gave no probabilities."""
    if annotation.probs is None:
        return None
    return float(annotation.probs.get(str(annotation.answer), 0.0))


def check_training_set(training: TrainingSet, task: Task, min_per_label: int) -> None:
    """E705: one label only; E704: a task label with fewer than ``min_per_label`` examples
    (a label with none counts as 0: pass ``min_per_label=0`` to train without it)."""
    counts = {label: 0 for label in task.label_names} | training.label_counts()
    if len(training.label_counts()) < 2:
        raise fail(Errors.E705, source=training.origin, label=training.labels[0])
    few = sorted((count, label) for label, count in counts.items() if count < min_per_label)
    if few:
        count, label = few[0]
        more = ""
        if len(few) > 1:
            shown = ", ".join(f"{other!r} {n}" for n, other in few[1 : _LABELS_SHOWN + 1])
            more = f" (also: {shown}{' …' if len(few) > _LABELS_SHOWN + 1 else ''})"
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
    return TrainingSet(
        ids=[training.ids[i] for i in rows],
        texts=[training.texts[i] for i in rows],
        labels=[training.labels[i] for i in rows],
        weights=[training.weights[i] for i in rows],
        sources=[training.sources[i] for i in rows],
        origin=training.origin,
        mix=training.mix,
    )
