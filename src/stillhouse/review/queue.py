"""The review queue: which examples a reviewer sees, in which order, with which suggestion.

``auto`` puts first what a person's look is worth most: texts a served cascade abstained on and
the audit's likely label errors (by the worth the audit or the server gave them) and texts
``[privacy] remote = "block"`` kept from a remote LLM (no suggestion: the LLM never saw them), then LLM–human
disagreements (the LLM's most confident first), then the rest by uncertainty: the margin between
the top two probabilities, smallest first. Examples whose answer is already settled (gold from a
data file) are left out unless a disagreement or the audit brings them in, or ``--input`` names
them. The other queues take one of those sources alone (``audit``, ``abstained``, ``privacy``,
``disagreement``), every unsettled example by margin (``uncertain``), or every unsettled example
in a fixed pseudo-random order (``random``).

Near duplicates (the audit's character-shingle Jaccard ≥ 0.8, exact copies after normalisation
included) are shown once: the first in queue order carries the others as ``similar``, and a
decision can apply to all of them. ``--overlap`` sends a share of the examples to two reviewers;
which ones is decided by a hash of the example id (:func:`is_overlap`), so no table records it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from stillhouse.data.records import Annotation, Answer, Example, Kind
from stillhouse.data.store import (
    ABSTAINED_QUEUE,
    INJECTION_QUEUE,
    PRIVACY_QUEUE,
    QueuedPrediction,
    ReviewItem,
    Store,
)
from stillhouse.export import choose
from stillhouse.review.decisions import GOLD, HUMAN_PREFIX, RESOLVED, Suggestion, gives_answer
from stillhouse.task import Task

QUEUES = (
    "auto",
    "uncertain",
    "audit",
    "disagreement",
    "abstained",
    "privacy",
    "injection",
    "random",
)
AUDIT_QUEUE = "audit"
SIMILAR_THRESHOLD = 0.8
# Reason kinds, and how the page names them.
REASON_NAMES = {
    "abstained": "abstained",
    "privacy_blocked": "kept from the LLM (personal data)",
    "injection_flagged": "kept from the LLM (possible prompt injection)",
    "label_error": "likely label error",
    "disagreement": "LLM–human disagreement",
    "low_confidence": "low confidence",
    "uncertain": "uncertain",
    "random": "random sample",
    "input": "from --input",
}
_AUDIT_PREFIXES = (
    ("likely label error", "label_error"),
    ("LLM says", "disagreement"),
    ("low LLM confidence", "low_confidence"),
    ("abstained", "abstained"),
)


@dataclass(frozen=True)
class Reason:
    """Why an example is in the queue: ``kind`` (a key of :data:`REASON_NAMES`) and details."""

    kind: str
    detail: str = ""


@dataclass(frozen=True)
class QueueEntry:
    """One example of the queue with its reasons, suggestion and margin (None: no probabilities);
    ``similar`` lists the ids of its near duplicates shown with it (on the first of a group)."""

    example: Example
    reasons: tuple[Reason, ...]
    suggestion: Suggestion | None
    margin: float | None
    similar: tuple[str, ...] = ()


@dataclass
class ReviewQueue:
    """The ordered queue: ``order`` the ids shown in turn (the first of each group of near
    duplicates), ``entries`` every example of the queue by id (group members included)."""

    name: str
    order: list[str]
    entries: dict[str, QueueEntry]
    overlap: float = 0.0
    members_of: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def ids(self) -> list[str]:
        """Every id in the order a reviewer meets them (each group's members after its first)."""
        return [i for first in self.order for i in (first, *self.members_of.get(first, ()))]


def is_overlap(example_id: str, share: float) -> bool:
    """Whether ``example_id`` goes to two reviewers when a ``share`` of the examples does:
    the first 48 bits of sha256 of the id, as a fraction, below ``share``."""
    if share <= 0.0:
        return False
    if share >= 1.0:
        return True
    digest = hashlib.sha256(f"overlap:{example_id}".encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12) < share


def margin_of(suggestion: Suggestion | None, kind: Kind) -> float | None:
    """How sure a suggestion is, 0 (a toss-up) to 1: classify, the top probability minus the
    second; multilabel, the least sure label's distance from 0.5, doubled; spans, the lowest
    span score. None without probabilities."""
    if suggestion is None:
        return None
    if kind == "spans":
        scores = [span.score for span in suggestion.answer if span.score is not None]  # type: ignore[union-attr]
        return min(scores) if scores else None
    if not suggestion.probs:
        return None
    values = sorted((float(p) for p in suggestion.probs.values()), reverse=True)
    if kind == "multilabel":
        return min(abs(2.0 * p - 1.0) for p in values)
    return values[0] - (values[1] if len(values) > 1 else 0.0)


def score_of(answer: Answer, probs: Mapping[str, float] | None, kind: Kind) -> float | None:
    """The probability of ``answer``: classify, its label's; multilabel, the least sure label
    decision's; spans, the lowest span score (None where there is none)."""
    if kind == "spans":
        scores = [span.score for span in answer if span.score is not None]  # type: ignore[union-attr]
        return min(scores) if scores and len(scores) == len(answer) else None
    if not probs:
        return None
    if kind == "classify":
        return float(probs.get(str(answer), 0.0))
    given = set(answer)
    return min(float(p) if label in given else 1.0 - float(p) for label, p in probs.items())


def suggestion_from(annotation: Annotation, kind: Kind) -> Suggestion:
    score = score_of(annotation.answer, annotation.probs, kind)
    return Suggestion(annotation.annotator, annotation.answer, annotation.probs, score)


def build_queue(
    task: Task,
    store: Store | None,
    queue: str = "auto",
    *,
    rows: Sequence[Example] | None = None,
    suggestions: Mapping[str, Suggestion] | None = None,
    overlap: float = 0.0,
    seed: int = 0,
    similar_threshold: float | None = SIMILAR_THRESHOLD,
) -> ReviewQueue:
    """The queue ``queue`` over the task's stored examples, or over ``rows`` only (the rows of
    --input, stored or not yet), ordered as the module docstring says. ``suggestions`` (by id)
    take the place of the stored LLM answers; ``similar_threshold`` None keeps near duplicates
    apart. ``store`` None: nothing is stored yet (rows only)."""
    kind = task.kind
    scope = None if rows is None else [row.id for row in rows]
    if store is None:
        examples = list(rows or ())
    elif rows is None:
        examples = store.examples(kind)
    else:
        stored = {example.id: example for example in store.examples(kind, scope)}
        examples = [stored.get(row.id, row) for row in rows]
    wanted = {example.id for example in examples}
    by_example: dict[str, list[Annotation]] = {}
    audit: dict[str, ReviewItem] = {}
    abstained: dict[str, QueuedPrediction] = {}
    blocked: dict[str, ReviewItem] = {}
    flagged: dict[str, ReviewItem] = {}  # [guard] kept them from the LLM (annotate)
    if store is not None:
        for annotation in store.annotations(kind):
            if annotation.example_id in wanted:
                by_example.setdefault(annotation.example_id, []).append(annotation)
        audit = {item.example_id: item for item in store.review_queue(AUDIT_QUEUE)}
        abstained = {item.example_id: item for item in store.queued_predictions(ABSTAINED_QUEUE)}
        blocked = {item.example_id: item for item in store.review_queue(PRIVACY_QUEUE)}
        flagged = {item.example_id: item for item in store.review_queue(INJECTION_QUEUE)}
    given = suggestions or {}

    entries: dict[str, QueueEntry] = {}
    keys: dict[str, tuple[float, ...]] = {}
    for position, example in enumerate(examples):
        annotations = by_example.get(example.id, [])
        llm = choose(annotations, "llm")
        reasons: list[Reason] = []
        priority = 0.0
        suggestion = given.get(example.id)
        if example.id in abstained:
            item = abstained[example.id]
            system = str(item.info.get("system", "the server"))
            confidence = item.info.get("confidence")
            detail = f"{system} abstained" + (
                f" (confidence {float(confidence):.2f})" if confidence is not None else ""
            )
            reasons.append(Reason("abstained", detail))
            priority = max(priority, float(item.priority))
            if suggestion is None and item.suggested is not None and kind == "classify":
                answer = item.suggested
                suggestion = Suggestion(
                    f"serve:{system}", answer, item.probs, score_of(answer, item.probs, kind)
                )
        if example.id in blocked:
            for text in blocked[example.id].reasons:
                reasons.append(Reason("privacy_blocked", text.partition(": ")[2]))
        if example.id in flagged:
            for text in flagged[example.id].reasons:
                reasons.append(Reason("injection_flagged", text.partition(": ")[2]))
            priority = max(priority, float(flagged[example.id].priority))
        if suggestion is None and llm is not None:
            suggestion = suggestion_from(llm, kind)
        if example.id in audit:
            item = audit[example.id]
            for text in item.reasons:
                reasons.append(Reason(_audit_kind(text), text))
            priority = max(priority, float(item.priority))
            if suggestion is None and item.suggested is not None and kind == "classify":
                suggestion = Suggestion("audit", item.suggested)
        reference = _reference(example, annotations)
        if (
            llm is not None
            and reference is not None
            and llm.answer != reference[1]
            and not any(r.kind == "disagreement" for r in reasons)
        ):
            detail = f"LLM says {_shown(llm.answer)}, {reference[0]} says {_shown(reference[1])}"
            reasons.append(Reason("disagreement", detail))
        settled = reference is not None and reference[0] == "gold"
        margin = margin_of(suggestion, kind)
        tier = _tier(reasons)
        if queue == "auto":
            if tier == 2 and settled and scope is None:
                continue
            if tier == 2 and margin is not None and margin < 0.5:
                reasons.append(Reason("uncertain", f"margin {margin:.2f} between the top two"))
            key: tuple[float, ...] = (
                tier,
                _within_tier(tier, priority, suggestion, margin),
                position,
            )
        elif queue == AUDIT_QUEUE:
            if example.id not in audit:
                continue
            key = (audit[example.id].rank,)
        elif queue == "abstained":
            if example.id not in abstained:
                continue
            key = (abstained[example.id].rank,)
        elif queue == PRIVACY_QUEUE:
            if example.id not in blocked:
                continue
            key = (blocked[example.id].rank,)
        elif queue == INJECTION_QUEUE:
            if example.id not in flagged:
                continue
            key = (-flagged[example.id].priority, flagged[example.id].rank)
        elif queue == "disagreement":
            if not any(r.kind == "disagreement" for r in reasons):
                continue
            score = (
                suggestion.score if suggestion is not None and suggestion.score is not None else 0.0
            )
            key = (-score, position)
        elif queue == "uncertain":
            if margin is None or (settled and scope is None):
                continue
            reasons.append(Reason("uncertain", f"margin {margin:.2f} between the top two"))
            key = (margin, position)
        else:  # random
            if settled and scope is None:
                continue
            reasons.append(Reason("random", ""))
            digest = hashlib.sha256(f"{seed}:{example.id}".encode()).hexdigest()
            key = (float(int(digest[:12], 16)), position)
        if scope is not None and not reasons:
            reasons.append(Reason("input", ""))
        entries[example.id] = QueueEntry(example, tuple(reasons), suggestion, margin)
        keys[example.id] = key
    order = sorted(entries, key=lambda example_id: keys[example_id])
    result = ReviewQueue(queue, order, entries, overlap)
    if similar_threshold is not None and kind != "spans" and len(order) > 1:
        _group_similar(result, similar_threshold)
    return result


def _within_tier(
    tier: int, priority: float, suggestion: Suggestion | None, margin: float | None
) -> float:
    """The order inside a tier of ``auto``: the worth the audit or the server gave (tier 0), the
    LLM's confidence (disagreements, tier 1), the margin (the rest; no probabilities last)."""
    if tier == 0:
        return -priority
    if tier == 1:
        return -(suggestion.score or 0.0) if suggestion is not None else 0.0
    return math.inf if margin is None else margin


def _tier(reasons: Sequence[Reason]) -> int:
    kinds = {reason.kind for reason in reasons}
    if kinds & {"abstained", "label_error", "privacy_blocked", "injection_flagged"}:
        return 0
    if "disagreement" in kinds:
        return 1
    return 2


def _audit_kind(text: str) -> str:
    for prefix, kind in _AUDIT_PREFIXES:
        if text.startswith(prefix):
            return kind
    return "low_confidence"


def _reference(example: Example, annotations: Sequence[Annotation]) -> tuple[str, Answer] | None:
    """What the LLM's answer is compared with: a resolved or file gold answer (``gold``), else a
    person's most recent answer (``a person``; a name is never shown, so double annotation
    stays blind)."""
    golds = [a for a in annotations if a.annotator == GOLD and not a.info.get("invalid")]
    if golds:
        return "gold", golds[0].answer
    if example.gold is not None:
        return "gold", example.gold
    people = [
        a
        for a in annotations
        if a.annotator.startswith(HUMAN_PREFIX) and gives_answer(a) and not a.info.get("overlap")
    ]
    if people:
        return "a person", max(people, key=lambda a: a.created_at).answer
    return None


def _shown(answer: Answer) -> str:
    if isinstance(answer, str):
        return answer
    if answer and not isinstance(answer[0], str):
        return f"{len(answer)} span(s)"
    return ", ".join(answer) or "no label"  # type: ignore[arg-type]


def resolved(annotations: Sequence[Annotation]) -> bool:
    return any(a.info.get("decision") == RESOLVED for a in annotations)


def _group_similar(queue: ReviewQueue, threshold: float) -> None:
    """Fold near duplicates into the first of their group in queue order (in place)."""
    from stillhouse.audit.near_duplicates import SimilarPair, union_find_groups
    from stillhouse.audit.normalize import normalize_text

    texts = [queue.entries[i].example.text for i in queue.order]
    keys = [normalize_text(text) for text in texts]
    first_of_key: dict[str, int] = {}
    pairs = []
    for row, key in enumerate(keys):
        first = first_of_key.setdefault(key, row)
        if first != row:
            pairs.append(SimilarPair(first, row, 1.0, "exact"))
    representatives = sorted(set(first_of_key.values()))
    try:
        from stillhouse.audit.near_duplicates import MinHashIndex

        index = MinHashIndex([texts[row] for row in representatives], threshold)
        pairs += [
            SimilarPair(representatives[p.first], representatives[p.second], p.similarity, p.method)
            for p in index.self_pairs()
        ]
    except ImportError:  # datasketch (the audit extra) missing: exact copies only
        pass
    groups = union_find_groups(len(texts), pairs)
    if not groups:
        return
    members_of: dict[str, tuple[str, ...]] = {}
    folded: set[str] = set()
    for rows in groups:
        ids = [queue.order[row] for row in sorted(rows)]
        first, rest = ids[0], tuple(ids[1:])
        members_of[first] = rest
        folded.update(rest)
        queue.entries[first] = replace(queue.entries[first], similar=rest)
    queue.order = [i for i in queue.order if i not in folded]
    queue.members_of = members_of
