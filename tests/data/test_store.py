"""The workspace store: a real SQLite file that keeps exactly what was committed, even after kill -9."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stillhouse.data.records import Annotation, Example, Span
from stillhouse.data.store import SCHEMA_VERSION, Store
from stillhouse.errors import StillhouseError

TEXTS = ["Great phone.", "Awful battery.", "It is a phone."]


def classify_examples() -> list[Example]:
    return [
        Example(id="a", text=TEXTS[0], meta={"lang": "en", "split": "test"}, gold="positive"),
        Example(id="b", text=TEXTS[1], meta={}, gold="negative"),
        Example(id="c", text=TEXTS[2], meta={"lang": "en"}, gold=None),
    ]


def open_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "stillhouse.db")


def llm(
    example_id: str, answer: str, annotator: str = "llm:qwen@1", **fields: object
) -> Annotation:
    return Annotation(example_id=example_id, annotator=annotator, answer=answer, **fields)  # type: ignore[arg-type]


# examples -------------------------------------------------------------------------------------


def test_add_examples_counts_new_rows_and_keeps_known_ones(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.add_examples(classify_examples(), "classify") == 3
        again = [Example(id="a", text=TEXTS[0], meta={"other": 1}), Example(id="d", text="New.")]
        assert store.add_examples(again, "classify") == 1

        assert store.count_examples() == 4
        assert store.examples("classify", ids=["a"]) == classify_examples()[:1]  # meta kept


def test_classify_examples_round_trip_with_meta_and_gold(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")

        assert store.examples("classify") == classify_examples()


def test_multilabel_gold_comes_back_as_a_tuple(tmp_path: Path) -> None:
    examples = [
        Example(id="m1", text="Cheap and fast.", gold=("price", "speed")),
        Example(id="m2", text="Nothing to say.", gold=()),
    ]
    with open_store(tmp_path) as store:
        store.add_examples(examples, "multilabel")

        assert store.examples("multilabel") == examples


def test_span_gold_comes_back_as_span_tuples(tmp_path: Path) -> None:
    text = "Ada Lovelace lived in London."
    gold = (Span(0, 12, "PERSON", "Ada Lovelace"), Span(22, 28, "PLACE", "London"))
    with open_store(tmp_path) as store:
        store.add_examples(
            [Example(id="s1", text=text, meta={"source": "wiki"}, gold=gold)], "spans"
        )

        [example] = store.examples("spans")

    assert example.gold == gold
    assert all(isinstance(span, Span) for span in example.gold)  # type: ignore[union-attr]
    assert example.meta == {"source": "wiki"}


def test_examples_by_id_keep_the_requested_order_and_skip_unknown_ids(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")

        found = store.examples("classify", ids=["c", "nope", "a", "b"])

    assert [e.id for e in found] == ["c", "a", "b"]


# annotations ----------------------------------------------------------------------------------


def test_a_new_answer_replaces_the_same_annotators_earlier_one_only(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations(
            [llm("a", "negative"), llm("a", "positive", annotator="human:ann")], "classify"
        )
        store.add_annotations(
            [llm("a", "positive", probs={"positive": 0.9, "negative": 0.1})], "classify"
        )

        by_annotator = {a.annotator: a for a in store.annotations("classify")}

    assert by_annotator["llm:qwen@1"].answer == "positive"
    assert by_annotator["llm:qwen@1"].probs == {"positive": 0.9, "negative": 0.1}
    assert by_annotator["human:ann"].answer == "positive"
    assert len(by_annotator) == 2


def test_annotations_filter_by_annotator_and_come_in_example_order(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations(
            [
                llm("c", "neutral", info={"truncated": True}, created_at=3.0),
                llm("b", "negative", annotator="human:ann"),
                llm("b", "negative"),
                llm("a", "positive"),
            ],
            "classify",
        )

        everything = store.annotations("classify")
        only_llm = store.annotations("classify", annotator="llm:qwen@1")

    assert [(a.example_id, a.annotator) for a in everything] == [
        ("a", "llm:qwen@1"),
        ("b", "human:ann"),
        ("b", "llm:qwen@1"),
        ("c", "llm:qwen@1"),
    ]
    assert [a.example_id for a in only_llm] == ["a", "b", "c"]
    assert only_llm[2].info == {"truncated": True}
    assert only_llm[2].created_at == 3.0
    assert only_llm[0].created_at > 0  # an unset time is stamped on write


def test_annotated_ids_and_annotator_counts(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations(
            [llm("a", "positive"), llm("c", "neutral"), llm("b", "negative", annotator="gold")],
            "classify",
        )

        assert store.annotated_ids("llm:qwen@1") == {"a", "c"}
        assert store.annotated_ids("human:nobody") == set()
        assert store.annotators() == [("gold", 1), ("llm:qwen@1", 2)]


def test_multilabel_and_span_answers_round_trip(tmp_path: Path) -> None:
    spans = (Span(0, 5, "THING", "Great"),)
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations([llm("a", ("price", "speed"))], "multilabel")  # type: ignore[arg-type]
        store.add_annotations([llm("b", spans, annotator="llm:spans")], "spans")  # type: ignore[arg-type]

        assert store.annotations("multilabel", annotator="llm:qwen@1")[0].answer == (
            "price",
            "speed",
        )
        assert store.annotations("spans", annotator="llm:spans")[0].answer == spans


# LLM cache and transactions -------------------------------------------------------------------


def test_cache_entries_written_with_annotations_come_back(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations(
            [llm("a", "positive")],
            "classify",
            cache=[("k1", {"positive": 0.75}), ("k2", ["x", 1])],
        )

        assert store.cache_get_many(["k1", "missing", "k2"]) == {
            "k1": {"positive": 0.75},
            "k2": ["x", 1],
        }
        assert store.cache_get_many([]) == {}
        assert store.cache_size() == 2


def test_a_failed_write_stores_nothing_of_that_call(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations([llm("a", "positive")], "classify", cache=[("kept", 1)])

        with pytest.raises(sqlite3.IntegrityError):
            store.add_annotations(
                [llm("b", "negative"), llm("no-such-example", "neutral"), llm("c", "neutral")],
                "classify",
                cache=[("lost", 2)],
            )

        assert [a.example_id for a in store.annotations("classify")] == ["a"]
        assert store.annotated_ids("llm:qwen@1") == {"a"}
        assert store.cache_get_many(["kept", "lost"]) == {"kept": 1}
        # The connection is usable again: the failed transaction was rolled back.
        store.add_annotations([llm("b", "negative")], "classify")
        assert store.annotated_ids("llm:qwen@1") == {"a", "b"}


# runs -----------------------------------------------------------------------------------------


def test_runs_record_versions_fields_and_stats(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        run_id = store.start_run("annotate", task_hash="t" * 64, model="qwen2.5-0.5b", seed=7)
        [running] = store.runs()
        store.finish_run(run_id, "done", {"annotated": 3, "accuracy": 0.5})
        [finished] = store.runs()

    assert running.id == run_id and running.status == "running" and running.finished_at is None
    assert running.stats is not None  # the process that runs it, for spotting a killed run
    assert (running.stats["pid"], running.stats["host"]) == (os.getpid(), socket.gethostname())
    assert "python" in finished.versions and "stillhouse" in finished.versions
    assert finished.command == "annotate"
    assert (finished.task_hash, finished.model, finished.seed) == ("t" * 64, "qwen2.5-0.5b", 7)
    assert finished.status == "done"
    assert finished.finished_at is not None and finished.finished_at >= finished.started_at
    assert finished.stats == {"annotated": 3, "accuracy": 0.5}


# the file -------------------------------------------------------------------------------------


def test_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    open_store(tmp_path).close()

    with sqlite3.connect(tmp_path / "stillhouse.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )


def test_reopening_sees_committed_data(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.add_examples(classify_examples(), "classify")
        store.add_annotations([llm("a", "positive")], "classify", cache=[("k", 1)])

    with open_store(tmp_path) as store:
        assert store.examples("classify") == classify_examples()
        assert store.annotators() == [("llm:qwen@1", 1)]
        assert store.cache_get_many(["k"]) == {"k": 1}


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stillhouse.db"
    path.write_bytes(b"hello, not a database" * 100)

    with pytest.raises(StillhouseError) as caught:
        Store(path)

    assert caught.value.code == "E201"
    assert str(path) in caught.value.message
    assert "not a stillhouse store" in caught.value.message
    assert path.read_bytes() == b"hello, not a database" * 100


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stillhouse.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")

    with pytest.raises(StillhouseError) as caught:
        Store(path)

    assert caught.value.code == "E203"
    assert "99" in caught.value.message
    assert f"version {SCHEMA_VERSION}" in caught.value.message


# kill -9 --------------------------------------------------------------------------------------

BATCH = 50

WRITER = textwrap.dedent(
    """
    import sys
    from stillhouse.data.records import Annotation, Example
    from stillhouse.data.store import Store

    store = Store(sys.argv[1])
    batch = int(sys.argv[2])
    store.add_examples([Example(id=f"e{i}", text=f"text {i}") for i in range(batch)], "classify")
    for n in range(1000):
        store.add_annotations(
            [Annotation(f"e{i}", f"llm:run{n}", "positive", info={"pad": "x" * 2000})
             for i in range(batch)],
            "classify",
            cache=[(f"run{n}-{i}", i) for i in range(batch)],
        )
    """
)


def test_kill_9_mid_write_leaves_only_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "stillhouse.db"
    Store(path).close()
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(BATCH)])
    try:
        with Store(path) as watcher:
            deadline = time.monotonic() + 20
            while len(watcher.annotators()) < 3:
                assert child.poll() is None, "the writer exited before it was killed"
                assert time.monotonic() < deadline, "the writer committed nothing in 20 s"
                time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    with Store(path) as store:
        counts = dict(store.annotators())
        cached = store.cache_size()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        total = db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]

    assert len(counts) >= 3
    assert set(counts.values()) == {BATCH}
    assert total % BATCH == 0
    assert cached == total  # each batch's cache entries were committed with it, or not at all
