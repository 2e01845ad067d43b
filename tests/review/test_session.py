"""Decisions, undo, who sees what (overlap, holds, skips) and conflicts, on a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_helpers import LLM, distinct_texts, fill_classify, write_task

from stillhouse.data.records import Annotation
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.export import choose
from stillhouse.review.decisions import Decision
from stillhouse.review.queue import build_queue
from stillhouse.review.session import HISTORY, Review

ALICE, BOB = "human:alice", "human:bob"


def open_review(task, overlap: float = 0.0, **kwargs) -> Review:
    store = Store.for_task(task, create=True)
    queue = build_queue(task, store, "auto", overlap=overlap)
    return Review(task, store, queue, **kwargs)


@pytest.fixture
def review(tmp_path: Path):
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(15))
    opened = open_review(task)
    yield opened
    opened.store.close()


def stored(review: Review, annotator: str = ALICE) -> dict[str, Annotation]:
    return {a.example_id: a for a in review.store.annotations(review.kind, annotator)}


def test_each_decision_is_stored_at_once_with_what_was_shown(review):
    first = review.next_id(ALICE)
    suggestion = review.entry(first).suggestion
    review.decide(ALICE, "s1", Decision(first, "answer", suggestion.answer, lead_time_ms=1234))
    second = review.next_id(ALICE)
    other = next(
        label
        for label in review.task.label_names
        if label != review.entry(second).suggestion.answer
    )
    review.decide(ALICE, "s1", Decision(second, "answer", other, lead_time_ms=50))
    third = review.next_id(ALICE)
    review.decide(ALICE, "s1", Decision(third, "reject"))
    fourth = review.next_id(ALICE)
    review.decide(ALICE, "s1", Decision(fourth, "flag", comment="sarcasm?"))
    # a second connection sees every decision: nothing waits in memory
    with Store.for_task(review.task, create=False) as reader:
        found = {a.example_id: a for a in reader.annotations(review.kind, ALICE)}
    assert set(found) == {first, second, third, fourth}
    accepted = found[first]
    assert accepted.answer == suggestion.answer
    assert accepted.info["decision"] == "accept" and accepted.info["lead_time_ms"] == 1234
    assert accepted.info["session"] == "s1" and accepted.info["queue"] == "auto"
    assert accepted.info["suggestion"] == {
        "source": LLM,
        "answer": suggestion.answer,
        "score": pytest.approx(suggestion.score, abs=1e-6),
    }
    assert accepted.info["reasons"] == [r.kind for r in review.entry(first).reasons]
    assert found[second].info["decision"] == "correct" and found[second].answer == other
    assert found[third].info == {**found[third].info, "decision": "reject", "invalid": True}
    assert found[fourth].info["comment"] == "sarcasm?" and found[fourth].info["invalid"]
    # human answers beat the LLM's downstream; a reject or flag is no label at all
    assert choose([accepted, Annotation(first, LLM, "neutral")], "best").annotator == ALICE
    assert choose([found[third]], "best") is None


def test_answered_items_never_come_back_and_skips_come_last(review):
    order = review.queue.order
    skipped = review.next_id(ALICE)
    review.decide(ALICE, "s", Decision(skipped, "skip"))
    seen = [skipped]
    while (example_id := review.next_id(ALICE)) != skipped:
        assert example_id not in seen
        seen.append(example_id)
        review.decide(ALICE, "s", Decision(example_id, "answer", "neutral"))
    assert seen == order  # the queue's order, the skipped one after all the others
    review.decide(ALICE, "s", Decision(skipped, "answer", "positive"))
    assert review.next_id(ALICE) is None
    progress = review.progress(ALICE, "s")
    assert (progress.done, progress.remaining, progress.skipped) == (len(order), 0, 0)


def test_undo_replaces_the_decision_and_shows_the_item_again(review):
    ids = []
    for _ in range(3):
        example_id = review.next_id(ALICE)
        review.decide(ALICE, "s", Decision(example_id, "answer", "negative"))
        ids.append(example_id)
    assert review.undo(ALICE, "s") == ids[-1]
    assert review.next_id(ALICE) == ids[-1]
    found = stored(review)
    assert found[ids[-1]].info["decision"] == "undone" and found[ids[-1]].info["invalid"]
    assert (
        found[ids[-1]].info["undone"]["decision"] == "correct"
        or found[ids[-1]].info["undone"]["decision"] == "accept"
    )
    assert [found[i].answer for i in ids[:2]] == ["negative", "negative"]
    # a new decision on it replaces the undone one
    review.decide(ALICE, "s", Decision(ids[-1], "answer", "positive"))
    assert stored(review)[ids[-1]].answer == "positive"
    assert review.next_id(ALICE) not in ids


def test_undo_goes_back_ten_decisions_and_no_further(review):
    for _ in range(HISTORY + 2):
        example_id = review.next_id(ALICE)
        review.decide(ALICE, "s", Decision(example_id, "reject"))
    taken = [review.undo(ALICE, "s") for _ in range(HISTORY)]
    assert len(set(taken)) == HISTORY
    with pytest.raises(StillhouseError) as raised:
        review.undo(ALICE, "s")
    assert raised.value.code == "E887"
    assert len(review.history(ALICE)) == 2  # the two oldest decisions stay


def test_overlap_items_go_to_two_reviewers_blind_the_rest_to_one(tmp_path: Path):
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(12))
    everything = open_review(task, overlap=1.0)
    nothing = open_review(task, overlap=0.0)
    try:
        for review in (everything, nothing):
            while (example_id := review.next_id(ALICE)) is not None:
                review.decide(ALICE, "a", Decision(example_id, "answer", "positive"))
        first = everything.next_id(BOB)
        assert first is not None and everything.item(BOB, first)["overlap"] is True
        assert everything.item(BOB, first)["previous"] is None  # nothing of alice's answer
        assert "positive" not in str(everything.item(BOB, first)["reasons"])
        assert nothing.next_id(BOB) is None  # alice did them all; one reviewer is enough
    finally:
        everything.store.close()
        nothing.store.close()


def test_an_item_shown_to_one_reviewer_is_held_from_the_other(review):
    shown = review.next_id(ALICE)
    assert review.next_id(BOB) != shown
    expired = Review(review.task, review.store, review.queue, hold_s=0.0)
    assert expired.next_id(ALICE) == expired.next_id(BOB)


def test_a_decision_applies_to_the_near_duplicates_shown_with_it(tmp_path: Path):
    task = write_task(tmp_path / "task")
    texts = [
        *distinct_texts(4),
        "Great coffee and friendly staff, we will be back next week.",
        "great coffee and friendly staff, we will be back next week!",
    ]
    fill_classify(task, texts)
    review = open_review(task)
    try:
        [(first, (member,))] = review.queue.members_of.items()
        assert {first, member} == {"ex004", "ex005"}
        assert review.item(ALICE, first)["similar"]["count"] == 1
        review.decide(ALICE, "s", Decision(first, "answer", "positive"))
        found = stored(review)
        assert found[member].answer == "positive" and found[member].info["applied_from"] == first
        assert found[first].info["decision_id"] == found[member].info["decision_id"]
        assert len(review.history(ALICE)) == 1 and review.history(ALICE)[0]["count"] == 2
        review.undo(ALICE, "s")
        assert {a.info["decision"] for a in stored(review).values()} == {"undone"}
    finally:
        review.store.close()


def test_conflicts_resolve_into_gold(tmp_path: Path):
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(3))
    review = open_review(task, overlap=1.0)
    try:
        for who, answer in ((ALICE, "positive"), (BOB, "negative")):
            example_id = "ex000"
            review.decide(who, "s", Decision(example_id, "answer", answer))
        review.decide(ALICE, "s", Decision("ex001", "answer", "neutral"))
        review.decide(BOB, "s", Decision("ex001", "answer", "neutral"))
        review.decide(ALICE, "s", Decision("ex002", "flag", comment="unclear"))
        conflicts = {row["id"]: row for row in review.conflicts()}
        assert set(conflicts) == {"ex000", "ex002"}
        assert [a["answer"] for a in conflicts["ex000"]["answers"]] == ["positive", "negative"]
        review.resolve(ALICE, "s", "ex000", "negative")
        assert {row["id"] for row in review.conflicts()} == {"ex002"}
        gold = review.store.annotations(task.kind, "gold")
        assert [(a.example_id, a.answer) for a in gold] == [("ex000", "negative")]
        assert gold[0].info["answers"]["bob"]["answer"] == "negative"
        assert review.next_id(BOB) in (None, "ex002")  # ex000 is settled for everyone
        with pytest.raises(StillhouseError):
            review.resolve(ALICE, "s", "ex001", "neutral")  # no conflict there
    finally:
        review.store.close()


def test_bad_decisions_are_refused(review):
    example_id = review.next_id(ALICE)
    for decision, code in (
        (Decision(example_id, "maybe"), "E886"),
        (Decision(example_id, "answer"), "E886"),
        (Decision("nope", "skip"), "E884"),
    ):
        with pytest.raises(StillhouseError) as raised:
            review.decide(ALICE, "s", decision)
        assert raised.value.code == code
    assert stored(review) == {}


def test_two_servers_on_one_store_see_each_others_decisions(tmp_path: Path):
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(3))
    first, second = open_review(task, hold_s=0.0), open_review(task, hold_s=0.0)
    try:
        assert second.next_id(BOB) == first.next_id(ALICE)  # nothing decided yet
        example_id = first.next_id(ALICE)
        first.decide(ALICE, "a", Decision(example_id, "answer", "neutral"))
        # the other server's memory is stale: the store's data version tells it to read again
        assert second.next_id(BOB) != example_id
        assert second.people().by_example[example_id][ALICE].answer == "neutral"
        second.decide(BOB, "b", Decision(second.next_id(BOB), "reject"))
        assert first.progress(ALICE, "a").done == 1 and first.progress(ALICE, "a").remaining == 1
    finally:
        first.store.close()
        second.store.close()
