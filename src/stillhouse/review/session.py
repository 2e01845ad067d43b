"""The review itself, without HTTP: what a reviewer sees next, what a decision writes, undo,
history, progress, and the conflicts a lead resolves into gold answers.

:class:`Review` holds the queue (built once) and an open store; every call reads the people's
annotations afresh, so several review servers (or a resolve) on one store see each other's work.
Every decision is committed to the store before the call returns: a closed browser or a killed
server loses nothing decided.

Who sees what: an example goes to one reviewer, or to two when it is an overlap example
(:func:`~stillhouse.review.queue.is_overlap`); a reviewer never meets an example again once
they answered it (a skipped one comes back after everything else); an example shown to someone
is held for them for :data:`HOLD_S` seconds so that two people on one server do not label the
same text; a resolved conflict (a ``gold`` answer from the conflicts view) is done for everyone.
Overlap examples are blind: nothing about another reviewer's answer is shown with them.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stillhouse.data.records import Annotation, Answer, Example, Kind, answer_to_json
from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.review.agreement import span_tokens
from stillhouse.review.decisions import (
    GOLD,
    HUMAN_PREFIX,
    RESOLVED,
    Context,
    Decision,
    check_decision,
    counts_as_done,
    decision_annotations,
    decision_of,
    gives_answer,
    reviewer_name,
    undone,
)
from stillhouse.review.queue import REASON_NAMES, QueueEntry, ReviewQueue, is_overlap
from stillhouse.task import Task

HISTORY = 10
HOLD_S = 600.0
# Items per hour come from the median lead time of this many latest decisions.
SPEED_WINDOW = 50
SIMILAR_SHOWN = 5
EXCERPT = 120


@dataclass
class People:
    """The people's annotations in the store: per example, per annotator (``human:*``), and
    the examples a conflict resolution made gold."""

    by_example: dict[str, dict[str, Annotation]] = field(default_factory=dict)
    resolved: dict[str, Annotation] = field(default_factory=dict)

    def of(self, annotator: str) -> list[Annotation]:
        return [
            found
            for answers in self.by_example.values()
            if (found := answers.get(annotator)) is not None
        ]


def read_people(store: Store, kind: Kind) -> People:
    """Every ``human:*`` annotation and every resolved ``gold`` one of the store."""
    people = People()
    for annotator, _ in store.annotators():
        if annotator.startswith(HUMAN_PREFIX):
            for annotation in store.annotations(kind, annotator):
                people.by_example.setdefault(annotation.example_id, {})[annotator] = annotation
        elif annotator == GOLD:
            for annotation in store.annotations(kind, annotator):
                if annotation.info.get("decision") == RESOLVED:
                    people.resolved[annotation.example_id] = annotation
    return people


@dataclass(frozen=True)
class Progress:
    """A reviewer's progress in this queue: ``done`` decisions (skips not counted), ``remaining``
    examples, ``per_hour`` (from the median lead time) and ``eta_s``; None where unknown."""

    done: int
    remaining: int
    skipped: int
    session_done: int
    per_hour: float | None
    eta_s: float | None


class Review:
    """A review of ``task`` over ``queue``, writing to ``store`` (see the module docstring).

    ``annotator`` arguments are full annotator ids (``human:alice``)."""

    def __init__(
        self,
        task: Task,
        store: Store,
        queue: ReviewQueue,
        *,
        hold_s: float = HOLD_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.task = task
        self.store = store
        self.queue = queue
        self.kind: Kind = task.kind
        self.hold_s = hold_s
        self.clock = clock
        self._held: dict[str, dict[str, float]] = {}  # example id → annotator → until
        self._front: dict[str, list[str]] = {}  # annotator → ids undone, shown next
        self._extra: dict[str, Example] = {}
        self._people: People | None = None
        self._people_version: int | None = None

    # who sees what ------------------------------------------------------------------------
    def people(self) -> People:
        """The people's annotations: read from the store when another connection wrote to it
        since the last read (another review server, a resolve), else kept in memory with this
        review's own writes applied (:meth:`_remember`)."""
        version = self.store.data_version()
        if self._people is None or version != self._people_version:
            self._people = read_people(self.store, self.kind)
            self._people_version = version
        return self._people

    def _write(self, annotations: Sequence[Annotation]) -> None:
        """Commit ``annotations`` to the store, then apply them to the people kept in memory."""
        self.store.add_annotations(annotations, self.kind)
        if self._people is None:
            return
        for annotation in annotations:
            if annotation.annotator.startswith(HUMAN_PREFIX):
                answers = self._people.by_example.setdefault(annotation.example_id, {})
                answers[annotation.annotator] = annotation
            elif annotation.annotator == GOLD and annotation.info.get("decision") == RESOLVED:
                self._people.resolved[annotation.example_id] = annotation

    def status(self, annotator: str, example_id: str, people: People) -> str:
        """``done`` (answered by this reviewer), ``skipped``, ``complete`` (answered by as many
        others as it needs, or resolved) or ``pending``."""
        if example_id in people.resolved:
            return "complete"
        answers = people.by_example.get(example_id, {})
        mine = answers.get(annotator)
        if mine is not None and counts_as_done(mine):
            return "done"
        others = sum(
            1 for who, found in answers.items() if who != annotator and counts_as_done(found)
        )
        if others >= self._needed(example_id):
            return "complete"
        return "skipped" if mine is not None and decision_of(mine) == "skip" else "pending"

    def _needed(self, example_id: str) -> int:
        return 2 if is_overlap(example_id, self.queue.overlap) else 1

    def _held_by_others(self, annotator: str, example_id: str, people: People) -> bool:
        now = self.clock()
        holders = {
            who: until
            for who, until in self._held.get(example_id, {}).items()
            if until > now and who != annotator
        }
        answers = people.by_example.get(example_id, {})
        others = sum(1 for who, a in answers.items() if who != annotator and counts_as_done(a))
        return bool(holders) and others + len(holders) >= self._needed(example_id)

    def _hold(self, annotator: str, example_id: str) -> None:
        self._held.setdefault(example_id, {})[annotator] = self.clock() + self.hold_s

    def _release(self, annotator: str, example_ids: Sequence[str]) -> None:
        for example_id in example_ids:
            self._held.get(example_id, {}).pop(annotator, None)

    def next_id(self, annotator: str, people: People | None = None) -> str | None:
        """The example this reviewer sees next (and holds it for them), or None when done."""
        people = self.people() if people is None else people
        front = self._front.get(annotator, [])
        while front:
            example_id = front.pop()
            if self.status(annotator, example_id, people) in ("pending", "skipped"):
                self._hold(annotator, example_id)
                return example_id
        skipped: list[str] = []
        for first in self.queue.order:
            status = self.status(annotator, first, people)
            group = (first,) if status == "pending" else self.queue.members_of.get(first, ())
            if status == "skipped":
                skipped.append(first)
            for example_id in group:
                found = (
                    status if example_id == first else self.status(annotator, example_id, people)
                )
                if found == "pending" and not self._held_by_others(annotator, example_id, people):
                    self._hold(annotator, example_id)
                    return example_id
                if found == "skipped" and example_id != first:
                    skipped.append(example_id)
        for example_id in skipped:
            if not self._held_by_others(annotator, example_id, people):
                self._hold(annotator, example_id)
                return example_id
        return None

    def similar_pending(self, annotator: str, example_id: str, people: People) -> list[str]:
        """The near duplicates shown with ``example_id`` that this reviewer has not answered."""
        return [
            other
            for other in self.queue.members_of.get(example_id, ())
            if self.status(annotator, other, people) in ("pending", "skipped")
        ]

    # what the page shows ------------------------------------------------------------------
    def entry(self, example_id: str) -> QueueEntry:
        found = self.queue.entries.get(example_id)
        if found is None:
            raise fail(Errors.E884, id=example_id)
        return found

    def item(self, annotator: str, example_id: str, people: People | None = None) -> dict[str, Any]:
        """What the page shows of one example (JSON-ready)."""
        people = self.people() if people is None else people
        entry = self.entry(example_id)
        similar = self.similar_pending(annotator, example_id, people)
        mine = people.by_example.get(example_id, {}).get(annotator)
        suggestion = entry.suggestion
        probs = None
        if suggestion is not None and suggestion.probs:
            probs = sorted(
                ((label, round(float(p), 6)) for label, p in suggestion.probs.items()),
                key=lambda pair: -pair[1],
            )
        return {
            "id": example_id,
            "text": entry.example.text,
            "reasons": [
                {"kind": r.kind, "name": REASON_NAMES.get(r.kind, r.kind), "detail": r.detail}
                for r in entry.reasons
            ],
            "suggestion": None
            if suggestion is None
            else {
                "source": suggestion.source,
                "answer": answer_to_json(suggestion.answer, self.kind),
                "score": suggestion.score,
                "probs": probs,
            },
            "similar": {
                "count": len(similar),
                "texts": [self.queue.entries[i].example.text for i in similar[:SIMILAR_SHOWN]],
            },
            "overlap": is_overlap(example_id, self.queue.overlap),
            "previous": None
            if mine is None or not gives_answer(mine)
            else answer_to_json(mine.answer, self.kind),
            "previous_decision": None if mine is None else decision_of(mine),
            "tokens": span_tokens(entry.example.text) if self.kind == "spans" else None,
        }

    # decisions ----------------------------------------------------------------------------
    def decide(self, annotator: str, session: str, decision: Decision) -> list[Annotation]:
        """Store one decision (E884 an example not in the queue, E886 a bad request) for the
        example and, with ``apply_to_similar``, the near duplicates shown with it."""
        check_decision(decision)
        entry = self.entry(decision.example_id)
        people = self.people()
        ids = [decision.example_id]
        if decision.apply_to_similar:
            ids += self.similar_pending(annotator, decision.example_id, people)
        context = Context(
            annotator=annotator,
            session=session,
            queue=self.queue.name,
            reasons=[reason.kind for reason in entry.reasons],
            suggestion=entry.suggestion,
            overlap=is_overlap(decision.example_id, self.queue.overlap),
        )
        written = decision_annotations(decision, context, self.kind, ids, uuid.uuid4().hex[:12])
        self._write(written)
        self._release(annotator, ids)
        return written

    def history(self, annotator: str, people: People | None = None) -> list[dict[str, Any]]:
        """This reviewer's last :data:`HISTORY` decisions, newest first (a decision applied to
        similar texts is one row)."""
        people = self.people() if people is None else people
        rows: dict[str, dict[str, Any]] = {}
        mine = sorted(people.of(annotator), key=lambda a: -a.created_at)
        for annotation in mine:
            decision = decision_of(annotation)
            if decision == "undone" or annotation.example_id not in self.queue.entries:
                continue
            key = str(annotation.info.get("decision_id") or annotation.example_id)
            if key in rows:
                rows[key]["count"] += 1
                if "applied_from" not in annotation.info:
                    rows[key]["id"] = annotation.example_id
                continue
            if len(rows) == HISTORY:
                break
            text = self.queue.entries[annotation.example_id].example.text
            rows[key] = {
                "id": str(annotation.info.get("applied_from") or annotation.example_id),
                "excerpt": text[:EXCERPT],
                "decision": decision,
                "answer": answer_to_json(annotation.answer, self.kind)
                if gives_answer(annotation)
                else None,
                "at": annotation.created_at,
                "count": 1,
                "decision_id": key,
            }
        return list(rows.values())

    def undo(self, annotator: str, session: str) -> str:
        """Take back this reviewer's latest decision (E887 when none of the last
        :data:`HISTORY` is left): its annotations become ``undone`` and its example is shown
        next. Returns the example id."""
        people = self.people()
        latest = self.history(annotator, people)
        if not latest or latest[0]["decision_id"] not in self._recent(annotator, people):
            raise fail(Errors.E887, limit=HISTORY)
        row = latest[0]
        taken = [
            annotation
            for annotation in people.of(annotator)
            if str(annotation.info.get("decision_id") or annotation.example_id)
            == row["decision_id"]
            and decision_of(annotation) != "undone"
        ]
        now = self.clock()
        self._write([undone(a, session, now) for a in taken])
        self._front.setdefault(annotator, []).append(row["id"])
        return str(row["id"])

    def _recent(self, annotator: str, people: People) -> set[str]:
        """The ids of this reviewer's last :data:`HISTORY` decisions, undone ones included (so
        that undo goes back ten decisions, not through the whole history)."""
        times: dict[str, float] = {}
        for annotation in people.of(annotator):
            if annotation.example_id not in self.queue.entries:
                continue
            taken = annotation.info.get("undone")
            if decision_of(annotation) == "undone" and isinstance(taken, dict):
                key, at = str(taken.get("decision_id") or annotation.example_id), taken.get("at")
            else:
                key = str(annotation.info.get("decision_id") or annotation.example_id)
                at = annotation.created_at
            if isinstance(at, int | float):
                times[key] = max(times.get(key, at), at)
        return set(sorted(times, key=lambda key: -times[key])[:HISTORY])

    # progress -----------------------------------------------------------------------------
    def progress(self, annotator: str, session: str, people: People | None = None) -> Progress:
        people = self.people() if people is None else people
        done = remaining = skipped = 0
        for example_id in self.queue.ids():
            status = self.status(annotator, example_id, people)
            done += status == "done"
            remaining += status in ("pending", "skipped")
            skipped += status == "skipped"
        mine = [a for a in people.of(annotator) if a.example_id in self.queue.entries]
        answered = [a for a in mine if counts_as_done(a)]
        session_done = sum(1 for a in answered if a.info.get("session") == session)
        latest = sorted(answered, key=lambda a: -a.created_at)[:SPEED_WINDOW]
        leads = [
            float(a.info["lead_time_ms"])
            for a in latest
            if isinstance(a.info.get("lead_time_ms"), int | float) and a.info["lead_time_ms"] > 0
        ]
        per_hour = eta = None
        if leads:
            median = statistics.median(leads)
            per_hour = 3_600_000.0 / median
            eta = remaining * median / 1000.0
        return Progress(done, remaining, skipped, session_done, per_hour, eta)

    # conflicts ----------------------------------------------------------------------------
    def conflicts(self, people: People | None = None) -> list[dict[str, Any]]:
        """Examples on which people disagree (two or more answers that differ; a reject
        against a label counts) or that someone flagged, not resolved yet, in store order."""
        people = self.people() if people is None else people
        found = []
        for example_id, answers in people.by_example.items():
            if example_id in people.resolved:
                continue
            given = {who: a for who, a in answers.items() if counts_as_done(a)}
            flagged = [a for a in given.values() if decision_of(a) == "flag"]
            distinct = {_answer_key(a) for a in given.values() if decision_of(a) != "flag"}
            if flagged or len(distinct) > 1:
                found.append((example_id, given))
        texts = {e.id: e for e in self.store.examples(self.kind, [i for i, _ in found])}
        rows = []
        for example_id, given in found:
            if example_id not in texts:
                continue
            self._extra[example_id] = texts[example_id]
            entry = self.queue.entries.get(example_id)
            suggestion = entry.suggestion if entry is not None else None
            rows.append(
                {
                    "id": example_id,
                    "text": texts[example_id].text,
                    "answers": [
                        {
                            "annotator": reviewer_name(who),
                            "decision": decision_of(a),
                            "answer": answer_to_json(a.answer, self.kind)
                            if gives_answer(a)
                            else None,
                            "comment": str(a.info.get("comment", "")),
                        }
                        for who, a in sorted(given.items())
                    ],
                    "suggestion": None
                    if suggestion is None
                    else {
                        "source": suggestion.source,
                        "answer": answer_to_json(suggestion.answer, self.kind),
                        "score": suggestion.score,
                    },
                }
            )
        return rows

    def resolve(
        self, annotator: str, session: str, example_id: str, answer: Answer, lead_time_ms: int = 0
    ) -> Annotation:
        """Settle a conflict: ``answer`` becomes the example's ``gold`` annotation, with every
        person's answer kept in its info (E884 when the example has no open conflict)."""
        people = self.people()
        open_ids = {row["id"] for row in self.conflicts(people)}
        if example_id not in open_ids:
            raise fail(Errors.E884, id=example_id)
        given = people.by_example.get(example_id, {})
        info = {
            "decision": RESOLVED,
            "resolved_by": reviewer_name(annotator),
            "session": session,
            "lead_time_ms": max(0, int(lead_time_ms)),
            "answers": {
                reviewer_name(who): {
                    "decision": decision_of(a),
                    "answer": answer_to_json(a.answer, self.kind) if gives_answer(a) else None,
                }
                for who, a in given.items()
            },
        }
        annotation = Annotation(example_id, GOLD, answer, None, info, self.clock())
        self._write([annotation])
        return annotation

    def text_of(self, example_id: str) -> str:
        entry = self.queue.entries.get(example_id)
        if entry is not None:
            return entry.example.text
        if example_id in self._extra:
            return self._extra[example_id].text
        found = self.store.examples(self.kind, [example_id])
        if not found:
            raise fail(Errors.E884, id=example_id)
        return found[0].text


def _answer_key(annotation: Annotation) -> str:
    """A comparable form of a person's answer (a reject is an answer of its own)."""
    if not gives_answer(annotation):
        return "\x00" + decision_of(annotation)
    answer = annotation.answer
    if isinstance(answer, str):
        return answer
    return repr(sorted(repr(part) for part in answer))
