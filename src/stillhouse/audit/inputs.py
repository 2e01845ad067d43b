"""What the audit looks at: the data file read with the task's mapping, the labels being audited
(the file's gold field or one annotator in the store), the LLM's stored answers, the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stillhouse.data.io import read_examples
from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import Store
from stillhouse.errors import SKIP_INVALID, Errors, fail
from stillhouse.task import Task

ANNOTATOR_KINDS = ("gold", "human", "llm")
# read_examples' messages for rows whose text is empty: the text-health check reports these.
_EMPTY_TEXT_ENDINGS = ("` is empty", "` is only whitespace")


@dataclass(frozen=True)
class LLMAnswers:
    """The most recent LLM annotation per example (by position in ``AuditData.examples``)."""

    annotator: str
    labels: list[str | None]
    # n x len(label_names), rows of NaN where the LLM gave no probabilities for that example.
    probs: np.ndarray


@dataclass(frozen=True)
class AuditData:
    """The examples under audit with the labels being audited, aligned by position."""

    path: Path
    examples: list[Example]
    labels: list[str | None]
    label_source: str
    label_names: list[str]
    empty_rows: list[str] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)
    test_path: Path | None = None
    test: list[Example] | None = None
    llm: LLMAnswers | None = None
    # A second opinion for the LLM-vs-people comparison: gold from the file, else a human.
    reference: list[str | None] | None = None
    reference_source: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(label is not None for label in self.labels)


def load_audit_data(
    task: Task,
    data: str | Path,
    *,
    test: str | Path | None = None,
    annotator: str | None = None,
    skip_invalid: bool = False,
) -> AuditData:
    """Read ``data`` (and ``test``) and collect the labels to audit.

    Rows with an empty text are kept aside for the text-health check; other invalid rows stop
    the audit (E105) unless ``skip_invalid``. ``annotator``: ``gold`` (default: the file's label
    field), ``human``, ``llm`` or a full annotator id, read from the task's store.
    """
    path = Path(data)
    examples, empty, skipped = _read(path, task, skip_invalid)
    warnings: list[str] = []
    test_examples = None
    if test is not None:
        if Path(test).resolve() == path.resolve():
            raise fail(Errors.E603, path=path)
        test_examples, _, test_skipped = _read(Path(test), task, skip_invalid)
        if test_skipped:
            warnings.append(f"{test}: skipped {len(test_skipped)} invalid row(s)")
    annotations = _store_annotations(task)
    file_gold: list[str | None] = [_label(example.gold) for example in examples]
    wanted = annotator or "gold"
    if wanted == "gold" and any(label is not None for label in file_gold):
        labels, source = file_gold, f"gold ({path.name})"
    elif wanted == "gold" and annotator is None:
        # No labels in the file and none asked for: audit the stored gold or nothing.
        labels, source = _labels_by(examples, annotations, "gold")
        if source is None:
            labels, source = file_gold, "none"
    else:
        labels, source = _labels_by(examples, annotations, wanted)
        if source is None:
            found = ", ".join(sorted({a.annotator for a in annotations})) or "none"
            raise fail(Errors.E604, annotator=wanted, path=task.store_path, found=found)
    llm = _llm_answers(examples, annotations, task.label_names)
    reference, reference_source = None, None
    if any(label is not None for label in file_gold):
        reference, reference_source = file_gold, f"gold ({path.name})"
    else:
        human, human_source = _labels_by(examples, annotations, "human")
        if human_source is not None:
            reference, reference_source = human, human_source
    return AuditData(
        path=path,
        examples=examples,
        labels=labels,
        label_source=source,
        label_names=task.label_names,
        empty_rows=empty,
        skipped_rows=skipped,
        test_path=None if test is None else Path(test),
        test=test_examples,
        llm=llm,
        reference=reference,
        reference_source=reference_source,
        warnings=warnings,
    )


def _read(path: Path, task: Task, skip_invalid: bool) -> tuple[list[Example], list[str], list[str]]:
    report = read_examples(path, task, skip_invalid=True, keep_repeated_texts=True)
    empty = [m for m in report.skipped if m.endswith(_EMPTY_TEXT_ENDINGS)]
    other = [m for m in report.skipped if not m.endswith(_EMPTY_TEXT_ENDINGS)]
    if other and not skip_invalid:
        raise fail(Errors.E105, path=path, count=len(other), first=other[0], skip=SKIP_INVALID)
    return report.examples, empty, other


def _label(answer: object) -> str | None:
    return answer if isinstance(answer, str) else None


def _store_annotations(task: Task) -> list[Annotation]:
    if task.kind != "classify" or not task.store_path.is_file():
        return []
    with Store.for_task(task, create=False) as store:
        return store.annotations(task.kind)


def _matches(annotator: str, wanted: str) -> bool:
    if wanted in ANNOTATOR_KINDS:
        return annotator == "gold" if wanted == "gold" else annotator.startswith(f"{wanted}:")
    return annotator == wanted


def _latest_by_example(annotations: list[Annotation], wanted: str) -> dict[str, Annotation]:
    latest: dict[str, Annotation] = {}
    for annotation in annotations:
        if not _matches(annotation.annotator, wanted):
            continue
        known = latest.get(annotation.example_id)
        if known is None or annotation.created_at >= known.created_at:
            latest[annotation.example_id] = annotation
    return latest


def _labels_by(
    examples: list[Example], annotations: list[Annotation], wanted: str
) -> tuple[list[str | None], str | None]:
    latest = _latest_by_example(annotations, wanted)
    labels = [_label(latest[e.id].answer) if e.id in latest else None for e in examples]
    if not any(label is not None for label in labels):
        return labels, None
    names = sorted({latest[e.id].annotator for e in examples if e.id in latest})
    return labels, ", ".join(names)


def _llm_answers(
    examples: list[Example], annotations: list[Annotation], label_names: list[str]
) -> LLMAnswers | None:
    latest = _latest_by_example(annotations, "llm")
    found = [latest.get(example.id) for example in examples]
    if not any(found):
        return None
    probs = np.full((len(examples), len(label_names)), np.nan)
    for row, annotation in enumerate(found):
        if annotation is not None and annotation.probs:
            probs[row] = [float(annotation.probs.get(name, 0.0)) for name in label_names]
    names = sorted({a.annotator for a in found if a is not None})
    return LLMAnswers(
        annotator=", ".join(names),
        labels=[None if a is None else _label(a.answer) for a in found],
        probs=probs,
    )
