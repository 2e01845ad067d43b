"""The review queue's order (`auto` and the single-source queues), near duplicates folded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from review_helpers import LLM, write_task

from stillhouse.data.records import Annotation, Example, text_id
from stillhouse.data.store import AbstainedText, ReviewItem, Store
from stillhouse.review.decisions import Suggestion
from stillhouse.review.queue import build_queue, is_overlap, margin_of


def probs(positive: float, neutral: float) -> dict[str, float]:
    return {"positive": positive, "neutral": neutral, "negative": 1.0 - positive - neutral}


@pytest.fixture
def filled(tmp_path: Path):
    """A store with one example of each kind the auto order knows."""
    task = write_task(tmp_path / "task")
    texts = {
        "label_error": "The waiter forgot our order twice and the soup was cold.",
        "disagree_gold": "Best pizza in town, we go every Friday.",
        "disagree_human": "The museum opens at nine on weekdays.",
        "settled": "Terrible parking, we drove around for an hour.",
        "margin_10": "The hotel has forty rooms and a small pool.",
        "margin_30": "Staff were friendly though the lobby smelled of paint.",
        "margin_50": "Breakfast is served until ten in the garden room.",
        "no_probs": "We paid by card at the desk on the second floor.",
        "copy": "The hotel has FORTY rooms and a small pool!",
    }
    gold = {"disagree_gold": "positive", "settled": "negative"}
    examples = [Example(id=key, text=text, gold=gold.get(key)) for key, text in texts.items()]
    llm = {
        "label_error": ("negative", probs(0.1, 0.1)),
        "disagree_gold": ("negative", probs(0.2, 0.1)),  # LLM confidence 0.7
        "disagree_human": ("positive", probs(0.9, 0.05)),  # LLM confidence 0.9
        "settled": ("negative", probs(0.1, 0.1)),
        "margin_10": ("positive", probs(0.45, 0.35)),
        "margin_30": ("positive", probs(0.6, 0.3)),
        "margin_50": ("positive", probs(0.7, 0.2)),
        "no_probs": ("neutral", None),
        "copy": ("positive", probs(0.46, 0.35)),
    }
    now = time.time()
    annotations = [Annotation(key, LLM, answer, p, {}, now) for key, (answer, p) in llm.items()] + [
        Annotation("disagree_human", "human:carol", "neutral", None, {"decision": "correct"}, now)
    ]
    abstained_text = "Is the spa open on Sundays or only on weekdays?"
    with Store.for_task(task, create=True) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
        store.replace_review_queue(
            "audit",
            [ReviewItem("label_error", 1, 0.9, ["likely label error: given negative"], "positive")],
        )
        store.log_predictions(
            [],
            task.kind,
            [
                AbstainedText(
                    abstained_text, probs(0.4, 0.35), {"system": "cascade", "confidence": 0.4}, 0.6
                )
            ],
        )
    return task, text_id(abstained_text)


def test_auto_order_puts_abstentions_and_label_errors_first_then_disagreements_then_margin(filled):
    task, abstained = filled
    with Store.for_task(task, create=False) as store:
        queue = build_queue(task, store, "auto")
    assert queue.order == [
        "label_error",  # audit worth 0.9
        abstained,  # the server's worth 0.6
        "disagree_human",  # the LLM says positive at 0.9, a person said neutral
        "disagree_gold",  # the LLM says negative at 0.7, gold is positive
        "margin_10",
        "margin_30",
        "margin_50",
        "no_probs",
    ]
    # the settled example (gold agrees with the LLM) is left out; the near copy rides along
    assert "settled" not in queue.entries
    assert queue.entries["margin_10"].similar == ("copy",)
    assert queue.ids().index("copy") == queue.ids().index("margin_10") + 1
    reasons = {key: [r.kind for r in entry.reasons] for key, entry in queue.entries.items()}
    assert reasons["label_error"] == ["label_error"]
    assert reasons[abstained] == ["abstained"]
    assert reasons["disagree_gold"] == ["disagreement"]
    assert "uncertain" in reasons["margin_10"]
    # the server's suggestion (its probabilities) is what an abstained text shows
    suggestion = queue.entries[abstained].suggestion
    assert suggestion is not None and suggestion.source == "serve:cascade"
    assert suggestion.answer == "positive" and suggestion.score == pytest.approx(0.4)


def test_single_source_queues(filled):
    task, abstained = filled
    with Store.for_task(task, create=False) as store:
        audit = build_queue(task, store, "audit")
        served = build_queue(task, store, "abstained")
        disagreement = build_queue(task, store, "disagreement")
        uncertain = build_queue(task, store, "uncertain", similar_threshold=None)
        random_a = build_queue(task, store, "random", seed=1, similar_threshold=None)
        random_b = build_queue(task, store, "random", seed=1, similar_threshold=None)
        random_c = build_queue(task, store, "random", seed=2, similar_threshold=None)
    assert audit.order == ["label_error"]
    assert served.order == [abstained]
    assert disagreement.order == ["disagree_human", "disagree_gold"]
    # by margin, smallest first; examples without probabilities have no margin, so are left out
    margins = [uncertain.entries[i].margin for i in uncertain.order]
    assert margins == sorted(margins) and "no_probs" not in uncertain.order
    assert uncertain.order[:3] == [abstained, "margin_10", "copy"]  # margins 0.05, 0.10, 0.11
    assert random_a.order == random_b.order
    assert sorted(random_a.order) == sorted(random_c.order) and random_a.order != random_c.order
    assert "settled" not in random_a.order


def test_input_rows_are_reviewed_even_with_gold_and_keep_their_suggestion(filled):
    task, _ = filled
    rows = [Example(id="settled", text="Terrible parking, we drove around for an hour.")]
    given = {"settled": Suggestion("input:x.jsonl", "neutral", probs(0.1, 0.8), 0.8)}
    with Store.for_task(task, create=False) as store:
        queue = build_queue(task, store, "auto", rows=rows, suggestions=given)
    assert queue.order == ["settled"]
    assert queue.entries["settled"].suggestion.source == "input:x.jsonl"


def test_margin_by_kind():
    assert margin_of(
        Suggestion("s", "a", {"a": 0.6, "b": 0.3, "c": 0.1}), "classify"
    ) == pytest.approx(0.3)
    assert margin_of(Suggestion("s", ("a",), {"a": 0.6, "b": 0.1}), "multilabel") == pytest.approx(
        0.2
    )
    assert margin_of(Suggestion("s", "a"), "classify") is None


def test_overlap_share_is_stable_and_close_to_the_share():
    ids = [f"id{n}" for n in range(4000)]
    chosen = [i for i in ids if is_overlap(i, 0.1)]
    assert 0.08 < len(chosen) / len(ids) < 0.12
    assert chosen == [i for i in ids if is_overlap(i, 0.1)]
    assert not any(is_overlap(i, 0.0) for i in ids[:50]) and all(
        is_overlap(i, 1.0) for i in ids[:50]
    )


def test_input_rows_bring_their_own_suggestion(tmp_path: Path):
    from stillhouse.review.inputs import read_review_input

    task = write_task(tmp_path / "task")
    path = tmp_path / "texts.jsonl"
    path.write_text(
        '{"id": "a", "text": "Lovely staff and a great view.", "probs": '
        '{"positive": 0.7, "neutral": 0.2, "negative": 0.1}}\n'
        '{"id": "b", "text": "Opens at nine.", "label": "neutral"}\n'
        '{"id": "c", "text": "No suggestion for this one."}\n',
        encoding="utf-8",
    )
    given = read_review_input(task, path)
    assert [e.id for e in given.examples] == ["a", "b", "c"]
    assert all(e.gold is None for e in given.examples)  # a label here is a suggestion, not gold
    first, second = given.suggestions["a"], given.suggestions["b"]
    assert (first.source, first.answer, first.score) == ("input:texts.jsonl", "positive", 0.7)
    assert (second.answer, second.probs) == ("neutral", None) and "c" not in given.suggestions
    queue = build_queue(task, None, "auto", rows=given.examples, suggestions=given.suggestions)
    assert queue.order == ["a", "b", "c"]  # by margin; no probabilities last


def test_texts_kept_from_a_remote_llm_come_first_with_their_reason_and_no_suggestion(filled):
    task, _ = filled
    kept = Example(id="kept", text="Please call Maria Lopez on 0612345678 about the booking.")
    with Store.for_task(task, create=False) as store:
        store.add_examples([kept], task.kind)
        # as annotate queues a text that [privacy] remote = "block" did not send
        store.add_to_review_queue(
            "privacy", [ReviewItem("kept", 0, 1.0, ["privacy_blocked: PERSON 1, PHONE_NUMBER 1"])]
        )
        auto = build_queue(task, store, "auto")
        privacy = build_queue(task, store, "privacy")
    assert privacy.order == ["kept"]
    assert auto.order.index("kept") < auto.order.index("disagree_human")  # the first tier
    (reason,) = auto.entries["kept"].reasons
    assert (reason.kind, reason.detail) == ("privacy_blocked", "PERSON 1, PHONE_NUMBER 1")
    assert auto.entries["kept"].suggestion is None  # no LLM saw it
