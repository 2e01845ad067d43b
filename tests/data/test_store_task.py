"""A store knows its task: identity, one text per id, gold updates, SQLite's failures said
plainly, killed runs marked. Real SQLite files, the real `stillhouse` command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stillhouse.annotate import annotate
from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import Store, StoreIdentity
from stillhouse.errors import StillhouseError
from stillhouse.export import export
from stillhouse.task import Task, load_task
from stillhouse.train.labels import from_store

CLI = Callable[..., subprocess.CompletedProcess[str]]

TASK = """
name = "reviews"
instructions = "Classify the sentiment of the review."

[labels]
positive = "The writer likes it."
negative = "The writer does not."
"""
RENAMED = TASK.replace("positive = ", "pos = ")
OTHER_TASK = TASK.replace('name = "reviews"', 'name = "other"')
ROWS = [
    {"id": "r1", "text": "Lovely staff and a quiet room.", "label": "positive"},
    {"id": "r2", "text": "The shower was cold every day.", "label": "negative"},
    {"id": "r3", "text": "Great breakfast.", "label": "positive"},
]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def examples(rows: list[dict[str, Any]] = ROWS) -> list[Example]:
    return [Example(row["id"], row["text"], gold=row.get("label")) for row in rows]


def fill(task: Task, rows: list[dict[str, Any]] = ROWS) -> None:
    """What annotate stores for ``rows``: the examples, their gold, one LLM answer each."""
    with Store.for_task(task, create=True) as store:
        store.add_examples(examples(rows), task.kind)
        store.add_annotations(
            [Annotation(row["id"], "gold", row["label"]) for row in rows]
            + [
                Annotation(row["id"], "llm:m@1", "positive", {"positive": 0.8, "negative": 0.2})
                for row in rows
            ],
            task.kind,
        )


def snapshot(path: Path) -> tuple[Any, ...]:
    """Row counts, the examples, the identity and integrity_check: equal means unchanged."""
    with sqlite3.connect(path) as db:
        state = (
            db.execute("PRAGMA integrity_check").fetchone()[0],
            db.execute("SELECT COUNT(*) FROM examples").fetchone()[0],
            db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0],
            db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
            db.execute("SELECT id, text, gold FROM examples ORDER BY rowid").fetchall(),
            db.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
        )
    db.close()
    return state


@pytest.fixture()
def task(tmp_path: Path) -> Task:
    return load_task(write(tmp_path / "reviews", "task.toml", TASK))


def assert_clean_cli_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr


# identity -------------------------------------------------------------------------------------


def test_the_first_write_records_the_task_and_a_read_writes_nothing(task: Task) -> None:
    fill(task)

    with Store.for_task(task, create=False) as store:
        assert store.identity() == StoreIdentity("reviews", "classify", ("positive", "negative"))


@pytest.mark.parametrize("create", [True, False])
def test_a_renamed_label_is_refused_with_the_labels_named(
    task: Task, tmp_path: Path, create: bool
) -> None:
    fill(task)
    before = snapshot(task.store_path)
    renamed = load_task(write(task.directory, "task.toml", RENAMED))

    with pytest.raises(StillhouseError) as caught:
        Store.for_task(renamed, create=create)

    assert caught.value.code == "E206"
    message = caught.value.message
    assert "only in the store: 'positive'" in message and "only in the task: 'pos'" in message
    assert str(task.store_path) in message and "moving" in message
    assert snapshot(task.store_path) == before


def test_export_train_and_annotate_refuse_a_renamed_label_and_change_nothing(
    task: Task, tmp_path: Path
) -> None:
    fill(task)
    before = snapshot(task.store_path)
    renamed = load_task(write(task.directory, "task.toml", RENAMED))
    data = write(tmp_path, "input.jsonl", "".join(json.dumps(row) + "\n" for row in ROWS[:2]))
    out = tmp_path / "out.jsonl"

    with pytest.raises(StillhouseError) as exported:
        export(renamed, out)
    with pytest.raises(StillhouseError) as trained:
        from_store(renamed, "gold")  # was a KeyError on the unknown label
    renamed_rows = [{**row, "label": "pos"} if row["label"] == "positive" else row for row in ROWS]
    write(tmp_path, "input.jsonl", "".join(json.dumps(row) + "\n" for row in renamed_rows))
    with pytest.raises(StillhouseError) as annotated:
        annotate(renamed, data, model="no-such-model")  # refused before any model is opened

    for caught in (exported, trained, annotated):
        assert caught.value.code == "E206"
        assert "'positive'" in caught.value.message and "'pos'" in caught.value.message
    assert not out.exists()
    assert snapshot(task.store_path) == before


def test_a_second_task_in_the_same_folder_is_refused_naming_both(
    task: Task, run_cli: CLI, tmp_path: Path
) -> None:
    fill(task)
    before = snapshot(task.store_path)
    other_path = write(task.directory, "other.toml", OTHER_TASK)
    other = load_task(other_path)

    with pytest.raises(StillhouseError) as caught:
        Store.for_task(other, create=True)
    result = run_cli(
        tmp_path, "export", "--task", str(other_path), "--out", str(tmp_path / "o.jsonl")
    )

    assert caught.value.code == "E205"
    assert "`reviews` (classify)" in caught.value.message
    assert "`other` (classify)" in caught.value.message
    assert str(task.store_path) in caught.value.message
    assert_clean_cli_error(result, "[E205]", "`reviews`", "`other`")
    assert not (tmp_path / "o.jsonl").exists()
    assert snapshot(task.store_path) == before


def test_a_store_from_before_identities_is_adopted_when_its_labels_are_the_tasks(
    task: Task,
) -> None:
    with Store(task.store_path) as legacy:  # no task recorded, as stores were made before
        legacy.add_examples(examples(), "classify")
        legacy.add_annotations([Annotation("r1", "llm:m@1", "negative")], "classify")

    with Store.for_task(task, create=False) as reader:
        assert reader.identity() is None  # reading adopts without writing
    with Store.for_task(task, create=True) as writer:
        assert writer.identity() is None  # recorded by the first write, not by opening
        writer.start_run("annotate")
        assert writer.identity() == StoreIdentity("reviews", "classify", ("positive", "negative"))


def test_a_store_from_before_identities_with_a_label_the_task_lacks_is_refused(
    task: Task,
) -> None:
    with Store(task.store_path) as legacy:
        legacy.add_examples(examples(), "classify")
        legacy.add_annotations(
            [Annotation("r2", "llm:m@1", "neutral", {"neutral": 0.6, "negative": 0.4})],
            "classify",
        )
    before = snapshot(task.store_path)

    for create in (False, True):
        with pytest.raises(StillhouseError) as caught:
            Store.for_task(task, create=create)
        assert caught.value.code == "E206"
        assert "only in the store: 'neutral'" in caught.value.message
    assert snapshot(task.store_path) == before


def test_a_store_that_holds_nothing_takes_the_task_that_writes_first(task: Task) -> None:
    other = load_task(write(task.directory, "other.toml", OTHER_TASK))
    with Store.for_task(other, create=True) as store:
        store.start_run("annotate")  # e.g. an annotate that failed before its first text
        assert store.identity() == StoreIdentity("other", "classify", ("positive", "negative"))

    fill(task)

    with Store.for_task(task, create=False) as store:
        assert store.identity() == StoreIdentity("reviews", "classify", ("positive", "negative"))


# one text per id; gold follows the data file ---------------------------------------------------


def test_a_changed_text_under_a_known_id_is_refused_naming_the_id(task: Task) -> None:
    fill(task)
    before = snapshot(task.store_path)
    changed = examples()
    changed[1] = Example("r2", "The shower was hot every day.", gold="positive")
    changed.append(Example("r4", "A new one."))

    with Store.for_task(task, create=True) as store, pytest.raises(StillhouseError) as caught:
        store.add_examples(changed, task.kind)

    assert caught.value.code == "E207"
    message = caught.value.message
    assert "'r2'" in message and "new id" in message
    assert "cold every day" in message and "hot every day" in message
    assert snapshot(task.store_path) == before  # not r4 either: nothing of the batch


def test_annotate_refuses_a_changed_text_before_loading_a_model(task: Task, tmp_path: Path) -> None:
    fill(task)
    before = snapshot(task.store_path)
    file_before = task.store_path.read_bytes()
    rows = [*ROWS[:2], {**ROWS[2], "text": "Great breakfast, awful coffee."}]
    data = write(tmp_path, "input.jsonl", "".join(json.dumps(row) + "\n" for row in rows))

    with pytest.raises(StillhouseError) as caught:
        annotate(task, data, model="no-such-model")

    assert caught.value.code == "E207" and "'r3'" in caught.value.message
    assert snapshot(task.store_path) == before
    assert task.store_path.read_bytes() == file_before  # not a byte written


def test_a_changed_gold_label_updates_the_stored_gold_and_its_annotation(task: Task) -> None:
    fill(task)
    relabelled = examples()
    relabelled[0] = Example("r1", ROWS[0]["text"], gold="negative")
    relabelled[1] = Example("r2", ROWS[1]["text"], gold=None)  # no label: the stored one stays

    with Store.for_task(task, create=True) as store:
        assert store.add_examples(relabelled, task.kind) == 0
        gold = {e.id: e.gold for e in store.examples(task.kind)}
        annotations = {a.example_id: a.answer for a in store.annotations(task.kind, "gold")}

    assert gold == {"r1": "negative", "r2": "negative", "r3": "positive"}
    assert annotations == gold
    out = task.directory / "gold.jsonl"
    export(task, out, "gold")
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (exported[0]["text"], exported[0]["label"]) == (ROWS[0]["text"], "negative")


# no store, locked store, full disk --------------------------------------------------------------


def test_export_without_a_store_is_E204_and_leaves_no_file(
    task: Task, run_cli: CLI, tmp_path: Path
) -> None:
    result = run_cli(
        tmp_path, "export", "--task", str(task.path), "--out", str(tmp_path / "o.jsonl")
    )

    assert_clean_cli_error(result, "[E204]", str(task.store_path))
    with pytest.raises(StillhouseError) as caught:
        Store.for_task(task, create=False)
    assert caught.value.code == "E204"
    assert sorted(p.name for p in task.directory.iterdir()) == ["task.toml"]  # no db, -wal, -shm
    assert not (tmp_path / "o.jsonl").exists()


@pytest.fixture()
def locked(task: Task) -> Iterator[Path]:
    """The task's store, filled, with another connection holding an exclusive lock on it."""
    fill(task)
    holder = sqlite3.connect(task.store_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # readers are kept out too, even in WAL
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO meta VALUES ('held', 'by another process')")
    yield task.store_path
    holder.execute("ROLLBACK")
    holder.close()


def test_a_locked_store_says_it_is_in_use_and_changes_nothing(task: Task, locked: Path) -> None:
    with pytest.raises(StillhouseError) as at_open:
        Store.for_task(task, create=True, timeout=0.1)

    assert at_open.value.code == "E208"
    assert "in use by another process" in at_open.value.message
    assert "database is locked" in at_open.value.message and str(locked) in at_open.value.message
    assert "not a stillhouse store" not in at_open.value.message


def test_a_write_that_meets_a_lock_mid_run_is_E208_and_the_batch_is_not_written(
    task: Task,
) -> None:
    fill(task)
    before = snapshot(task.store_path)
    with Store.for_task(task, create=True, timeout=0.1) as store:
        other = sqlite3.connect(task.store_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer, between two of our batches
        try:
            with pytest.raises(StillhouseError) as caught:
                store.add_annotations([Annotation("r1", "llm:m@2", "negative")], task.kind)
            with pytest.raises(StillhouseError):
                store.start_run("annotate")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert caught.value.code == "E208"
        store.add_annotations([Annotation("r1", "llm:m@2", "negative")], task.kind)  # usable
    after = snapshot(task.store_path)
    assert after[0] == "ok" and after[2] == before[2] + 1 and after[3] == before[3]


def test_a_locked_store_through_the_cli_is_exit_2_without_a_traceback(
    task: Task, locked: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stillhouse.cli",
            "export",
            "--task",
            str(task.path),
            "--out",
            "o.jsonl",
        ],
        cwd=tmp_path,
        env={**cli_env, "STILLHOUSE_STORE_TIMEOUT": "0.2"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert_clean_cli_error(result, "[E208]", "in use by another process", "0.2 s")
    assert not (tmp_path / "o.jsonl").exists()


def test_a_full_disk_is_E209_and_keeps_the_store_whole(task: Task) -> None:
    fill(task)
    before = snapshot(task.store_path)
    with Store.for_task(task, create=True) as store:
        # SQLite's own size limit: the same SQLITE_FULL a full disk gives.
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        big = [Example(f"big{i}", "x" * 5000 + str(i)) for i in range(20)]
        with pytest.raises(StillhouseError) as caught:
            store.add_examples(big, task.kind)

    assert caught.value.code == "E209"
    assert "the disk is full" in caught.value.message
    assert "database or disk is full" in caught.value.message
    assert snapshot(task.store_path) == before


def test_a_bad_timeout_setting_is_named(task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STILLHOUSE_STORE_TIMEOUT", "soon")

    with pytest.raises(StillhouseError) as caught:
        Store.for_task(task, create=True)

    assert "STILLHOUSE_STORE_TIMEOUT" in caught.value.message and "'soon'" in caught.value.message
    assert not task.store_path.exists()


# runs whose process is gone ---------------------------------------------------------------------

STARTER = textwrap.dedent(
    """
    import sys, time
    from stillhouse.data.store import Store

    store = Store(sys.argv[1])
    store.start_run("annotate")
    print("started", flush=True)
    time.sleep(60)
    """
)


def test_a_run_whose_process_was_killed_is_marked_interrupted_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "stillhouse.db"
    Store(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        with Store(path) as store:
            live = store.start_run("annotate")  # the child still runs: its run stays running
            assert [run.status for run in store.runs()] == ["running", "running"]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()

    with Store(path) as store:
        store.start_run("annotate")
        killed, still, new = store.runs()

    assert killed.status == "interrupted" and killed.finished_at is not None
    assert killed.stats is not None and killed.stats["pid"] == child.pid
    assert (still.id, still.status) == (live, "running")  # this process is alive
    assert new.status == "running"
