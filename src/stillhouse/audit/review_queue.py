"""The review queue: examples ordered by how much a human look is worth, from the audit's likely
label errors, LLM/people disagreements and low-confidence LLM answers; stored in the workspace
store (table ``review_queue``) for the review UI."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stillhouse.audit.disagreement import Disagreement
from stillhouse.audit.inputs import AuditData
from stillhouse.audit.label_issues import LabelIssue
from stillhouse.data.store import ReviewItem, Store
from stillhouse.task import Task

QUEUE = "audit"
LOW_CONFIDENCE = 0.5


def build_review_queue(
    data: AuditData,
    label_issues: Sequence[LabelIssue] = (),
    disagreements: Sequence[Disagreement] = (),
    *,
    low_confidence: float = LOW_CONFIDENCE,
) -> list[ReviewItem]:
    """One item per example with a reason, highest priority first.

    Priority adds up what each reason is worth, each in [0, 1]: a likely label error
    ``1 - quality``, a disagreement the LLM's confidence (0.5 without probabilities), an LLM
    answer below ``low_confidence`` ``1 - confidence``."""
    priority: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
    suggested: dict[str, str] = {}

    def add(example_id: str, worth: float, reason: str, label: str | None) -> None:
        priority[example_id] = priority.get(example_id, 0.0) + worth
        reasons.setdefault(example_id, []).append(reason)
        if label is not None:
            suggested.setdefault(example_id, label)

    for issue in label_issues:
        reason = f"likely label error: given {issue.given}, model suggests {issue.suggested} (quality {issue.quality:.3f})"
        add(issue.id, 1.0 - issue.quality, reason, issue.suggested)
    for item in disagreements:
        confidence = item.llm_confidence
        reason = f"LLM says {item.llm}, reference says {item.reference}"
        if confidence is not None:
            reason += f" (LLM confidence {confidence:.2f})"
        add(item.id, 0.5 if confidence is None else confidence, reason, item.llm)
    if data.llm is not None:
        confidence = np.nanmax(np.where(np.isnan(data.llm.probs), -1.0, data.llm.probs), axis=1)
        for row, example in enumerate(data.examples):
            if 0.0 <= confidence[row] < low_confidence and data.llm.labels[row] is not None:
                reason = f"low LLM confidence {confidence[row]:.2f} for {data.llm.labels[row]}"
                add(example.id, 1.0 - float(confidence[row]), reason, data.llm.labels[row])
    order = sorted(priority, key=lambda example_id: (-priority[example_id], example_id))
    return [
        ReviewItem(
            example_id,
            rank,
            round(priority[example_id], 4),
            reasons[example_id],
            suggested.get(example_id),
        )
        for rank, example_id in enumerate(order, start=1)
    ]


def store_review_queue(
    task: Task, data: AuditData, items: Sequence[ReviewItem], queue: str = QUEUE
) -> None:
    """Replace ``queue`` in the task's store with ``items`` (adding their examples if needed;
    E207 when one of them has another text in the store under its id)."""
    wanted = {item.example_id for item in items}
    with Store.for_task(task, create=True) as store:
        store.add_examples([e for e in data.examples if e.id in wanted], task.kind)
        store.replace_review_queue(queue, items)
