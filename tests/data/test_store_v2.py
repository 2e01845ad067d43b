"""Schema version 2 of the store (the prediction log): a real version-1 store, as the code before
it wrote one (tests/data/store_v1.sql, dumped from a store that code made), is read as it is by
readers and migrated in place, nothing lost, by the first writer."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import ABSTAINED_QUEUE, SCHEMA_VERSION, Store
from stillhouse.errors import StillhouseError
from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog
from stillhouse.task import Task, load_task

DUMP = Path(__file__).with_name("store_v1.sql")
V1_TABLES = {"meta", "examples", "annotations", "llm_cache", "runs", "review_queue"}
LLM = "llm:smollm2-135m@00000000"


@pytest.fixture
def task(tmp_path: Path, write_task) -> Task:
    """The NusaX task with, at its store's place, the version-1 store of store_v1.sql."""
    task = load_task(write_task(tmp_path / "task"))
    db = sqlite3.connect(task.store_path)
    db.executescript(DUMP.read_text(encoding="utf-8"))
    db.execute("PRAGMA journal_mode=WAL")  # as stillhouse opens every store
    db.close()
    return task


def schema(path: Path) -> tuple[str, dict[str, list[str]]]:
    """The store's schema version and each table's columns."""
    db = sqlite3.connect(path)
    try:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return version, columns
    finally:
        db.close()


def contents(store: Store, task: Task) -> tuple:
    """Everything a version-1 reader reads, for before/after comparisons."""
    runs = [(r.id, r.command, r.status) for r in store.runs()]
    annotations = sorted(
        (a.example_id, a.annotator, a.answer, a.probs) for a in store.annotations(task.kind)
    )
    return (
        store.examples(task.kind),
        annotations,
        store.review_queue("audit"),
        runs,
        store.cache_size(),
        store.identity(),
    )


def abstention(number: int) -> LoggedPrediction:
    return LoggedPrediction(
        time=1_800_000_000.0 + number,
        system="linear",
        version="abc",
        text=f"Not sure about text {number}.",
        answer="",
        probs={"positive": 0.4, "neutral": 0.35, "negative": 0.25},
        confidence=0.4,
        stage=None,
        abstained=True,
        latency_ms=2.0,
    )


def test_the_fixture_is_a_version_1_store(task: Task) -> None:
    version, columns = schema(task.store_path)
    assert version == "1" and set(columns) == V1_TABLES
    assert "probs" not in columns["review_queue"]


def test_a_reader_reads_version_1_as_it_is_and_changes_nothing(task: Task) -> None:
    before = schema(task.store_path)
    with Store.for_task(task, create=False) as store:
        assert store.schema_version == 1
        assert store.logged_predictions(task.kind) == [] and store.logged_systems() == []
        assert store.count_logged_predictions() == 0 and store.queued_predictions() == []
        examples, annotations, audit, runs, cached, identity = contents(store, task)
    assert schema(task.store_path) == before
    assert [e.id for e in examples] == ["e1", "e2", "e3"]
    assert examples[0] == Example(
        "e1", "The food was wonderful and the staff were kind.", {"source": "survey"}, "positive"
    )
    assert (
        "e3",
        LLM,
        "positive",
        {"positive": 0.7, "neutral": 0.2, "negative": 0.1},
    ) in annotations
    assert [(i.example_id, i.reasons, i.suggested) for i in audit] == [
        ("e2", ["likely label error"], "neutral")
    ]
    assert [(command, status) for _, command, status in runs] == [("annotate", "finished")]
    assert cached == 1 and identity is not None and identity.name == task.name


def test_the_prediction_log_migrates_it_and_keeps_everything(task: Task) -> None:
    with Store.for_task(task, create=False) as store:
        before = contents(store, task)
    with PredictionLog(task) as log:
        log.record([abstention(1), abstention(2)])
    assert log.stats()["written"] == 2 and log.stats()["review_written"] == 2

    version, columns = schema(task.store_path)
    assert version == str(SCHEMA_VERSION) == "2"
    assert set(columns) == V1_TABLES | {"predictions"}
    assert columns["review_queue"][-2:] == ["probs", "info"]
    with Store.for_task(task, create=False) as store:
        assert store.schema_version == 2
        examples, *rest = contents(store, task)
        # nothing old changed; the abstained texts joined the examples (for the review queue)
        assert examples[:3] == before[0] and tuple(rest) == before[1:]
        assert [e.meta for e in examples[3:]] == [{"source": "serve"}] * 2
        assert len(store.logged_predictions(task.kind)) == 2
        queued = store.queued_predictions(ABSTAINED_QUEUE)
        assert [q.rank for q in queued] == [1, 2]
        assert queued[0].probs == {"positive": 0.4, "neutral": 0.35, "negative": 0.25}
        assert queued[0].reasons == ["abstained"] and queued[0].suggested == "positive"


def test_any_writer_migrates_it_and_old_writes_still_work(task: Task) -> None:
    with Store.for_task(task, create=True) as store:
        assert store.schema_version == 2
        store.add_examples([Example("e4", "A new one.", {}, "neutral")], task.kind)
        store.add_annotations([Annotation("e4", "gold", "neutral")], task.kind)
    assert schema(task.store_path)[0] == "2"
    with Store.for_task(task, create=False) as store:
        assert [e.id for e in store.examples(task.kind)] == ["e1", "e2", "e3", "e4"]


def test_a_migration_that_cannot_get_the_write_lock_leaves_version_1_whole(task: Task) -> None:
    holder = sqlite3.connect(task.store_path, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StillhouseError) as caught:
            Store.for_task(task, create=True, timeout=0.2)
        assert caught.value.code == "E208"
    finally:
        holder.rollback()
        holder.close()
    version, columns = schema(task.store_path)
    assert version == "1" and set(columns) == V1_TABLES
    # and the next writer migrates it
    Store.for_task(task, create=True).close()
    assert schema(task.store_path)[0] == "2"


def test_readers_and_the_log_work_side_by_side_during_the_migration(task: Task) -> None:
    """A reader open on the version-1 store while the log migrates it keeps reading."""
    reader = Store.for_task(task, create=False)
    try:
        done = threading.Event()

        def log() -> None:
            with PredictionLog(task) as prediction_log:
                prediction_log.record([abstention(3)])
            done.set()

        thread = threading.Thread(target=log)
        thread.start()
        thread.join(30)
        assert done.is_set()
        assert [e.id for e in reader.examples(task.kind)][:3] == ["e1", "e2", "e3"]
    finally:
        reader.close()
    assert schema(task.store_path)[0] == "2"


def test_a_store_of_a_newer_version_is_refused(task: Task) -> None:
    with sqlite3.connect(task.store_path) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    for create in (False, True):
        with pytest.raises(StillhouseError) as caught:
            Store.for_task(task, create=create)
        assert caught.value.code == "E203" and "3" in caught.value.message
    with pytest.raises(StillhouseError) as caught:
        PredictionLog(task)
    assert caught.value.code == "E203"


def test_what_a_version_1_reader_checks_refuses_a_version_2_store(task: Task) -> None:
    """The code before the log opened a store only when ``int(schema_version) == 1`` (E203
    otherwise): after the migration that check fails, so an old stillhouse refuses the store
    instead of misreading it."""
    Store.for_task(task, create=True).close()
    version, _ = schema(task.store_path)
    assert int(version) != 1
