"""`review --stats`: per-reviewer progress and speed, agreement on the overlap, open conflicts.

Read from the store only (nothing is written): every ``human:*`` annotation with the decision
the review page recorded (an annotation imported from elsewhere counts as a correction).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from stillhouse.data.store import Store
from stillhouse.review.agreement import Agreement, agreement
from stillhouse.review.decisions import (
    DECISIONS,
    counts_as_done,
    decision_of,
    reviewer_name,
)
from stillhouse.review.session import People, read_people
from stillhouse.task import Task


@dataclass(frozen=True)
class ReviewerStats:
    """One reviewer: ``decisions`` by kind (undone ones not counted), ``done`` (all but skips),
    ``accept_rate`` (accepted among answers with a suggestion), ``per_hour`` from the median
    lead time, ``first`` and ``last`` decision times (seconds since the epoch)."""

    name: str
    done: int
    decisions: dict[str, int]
    accept_rate: float | None
    median_lead_ms: float | None
    per_hour: float | None
    first: float | None
    last: float | None
    sessions: int


@dataclass(frozen=True)
class ReviewStats:
    store: str
    examples: int
    reviewed: int  # examples with at least one decision that counts
    reviewers: list[ReviewerStats]
    agreement: Agreement | None
    conflicts: int
    resolved: int
    by_label: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["agreement"] = None if self.agreement is None else self.agreement.as_dict()
        return found


def reviewer_stats(annotator: str, people: People) -> ReviewerStats:
    mine = [a for a in people.of(annotator)]
    counted = [a for a in mine if decision_of(a) != "undone"]
    decisions = {name: 0 for name in DECISIONS if name != "undone"}
    for annotation in counted:
        decisions[decision_of(annotation)] = decisions.get(decision_of(annotation), 0) + 1
    leads = [
        float(a.info["lead_time_ms"])
        for a in counted
        if isinstance(a.info.get("lead_time_ms"), int | float) and a.info["lead_time_ms"] > 0
    ]
    median = statistics.median(leads) if leads else None
    suggested = [
        a for a in counted if decision_of(a) in ("accept", "correct") and a.info.get("suggestion")
    ]
    accepted = sum(1 for a in suggested if decision_of(a) == "accept")
    times = [a.created_at for a in counted]
    return ReviewerStats(
        name=reviewer_name(annotator),
        done=sum(1 for a in counted if counts_as_done(a)),
        decisions=decisions,
        accept_rate=accepted / len(suggested) if suggested else None,
        median_lead_ms=median,
        per_hour=3_600_000.0 / median if median else None,
        first=min(times) if times else None,
        last=max(times) if times else None,
        sessions=len({a.info.get("session") for a in counted if a.info.get("session")}),
    )


def review_stats(task: Task, *, n_resamples: int = 1000, seed: int = 0) -> ReviewStats:
    """The review's numbers for ``task``'s store (E204 when there is none; E205/E206 another
    task's store). Nothing is written."""
    from stillhouse.review.queue import ReviewQueue
    from stillhouse.review.session import Review  # conflicts are the review's own rule

    with Store.for_task(task, create=False) as store:
        people = read_people(store, task.kind)
        annotators = sorted({who for answers in people.by_example.values() for who in answers})
        texts = {e.id: e.text for e in store.examples(task.kind, list(people.by_example))}
        examples = store.count_examples()
        conflicts = Review(task, store, ReviewQueue("stats", [], {})).conflicts(people)
    reviewed = sum(
        1
        for answers in people.by_example.values()
        if any(counts_as_done(a) for a in answers.values())
    )
    by_label: dict[str, int] = {}
    for answers in people.by_example.values():
        for annotation in answers.values():
            if decision_of(annotation) in ("accept", "correct"):
                answer = annotation.answer
                names = (
                    [answer]
                    if isinstance(answer, str)
                    else [getattr(part, "label", part) for part in answer]
                )
                for name in names:
                    by_label[str(name)] = by_label.get(str(name), 0) + 1
    return ReviewStats(
        store=str(task.store_path),
        examples=examples,
        reviewed=reviewed,
        reviewers=[reviewer_stats(who, people) for who in annotators],
        agreement=agreement(
            people.by_example,
            texts,
            task.kind,
            task.label_names,
            n_resamples=n_resamples,
            seed=seed,
        ),
        conflicts=len(conflicts),
        resolved=len(people.resolved),
        by_label=by_label,
    )
