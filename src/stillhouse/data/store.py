"""The workspace store: one SQLite file (WAL) holding examples, annotations, the LLM cache and runs.

Every write happens in a transaction, so a process killed at any moment (even ``kill -9``) leaves
the file with exactly the batches that were committed, and the next run resumes from there.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stillhouse.data.records import (
    Annotation,
    Example,
    Kind,
    answer_from_json,
    answer_to_json,
)
from stillhouse.errors import Errors, fail

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS examples (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    gold TEXT,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    example_id TEXT NOT NULL REFERENCES examples(id),
    annotator TEXT NOT NULL,
    answer TEXT NOT NULL,
    probs TEXT,
    info TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_id TEXT,
    PRIMARY KEY (example_id, annotator)
);
CREATE INDEX IF NOT EXISTS annotations_by_annotator ON annotations(annotator);
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    task_hash TEXT,
    data_hash TEXT,
    model TEXT,
    model_sha256 TEXT,
    seed INTEGER,
    versions TEXT NOT NULL,
    stats TEXT
);
CREATE TABLE IF NOT EXISTS review_queue (
    queue TEXT NOT NULL,
    example_id TEXT NOT NULL REFERENCES examples(id),
    rank INTEGER NOT NULL,
    priority REAL NOT NULL,
    reasons TEXT NOT NULL,
    suggested TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (queue, example_id)
);
CREATE INDEX IF NOT EXISTS review_queue_by_rank ON review_queue(queue, rank);
"""


@dataclass(frozen=True)
class Run:
    id: str
    command: str
    started_at: float
    finished_at: float | None
    status: str
    task_hash: str | None
    data_hash: str | None
    model: str | None
    model_sha256: str | None
    seed: int | None
    versions: dict[str, str]
    stats: dict[str, Any] | None


@dataclass(frozen=True)
class ReviewItem:
    """One example waiting for a human look: ``rank`` 1 first; ``reasons`` say why (the audit's
    likely label error, LLM/human disagreement, low LLM confidence); ``suggested`` a label."""

    example_id: str
    rank: int
    priority: float
    reasons: list[str]
    suggested: str | None = None


class Store:
    """A workspace's SQLite database. Open with ``Store(path)``; close with ``close()`` or ``with``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                found = self._db.execute(
                    "SELECT value FROM meta WHERE key='schema_version'"
                ).fetchone()
                if found is None:
                    self._db.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
                elif int(found[0]) != SCHEMA_VERSION:
                    raise fail(Errors.E203, path=self.path, found=found[0], expected=SCHEMA_VERSION)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise fail(Errors.E201, path=self.path, detail=str(error)) from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # examples -----------------------------------------------------------------------------
    def add_examples(self, examples: Iterable[Example], kind: Kind) -> int:
        """Insert examples (an existing id keeps its stored text); returns how many were new."""
        now = time.time()
        rows = [
            (
                e.id,
                e.text,
                json.dumps(e.meta, ensure_ascii=False, sort_keys=True),
                None
                if e.gold is None
                else json.dumps(answer_to_json(e.gold, kind), ensure_ascii=False),
                now,
            )
            for e in examples
        ]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO examples VALUES (?, ?, ?, ?, ?)", rows)
            return db.total_changes - before

    def examples(self, kind: Kind, ids: Sequence[str] | None = None) -> list[Example]:
        """All examples in insertion order, or those with the given ids (in that order)."""
        if ids is None:
            rows = self._db.execute(
                "SELECT id, text, meta, gold FROM examples ORDER BY rowid"
            ).fetchall()
        else:
            found = {
                row[0]: row
                for chunk in _chunks(list(ids), 900)
                for row in self._db.execute(
                    f"SELECT id, text, meta, gold FROM examples WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            }
            rows = [found[i] for i in ids if i in found]
        return [
            Example(
                id=row[0],
                text=row[1],
                meta=json.loads(row[2]),
                gold=None if row[3] is None else answer_from_json(json.loads(row[3]), kind),
            )
            for row in rows
        ]

    def count_examples(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM examples").fetchone()[0])

    # annotations --------------------------------------------------------------------------
    def add_annotations(
        self,
        annotations: Sequence[Annotation],
        kind: Kind,
        run_id: str | None = None,
        cache: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Write annotations (replacing the same annotator's earlier answer) and cache entries
        in one transaction: either all of them are stored or none."""
        rows = [
            (
                a.example_id,
                a.annotator,
                json.dumps(answer_to_json(a.answer, kind), ensure_ascii=False),
                None if a.probs is None else json.dumps(a.probs, default=float),
                json.dumps(a.info, ensure_ascii=False, default=float),
                a.created_at or time.time(),
                run_id,
            )
            for a in annotations
        ]
        now = time.time()
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR REPLACE INTO llm_cache VALUES (?, ?, ?)",
                [(key, json.dumps(value, default=float), now) for key, value in cache],
            )

    def annotations(self, kind: Kind, annotator: str | None = None) -> list[Annotation]:
        """Annotations, all or by one annotator id, in example order."""
        query = (
            "SELECT a.example_id, a.annotator, a.answer, a.probs, a.info, a.created_at "
            "FROM annotations a JOIN examples e ON e.id = a.example_id"
        )
        params: tuple[str, ...] = ()
        if annotator is not None:
            query += " WHERE a.annotator = ?"
            params = (annotator,)
        query += " ORDER BY e.rowid, a.annotator"
        return [
            Annotation(
                example_id=row[0],
                annotator=row[1],
                answer=answer_from_json(json.loads(row[2]), kind),
                probs=None if row[3] is None else json.loads(row[3]),
                info=json.loads(row[4]),
                created_at=row[5],
            )
            for row in self._db.execute(query, params)
        ]

    def annotated_ids(self, annotator: str) -> set[str]:
        rows = self._db.execute(
            "SELECT example_id FROM annotations WHERE annotator = ?", (annotator,)
        )
        return {row[0] for row in rows}

    def annotators(self) -> list[tuple[str, int]]:
        """Every annotator id with its number of annotations."""
        return [
            (row[0], row[1])
            for row in self._db.execute(
                "SELECT annotator, COUNT(*) FROM annotations GROUP BY annotator ORDER BY annotator"
            )
        ]

    # LLM cache ----------------------------------------------------------------------------
    def cache_get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in _chunks(list(keys), 900):
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(
                f"SELECT key, value FROM llm_cache WHERE key IN ({marks})", chunk
            ):
                found[key] = json.loads(value)
        return found

    def cache_size(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    # review queue -------------------------------------------------------------------------
    def replace_review_queue(self, queue: str, items: Sequence[ReviewItem]) -> None:
        """Make ``items`` the whole content of ``queue`` (e.g. ``audit``) in one transaction.

        Every ``example_id`` must already be in ``examples``."""
        now = time.time()
        rows = [
            (
                queue,
                item.example_id,
                item.rank,
                item.priority,
                json.dumps(item.reasons, ensure_ascii=False),
                item.suggested,
                now,
            )
            for item in items
        ]
        with self._transaction() as db:
            db.execute("DELETE FROM review_queue WHERE queue = ?", (queue,))
            db.executemany("INSERT INTO review_queue VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def review_queue(self, queue: str) -> list[ReviewItem]:
        """The queue's items, rank 1 first."""
        rows = self._db.execute(
            "SELECT example_id, rank, priority, reasons, suggested FROM review_queue "
            "WHERE queue = ? ORDER BY rank",
            (queue,),
        )
        return [ReviewItem(row[0], row[1], row[2], json.loads(row[3]), row[4]) for row in rows]

    # runs ---------------------------------------------------------------------------------
    def start_run(self, command: str, **fields: Any) -> str:
        from stillhouse.provenance import package_versions

        run_id = uuid.uuid4().hex[:12]
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs (id, command, started_at, status, task_hash, data_hash, model, "
                "model_sha256, seed, versions) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    command,
                    time.time(),
                    fields.get("task_hash"),
                    fields.get("data_hash"),
                    fields.get("model"),
                    fields.get("model_sha256"),
                    fields.get("seed"),
                    json.dumps(package_versions()),
                ),
            )
        return run_id

    def finish_run(self, run_id: str, status: str, stats: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, stats = ? WHERE id = ?",
                (time.time(), status, json.dumps(stats, default=float), run_id),
            )

    def runs(self) -> list[Run]:
        rows = self._db.execute(
            "SELECT id, command, started_at, finished_at, status, task_hash, data_hash, model, "
            "model_sha256, seed, versions, stats FROM runs ORDER BY started_at"
        )
        return [
            Run(
                *row[:10],
                versions=json.loads(row[10]),
                stats=None if row[11] is None else json.loads(row[11]),
            )
            for row in rows
        ]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
