"""The review_queue table of the workspace store: replaced whole, read in rank order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stillhouse.data.records import Example
from stillhouse.data.store import ReviewItem, Store


def test_a_queue_is_replaced_in_one_piece_and_read_in_rank_order(tmp_path: Path) -> None:
    path = tmp_path / "stillhouse.db"
    with Store(path) as store:
        store.add_examples([Example(f"e{i}", f"text {i}") for i in range(4)], "classify")
        store.replace_review_queue(
            "audit",
            [
                ReviewItem("e2", 2, 0.5, ["low LLM confidence 0.50"], "neutral"),
                ReviewItem("e1", 1, 1.7, ["likely label error", "LLM says x"], "positive"),
            ],
        )
        store.replace_review_queue("other", [ReviewItem("e3", 1, 0.1, ["x"])])
        assert [item.example_id for item in store.review_queue("audit")] == ["e1", "e2"]
        assert store.review_queue("audit")[0].reasons == ["likely label error", "LLM says x"]
        store.replace_review_queue("audit", [ReviewItem("e0", 1, 0.9, ["y"], None)])
    with Store(path) as reopened:
        assert reopened.review_queue("audit") == [ReviewItem("e0", 1, 0.9, ["y"], None)]
        assert [item.example_id for item in reopened.review_queue("other")] == ["e3"]


def test_items_must_name_stored_examples_and_a_failure_keeps_the_old_queue(tmp_path: Path) -> None:
    with Store(tmp_path / "stillhouse.db") as store:
        store.add_examples([Example("e1", "text")], "classify")
        store.replace_review_queue("audit", [ReviewItem("e1", 1, 1.0, ["x"])])
        with pytest.raises(sqlite3.IntegrityError):
            store.replace_review_queue("audit", [ReviewItem("missing", 1, 1.0, ["x"])])
        assert [item.example_id for item in store.review_queue("audit")] == ["e1"]


def test_a_store_from_before_the_queue_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "stillhouse.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE review_queue")
    with Store(path) as store:
        assert store.review_queue("audit") == []


def test_queue_priority_adds_up_the_reasons_of_an_example() -> None:
    import numpy as np

    from stillhouse.audit.disagreement import Disagreement
    from stillhouse.audit.inputs import AuditData, LLMAnswers
    from stillhouse.audit.label_issues import LabelIssue
    from stillhouse.audit.review_queue import build_review_queue

    examples = [Example(f"e{i}", f"text {i}") for i in range(4)]
    probs = np.array([[0.9, 0.1], [0.45, 0.55], [0.7, 0.3], [np.nan, np.nan]])
    data = AuditData(
        path=Path("train.jsonl"),
        examples=examples,
        labels=["a", "a", "b", "b"],
        label_source="gold",
        label_names=["a", "b"],
        llm=LLMAnswers("llm:m@1", ["a", "b", "a", None], probs),
    )
    issue = LabelIssue("e2", "text 2", "b", "a", 0.2, 0.7)
    disagreements = [
        Disagreement("e2", "text 2", "b", "a", 0.7),
        Disagreement("e1", "text 1", "a", "b", 0.55),
    ]

    queue = build_review_queue(data, [issue], disagreements, low_confidence=0.6)

    assert [item.example_id for item in queue] == ["e2", "e1"]
    assert queue[0].priority == round(0.8 + 0.7, 4) and queue[0].suggested == "a"
    assert queue[1].priority == round(0.55 + 0.45, 4)  # disagreement + low confidence 0.55
    assert len(queue[1].reasons) == 2
