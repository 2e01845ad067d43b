"""What a reviewer's decision is, and how it is stored: one ``human:NAME`` annotation per example.

Every decision is an :class:`~stillhouse.data.records.Annotation` written at once to the store.
Its ``info`` records how the answer was given::

    decision      accept | correct | reject | skip | flag | undone (resolve: a ``gold`` answer)
    invalid       True for reject, skip, flag and undone: no label, so export, train --from-store
                  and the store's label checks ignore the answer (an empty one)
    lead_time_ms  how long the item was on screen before the decision
    session       the browser session; decision_id: one id per key press (a decision applied to
                  similar texts writes one annotation per text, all with the same id)
    queue, reasons the queue and why the item was in it; suggestion: what was shown (source,
                  answer, score); comment (flag); applied_from (the text the decision was made on)

A reject ("none of the labels fits"), a skip and a flag are answers without a label: they are
stored with ``invalid`` so that nothing downstream takes them for one, and they keep the item
from coming back to the same reviewer (a skipped item comes back after everything else). Undo
replaces the annotation with ``decision: undone`` (the store keeps no deletions), which makes the
item unanswered again.
"""

from __future__ import annotations

import itertools
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stillhouse.data.records import Annotation, Answer, Kind, Span, answer_to_json
from stillhouse.errors import Errors, fail

HUMAN_PREFIX = "human:"
GOLD = "gold"
# Decisions that give an answer (a label, a label set or spans).
ANSWERED = ("accept", "correct")
# Decisions without an answer: stored with info["invalid"], so never taken as a label.
WITHOUT_ANSWER = ("reject", "skip", "flag", "undone")
DECISIONS = (*ANSWERED, *WITHOUT_ANSWER)
# What a page may send: an answer (accept or correct is decided by comparing it with the
# suggestion), or one of the decisions without an answer (undo has its own request).
REQUESTS = ("answer", "reject", "skip", "flag")
RESOLVED = "resolve"
NAME_MAX = 64
COMMENT_MAX = 2000
# A lead time above a day is a tab left open, not time spent on the item.
LEAD_TIME_MAX_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Suggestion:
    """What the page shows as the proposed answer: from ``source`` (an annotator id such as
    ``llm:…``, ``input:FILE`` or ``serve:SYSTEM``), with per-label ``probs`` where known and
    ``score``, the probability of ``answer`` (None where the source gives none)."""

    source: str
    answer: Answer
    probs: dict[str, float] | None = None
    score: float | None = None

    def to_info(self, kind: Kind) -> dict[str, Any]:
        return {
            "source": self.source,
            "answer": answer_to_json(self.answer, kind),
            "score": None if self.score is None else round(float(self.score), 6),
        }


@dataclass(frozen=True)
class Decision:
    """One reviewer decision as the page sends it (checked by :func:`check_decision`)."""

    example_id: str
    request: str  # one of REQUESTS
    answer: Answer | None = None
    lead_time_ms: int = 0
    comment: str = ""
    apply_to_similar: bool = True


@dataclass(frozen=True)
class Context:
    """Where a decision was made: the reviewer, the browser session, the queue and why the item
    was in it, and the suggestion that was shown."""

    annotator: str
    session: str
    queue: str
    reasons: list[str] = field(default_factory=list)
    suggestion: Suggestion | None = None
    overlap: bool = False


def human_annotator(name: str) -> str:
    return HUMAN_PREFIX + name


def reviewer_name(annotator: str) -> str:
    return annotator.removeprefix(HUMAN_PREFIX)


def check_name(name: str, what: str = "--annotator") -> str:
    """The reviewer name, stripped; E868 when it is empty, too long or has control characters."""
    stripped = name.strip()
    problem = ""
    if not stripped:
        problem = "it is empty"
    elif len(stripped) > NAME_MAX:
        problem = f"it has {len(stripped)} characters"
    elif any(unicodedata.category(char).startswith("C") for char in stripped):
        problem = "it has a control or invisible formatting character"
    if problem:
        raise fail(Errors.E868, what=what, name=name, problem=problem, maximum=NAME_MAX)
    return stripped


def empty_answer(kind: Kind) -> Answer:
    """The answer stored with a decision that gives none (never read: the annotation is invalid)."""
    return "" if kind == "classify" else ()


def parse_answer(
    value: Any, kind: Kind, labels: Sequence[str], example_id: str, text: str
) -> Answer:
    """An answer as the page sends it (a label; a list of labels; a list of ``{start, end,
    label}``) checked against the task and the text: E885 an unknown label, E886 anything else
    (offsets outside the text, overlapping or empty spans, a label given twice)."""
    known = set(labels)

    def label(item: Any) -> str:
        if not isinstance(item, str):
            raise fail(Errors.E886, id=example_id, detail=f"a label must be a string, got {item!r}")
        if item not in known:
            raise fail(Errors.E885, label=item)
        return item

    if kind == "classify":
        return label(value)
    if not isinstance(value, list):
        raise fail(Errors.E886, id=example_id, detail="the answer must be a list")
    if kind == "multilabel":
        chosen = [label(item) for item in value]
        if len(set(chosen)) != len(chosen):
            raise fail(Errors.E886, id=example_id, detail="a label is given twice")
        return tuple(name for name in labels if name in set(chosen))  # task order
    spans = []
    for item in value:
        if not isinstance(item, Mapping) or not {"start", "end", "label"} <= set(item):
            raise fail(Errors.E886, id=example_id, detail="a span is {start, end, label}")
        start, end = item["start"], item["end"]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (start, end)):
            raise fail(Errors.E886, id=example_id, detail="span offsets must be integers")
        if not 0 <= start < end <= len(text):
            detail = f"span {start}-{end} is outside the text ({len(text)} characters) or empty"
            raise fail(Errors.E886, id=example_id, detail=detail)
        spans.append(Span(start, end, label(item["label"]), text[start:end]))
    spans.sort(key=lambda span: (span.start, span.end))
    for before, after in itertools.pairwise(spans):
        if after.start < before.end:
            detail = f"spans {before.start}-{before.end} and {after.start}-{after.end} overlap"
            raise fail(Errors.E886, id=example_id, detail=detail)
    return tuple(spans)


def check_decision(decision: Decision) -> None:
    """E886 for a request that is not one of :data:`REQUESTS`, an answer missing or given where
    none belongs, or a comment that is too long."""
    problem = ""
    if decision.request not in REQUESTS:
        problem = f"unknown decision {decision.request!r} (one of: {', '.join(REQUESTS)})"
    elif (decision.request == "answer") != (decision.answer is not None):
        problem = "an answer goes with decision `answer` only, and that needs one"
    elif len(decision.comment) > COMMENT_MAX:
        problem = f"the comment has more than {COMMENT_MAX} characters"
    if problem:
        raise fail(Errors.E886, id=decision.example_id, detail=problem)


def decision_kind(decision: Decision, suggestion: Suggestion | None) -> str:
    """accept (the answer is the suggestion's), correct (another answer) or the request itself."""
    if decision.request != "answer":
        return decision.request
    if suggestion is not None and decision.answer == suggestion.answer:
        return "accept"
    return "correct"


def decision_annotations(
    decision: Decision,
    context: Context,
    kind: Kind,
    example_ids: Sequence[str],
    decision_id: str,
    now: float | None = None,
) -> list[Annotation]:
    """The annotations one decision writes: one for ``decision.example_id`` and one for each
    other id of ``example_ids`` (similar texts the decision applies to, noted ``applied_from``)."""
    now = time.time() if now is None else now
    chosen = decision_kind(decision, context.suggestion)
    info: dict[str, Any] = {
        "decision": chosen,
        "lead_time_ms": max(0, min(int(decision.lead_time_ms), LEAD_TIME_MAX_MS)),
        "session": context.session,
        "decision_id": decision_id,
        "queue": context.queue,
        "reasons": list(context.reasons),
        "suggestion": None if context.suggestion is None else context.suggestion.to_info(kind),
    }
    if context.overlap:
        info["overlap"] = True
    if decision.comment:
        info["comment"] = decision.comment
    if chosen in WITHOUT_ANSWER:
        info["invalid"] = True
    answer = decision.answer if decision.answer is not None else empty_answer(kind)
    annotations = []
    for example_id in example_ids:
        extra = {} if example_id == decision.example_id else {"applied_from": decision.example_id}
        annotations.append(
            Annotation(example_id, context.annotator, answer, None, {**info, **extra}, now)
        )
    return annotations


def undone(annotation: Annotation, session: str, now: float | None = None) -> Annotation:
    """The annotation that replaces ``annotation`` when its decision is undone: no answer, and
    what was undone kept in ``info`` for the record."""
    info = {
        "decision": "undone",
        "invalid": True,
        "session": session,
        "undone": {
            "decision": annotation.info.get("decision"),
            "decision_id": annotation.info.get("decision_id"),
            "at": annotation.created_at,
        },
    }
    empty: Answer = "" if isinstance(annotation.answer, str) else ()
    return Annotation(
        annotation.example_id,
        annotation.annotator,
        empty,
        None,
        info,
        time.time() if now is None else now,
    )


def decision_of(annotation: Annotation) -> str:
    """The decision an annotation records; a human annotation written without the review page
    (imported) counts as a correction, an invalid one as a reject."""
    found = annotation.info.get("decision")
    if isinstance(found, str) and found in (*DECISIONS, RESOLVED):
        return found
    return "reject" if annotation.info.get("invalid") else "correct"


def counts_as_done(annotation: Annotation) -> bool:
    """Whether the reviewer is done with the example (a skip or an undone decision is not)."""
    return decision_of(annotation) not in ("skip", "undone")


def gives_answer(annotation: Annotation) -> bool:
    return decision_of(annotation) in ANSWERED
