"""The prediction log: real SQLite files, a real background writer, real processes killed with
SIGKILL and logging side by side; abstentions reach the review queue (version-1 stores and
their migration: tests/data/test_store_v2.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from stillhouse.data.records import Span, text_id
from stillhouse.data.store import ABSTAINED_QUEUE, Store
from stillhouse.errors import StillhouseError
from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog, parse_policy
from stillhouse.task import Task, load_task

LABELS = ("positive", "negative", "neutral")
PROBS = {"positive": 0.4, "negative": 0.35, "neutral": 0.25}


@pytest.fixture
def task(tmp_path: Path, write_task) -> Task:
    return load_task(write_task(tmp_path / "task"))


def prediction(
    number: int,
    *,
    abstained: bool = False,
    system: str = "linear",
    text: str | None = None,
    stage: str | None = None,
) -> LoggedPrediction:
    label = LABELS[number % 3]
    return LoggedPrediction(
        time=1_700_000_000.0 + number,
        system=system,
        version="v1",
        text=text if text is not None else f"Text number {number} for the log.",
        answer="" if abstained else label,
        probs=PROBS if abstained else None,
        confidence=0.4 if abstained else 0.9,
        stage=stage,
        abstained=abstained,
        latency_ms=1.5 + number % 7,
    )


def rows(task: Task, system: str | None = None) -> list:
    with Store.for_task(task, create=False) as store:
        return store.logged_predictions(task.kind, system)


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def locked(task: Task):
    """``hold(seconds, release=None)``: another connection holds the store's write lock for that
    long, or until ``release`` is set (in a thread); returns the thread."""
    PredictionLog(task).close()  # the store exists, in WAL mode

    def hold(seconds: float, release: threading.Event | None = None) -> threading.Thread:
        started = threading.Event()

        def run() -> None:
            db = sqlite3.connect(task.store_path, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            started.set()
            if release is not None:
                release.wait(seconds)
            else:
                time.sleep(seconds)
            db.execute("ROLLBACK")
            db.close()

        thread = threading.Thread(target=run)
        thread.start()
        started.wait()
        return thread

    return hold


# what lands --------------------------------------------------------------------------------------


def test_every_prediction_lands_with_its_fields(task: Task) -> None:
    given = [prediction(i, stage="model:m" if i % 2 else None) for i in range(1200)]
    with PredictionLog(task) as log:
        for start in range(0, len(given), 40):
            log.record(given[start : start + 40])
    assert log.stats() == {
        "queued": 0,
        "written": 1200,
        "sampled_out": 0,
        "failed": 0,
        "dropped": 0,
        "review_written": 0,
        "review_failed": 0,
    }
    stored = rows(task)
    assert len(stored) == 1200
    first, second = stored[0], stored[1]
    assert (first.time, first.system, first.version) == (1_700_000_000.0, "linear", "v1")
    assert first.text_hash == text_id(given[0].text) and first.text is None
    assert (first.answer, first.confidence, first.stage, first.abstained) == (
        "positive",
        0.9,
        None,
        False,
    )
    assert first.latency_ms == 1.5 and second.stage == "model:m"
    assert integrity(task.store_path) == "ok"


def test_record_queues_and_a_flush_follows_by_time_below_the_batch_size(task: Task) -> None:
    with PredictionLog(task) as log:
        log.record([prediction(i) for i in range(10)])
        assert log.stats()["queued"] == 10
        deadline = time.monotonic() + 3
        while log.stats()["written"] < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.stats()["written"] == 10  # flushed by time, not by count (500)


def test_spans_and_multilabel_answers_come_back_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "spans"
    folder.mkdir()
    (folder / "task.toml").write_text(
        'name = "ner"\nkind = "spans"\n[labels]\nperson = "a person"\nplace = "a place"\n',
        encoding="utf-8",
    )
    spans = load_task(folder / "task.toml")
    answer = (Span(0, 3, "person", "Ada", 0.8), Span(12, 18, "place", "London", 0.6))
    logged = LoggedPrediction(
        1.0, "ner", "1", "Ada lives in London", answer, None, 0.7, None, False, 2.0
    )
    with PredictionLog(spans) as log:
        log.record([logged])
    assert rows(spans)[0].answer == answer


# policy and texts --------------------------------------------------------------------------------


def test_sample_logs_about_its_share_and_counts_the_rest(task: Task) -> None:
    with PredictionLog(task, policy="sample:0.3", seed=7) as log:
        log.record([prediction(i) for i in range(2000)])
    stats = log.stats()
    assert stats["written"] + stats["sampled_out"] == 2000
    assert 500 <= stats["written"] <= 700  # 600 expected, sd ≈ 20
    assert len(rows(task)) == stats["written"]


def test_policy_none_logs_no_prediction_but_still_queues_abstentions(task: Task) -> None:
    with PredictionLog(task, policy="none") as log:
        log.record([prediction(i, abstained=i % 4 == 0) for i in range(40)])
    assert log.stats()["written"] == 0 and log.stats()["sampled_out"] == 40
    assert log.stats()["review_written"] == 10
    assert rows(task) == []
    with Store.for_task(task, create=False) as store:
        assert len(store.queued_predictions()) == 10


@pytest.mark.parametrize("policy", ["some", "sample:0", "sample:1.5", "sample:x", "sample:", ""])
def test_a_bad_policy_is_refused_naming_it(task: Task, policy: str) -> None:
    with pytest.raises(StillhouseError) as caught:
        PredictionLog(task, policy=policy)
    assert caught.value.code == "E830"
    assert repr(policy) in caught.value.message and "sample:P" in caught.value.message
    assert not task.store_path.exists()


def test_policies_parse_to_shares() -> None:
    assert (parse_policy("all"), parse_policy("none"), parse_policy("sample:0.25")) == (1, 0, 0.25)


def test_texts_are_stored_only_with_log_texts_but_abstained_ones_always_reach_examples(
    task: Task,
) -> None:
    given = [prediction(i, abstained=i == 3) for i in range(6)]
    with PredictionLog(task) as log:
        log.record(given)
    assert all(row.text is None for row in rows(task))
    with Store.for_task(task, create=False) as store:
        examples = store.examples(task.kind)
    assert [(e.id, e.text) for e in examples] == [(text_id(given[3].text), given[3].text)]
    assert examples[0].meta == {"source": "serve"}

    with PredictionLog(task, log_texts=True) as log:
        log.record([prediction(i + 100) for i in range(3)])
    assert [row.text for row in rows(task)[-3:]] == [prediction(i + 100).text for i in range(3)]


# abstentions ---------------------------------------------------------------------------------------


def test_abstained_texts_join_the_review_queue_with_reason_and_probabilities(task: Task) -> None:
    first, second = prediction(1, abstained=True), prediction(2, abstained=True, stage="llm:q")
    with PredictionLog(task) as log:
        log.record([first, prediction(5), second])
    with Store.for_task(task, create=False) as store:
        queued = store.queued_predictions()
        audit = store.review_queue(ABSTAINED_QUEUE)
    assert [item.example_id for item in queued] == [text_id(first.text), text_id(second.text)]
    item = queued[1]
    assert item.rank == 2 and item.reasons == ["abstained"]
    assert item.probs == PROBS and item.suggested == "positive"
    assert item.priority == pytest.approx(0.6)
    assert item.info == {
        "system": "linear",
        "version": "v1",
        "stage": "llm:q",
        "confidence": 0.4,
        "time": second.time,
    }
    assert [entry.example_id for entry in audit] == [entry.example_id for entry in queued]
    assert log.stats()["review_written"] == 2


def test_a_text_abstained_on_again_keeps_its_place_with_the_newest_probabilities(
    task: Task,
) -> None:
    with PredictionLog(task) as log:
        log.record([prediction(1, abstained=True), prediction(2, abstained=True)])
    newer = LoggedPrediction(
        9.0, "linear", "v2", prediction(1).text, "", {"positive": 0.1, "negative": 0.5, "neutral": 0.4},
        0.5, None, True, 1.0,
    )  # fmt: skip
    with PredictionLog(task) as log:
        log.record([newer])
    with Store.for_task(task, create=False) as store:
        queued = store.queued_predictions()
        assert store.count_examples() == 2
    assert [item.rank for item in queued] == [1, 2]
    assert queued[0].suggested == "negative" and queued[0].info["version"] == "v2"


# busy, slow and failing stores ---------------------------------------------------------------------


def test_a_busy_store_is_retried_and_nothing_is_lost(task: Task, locked) -> None:
    release = threading.Event()
    holder = locked(30, release)
    with PredictionLog(task, store_timeout=0.2, retry_pauses=(0.4, 0.4, 0.4, 0.4)) as log:
        log.record([prediction(i) for i in range(300)])
        # record returned while the lock is still held: a request never waits on the store
        assert holder.is_alive() and log.stats()["queued"] == 300
        time.sleep(0.5)  # the writer meets the lock at least once
        release.set()
        holder.join()
    assert log.stats()["written"] == 300 and log.stats()["failed"] == 0
    assert len(rows(task)) == 300


def test_a_store_busy_beyond_the_retries_counts_the_batch_failed_and_says_so(
    task: Task, locked, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(task, store_timeout=0.1, retry_pauses=(0.1,), flush_seconds=0.1)
    holder = locked(1.5)
    with caplog.at_level(logging.WARNING, logger="stillhouse.serve.prediction_log"):
        log.record([prediction(i) for i in range(50)])
        time.sleep(0.8)
        assert log.stats()["failed"] == 50
    assert "50 prediction(s)" in caplog.text and "stillhouse.db" in caplog.text
    holder.join()
    log.record([prediction(i) for i in range(50, 60)])  # the log goes on once the store is free
    log.close()
    assert log.stats()["written"] == 10
    assert len(rows(task)) == 10


def test_a_full_queue_drops_and_counts_instead_of_blocking(task: Task, locked) -> None:
    release = threading.Event()
    holder = locked(30, release)
    log = PredictionLog(task, store_timeout=5, max_queued=100, flush_records=10_000)
    log.record([prediction(i) for i in range(500)])
    assert holder.is_alive()  # returned with the store locked: nothing waited on it
    stats = log.stats()
    assert stats["dropped"] == 400 and stats["failed"] == 400 and stats["queued"] == 100
    release.set()
    holder.join()
    log.close()
    assert log.stats()["written"] == 100 and len(rows(task)) == 100


def test_close_writes_what_is_queued_and_later_records_are_counted_lost(task: Task) -> None:
    log = PredictionLog(task, flush_seconds=60)
    log.record([prediction(i) for i in range(25)])
    log.close()
    assert log.stats()["written"] == 25 and len(rows(task)) == 25
    log.record([prediction(99)])
    assert log.stats()["failed"] == 1
    log.close()  # twice is fine


def test_a_store_of_another_task_is_refused_when_the_log_is_made(
    task: Task, tmp_path: Path
) -> None:
    with PredictionLog(task) as log:
        log.record([prediction(1)])
    other = task.model_copy(update={"name": "another-task"})
    with pytest.raises(StillhouseError) as caught:
        PredictionLog(other)
    assert caught.value.code == "E205"


# processes -------------------------------------------------------------------------------------

LOGGER = textwrap.dedent(
    """
    import json, sys, time
    from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog
    from stillhouse.task import load_task

    task = load_task(sys.argv[1])
    system, total = sys.argv[2], int(sys.argv[3])
    log = PredictionLog(task, flush_records=100, flush_seconds=0.2)
    n = 0
    while total < 0 or n < total:
        log.record([
            LoggedPrediction(time.time(), system, "1", f"{system} text {n + i}", "positive",
                             None, 0.9, None, False, 1.0)
            for i in range(10)
        ])
        n += 10
        print(n, flush=True)
        time.sleep(0.01)
    log.close()
    print(json.dumps(log.stats()), flush=True)
    """
)


def start_logger(task: Task, system: str, total: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(task.path), system, str(total)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_loses_at_most_the_last_batch_and_the_store_stays_whole(task: Task) -> None:
    child = start_logger(task, "linear", -1)
    assert child.stdout is not None
    last = 0
    for line in child.stdout:
        last = int(line)
        if last >= 1500:
            break
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    last = max([last, *(int(line) for line in rest.split())])

    assert integrity(task.store_path) == "ok"
    stored = rows(task)
    # batches commit whole and in order: the rows are exactly the first ones recorded
    assert {row.text_hash for row in stored} == {
        text_id(f"linear text {i}") for i in range(len(stored))
    }
    assert len(stored) >= 1000
    # what was lost is what was not yet committed: a batch of 100 or 0.2 s (~1000/s recorded)
    assert last - len(stored) <= 500, (last, len(stored))

    with PredictionLog(task) as log:  # the next open works and appends
        log.record([prediction(1)])
    assert len(rows(task)) == len(stored) + 1


def test_two_processes_log_to_one_store_at_once(task: Task) -> None:
    PredictionLog(task).close()  # made once, as a server's first worker would
    children = [start_logger(task, name, 2000) for name in ("a", "b")]
    stats = []
    for child in children:
        output, errors = child.communicate(timeout=120)
        assert child.returncode == 0, errors
        stats.append(json.loads(output.split("\n")[-2]))
    assert [s["written"] for s in stats] == [2000, 2000]
    assert [s["failed"] for s in stats] == [0, 0]
    assert len(rows(task, "a")) == 2000 and len(rows(task, "b")) == 2000
    assert integrity(task.store_path) == "ok"
