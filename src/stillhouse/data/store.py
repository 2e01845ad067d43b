"""The workspace store: one SQLite file (WAL) holding examples, annotations, the LLM cache and runs.

Every write happens in a transaction, so a process killed at any moment (even ``kill -9``) leaves
the file with exactly the batches that were committed, and the next run resumes from there.

A store knows its task: the first task that writes to it records its name, kind and labels
(table ``meta``), and :meth:`Store.for_task` refuses a task with another name, kind or label set
while the store holds anything. An example id keeps one text for good: a changed text under a
known id is refused (E207); a changed gold label updates the stored one (the data file is the
source of gold). SQLite's own failures (busy, disk full, read-only, …) become E208/E209 naming
the file, never a traceback and never "not a stillhouse store" (E201 is kept for files that are
not SQLite databases).

Schema version 2 adds the prediction log (table ``predictions``, one row per logged prediction
of a served system: time, system, version, text hash, the text only when the server logs texts,
answer, confidence, stage, abstention, latency; indexed by system and time) and the columns
``probs`` and ``info`` of ``review_queue`` (what a model said about an abstained text). A
version-1 store is migrated in place by the first command that opens it for writing (the
additions only: nothing is rewritten); commands that only read accept both versions. A
stillhouse that knows version 1 only refuses a version-2 store (E203).
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from stillhouse.data.records import (
    Annotation,
    Answer,
    Example,
    Kind,
    answer_from_json,
    answer_to_json,
    text_id,
)
from stillhouse.errors import Errors, StillhouseError, fail

if TYPE_CHECKING:
    from stillhouse.task import Task

SCHEMA_VERSION = 2
# Versions a command that only reads accepts: version 1 lacks only the prediction log.
READABLE_SCHEMA_VERSIONS = (1, 2)
# The review queue that abstained predictions of a served system go to.
ABSTAINED_QUEUE = "abstained"
# The review queue texts go to that [privacy] remote = "block" kept from a remote LLM.
PRIVACY_QUEUE = "privacy"
# The review queue texts go to that [guard] injection = "route"/"block" kept from the LLM.
INJECTION_QUEUE = "injection"
# How long an operation waits for another process's write lock before it gives up (E208).
DEFAULT_TIMEOUT_S = 30.0
TIMEOUT_ENVIRONMENT_VARIABLE = "STILLHOUSE_STORE_TIMEOUT"
# Keys of the ``meta`` table that say which task the store belongs to.
_IDENTITY_KEYS = ("task_name", "task_kind", "task_labels")
_EXCERPT = 40

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
    probs TEXT,
    info TEXT,
    PRIMARY KEY (queue, example_id)
);
CREATE INDEX IF NOT EXISTS review_queue_by_rank ON review_queue(queue, rank);
CREATE TABLE IF NOT EXISTS predictions (
    time REAL NOT NULL,
    system TEXT NOT NULL,
    version TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    text TEXT,
    answer TEXT NOT NULL,
    confidence REAL,
    stage TEXT,
    abstained INTEGER NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_by_system_time ON predictions(system, time);
"""
_SCHEMA_NAMES = set(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))
# What version 2 added to a version-1 table (new tables come from _SCHEMA itself).
_ADDED_COLUMNS = {"review_queue": (("probs", "TEXT"), ("info", "TEXT"))}


@dataclass(frozen=True)
class Run:
    """One recorded run. While ``status`` is ``running``, ``stats`` holds the process that runs
    it (``pid``, ``host``, ``process_started``); a run whose process is gone is marked
    ``interrupted`` by the next :meth:`Store.start_run`."""

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


@dataclass(frozen=True)
class QueuedPrediction:
    """A served system's abstained prediction waiting in a review queue (``abstained``): the
    example (its text is in ``examples``), ``rank`` (arrival order, 1 first), ``priority`` (1 −
    the confidence), ``reasons`` (``["abstained"]``), ``suggested`` (the most probable label),
    ``probs`` (the stage's probabilities, or None) and ``info`` (``system``, ``version``,
    ``stage``, ``confidence``, ``time`` of the latest abstention on this text)."""

    example_id: str
    rank: int
    priority: float
    reasons: list[str]
    suggested: str | None
    probs: dict[str, float] | None
    info: dict[str, Any]


@dataclass(frozen=True)
class PredictionRecord:
    """One row of the prediction log: ``time`` (seconds since the epoch), the ``system`` and its
    ``version``, ``text_hash`` (:func:`~stillhouse.data.records.text_id` of the text), ``text``
    (None unless the server logs texts), ``answer`` (``""`` when abstained), ``confidence`` (the
    probability of the answer, or None), ``stage`` (the cascade stage that answered, or None),
    ``abstained`` and ``latency_ms``."""

    time: float
    system: str
    version: str
    text_hash: str
    text: str | None
    answer: Answer
    confidence: float | None
    stage: str | None
    abstained: bool
    latency_ms: float


@dataclass(frozen=True)
class AbstainedText:
    """An abstained text on its way to the review queue: the text, the stage's probabilities
    (or None), ``info`` as :class:`QueuedPrediction` holds it and the ``priority``."""

    text: str
    probs: dict[str, float] | None
    info: dict[str, Any]
    priority: float


@dataclass(frozen=True)
class LoggedSystem:
    """A system in the prediction log: its name, how many predictions, the first and last time."""

    name: str
    count: int
    first: float
    last: float


@dataclass(frozen=True)
class StoreIdentity:
    """The task a store belongs to, as recorded in it: name, kind and label names (task order)."""

    name: str
    kind: str
    labels: tuple[str, ...]


F = TypeVar("F", bound=Callable[..., Any])


def _sqlite_errors(method: F) -> F:
    """Turn SQLite's failures inside a Store method into E208/E209 naming the store (an
    IntegrityError, a caller's mistake, passes through)."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.DatabaseError as error:
            raise self._error(error) from error

    return wrapper  # type: ignore[return-value]


class Store:
    """A workspace's SQLite database. Open with ``Store(path)``; close with ``close()`` or ``with``.

    A task's store is opened with :meth:`for_task`, which also checks that the store belongs to
    the task. ``create=False`` opens an existing store without writing to it (E204 when there is
    none, and no file is made). ``timeout`` is how many seconds an operation waits for another
    process's lock (default ``$STILLHOUSE_STORE_TIMEOUT``, else 30) before E208.
    """

    def __init__(
        self, path: str | Path, *, create: bool = True, timeout: float | None = None
    ) -> None:
        self.path = Path(path)
        self.timeout = _timeout() if timeout is None else timeout
        self.schema_version = SCHEMA_VERSION
        self._identity_to_record: list[tuple[str, str]] = []
        if not create and not self.path.is_file():
            raise fail(Errors.E204, path=self.path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # mode=rw never creates the file: a reader leaves nothing behind.
            target = f"file:{quote(str(self.path.absolute()))}?mode={'rwc' if create else 'rw'}"
            self._db = sqlite3.connect(target, uri=True, isolation_level=None, timeout=self.timeout)
        except sqlite3.DatabaseError as error:
            raise self._error(error, opening=True) from error
        try:
            self._open(create)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise self._error(error, opening=True) from error
        except BaseException:
            self._db.close()
            raise

    def _open(self, create: bool) -> None:
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        if not create:
            # Read only: an existing store is already in WAL mode and has its tables.
            self._check_schema_version()
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        if self._is_current():
            return  # nothing to create: no write lock needed (a busy store opens all the same)
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif self._check_schema_version() != SCHEMA_VERSION:
                self._migrate()

    def _is_current(self) -> bool:
        """Whether the store has every table and index of this version's schema."""
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if not _SCHEMA_NAMES.issubset(names):
            return False
        found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return found is not None and found[0] == str(SCHEMA_VERSION)

    def _check_schema_version(self) -> int:
        """The store's schema version; E203 unless this stillhouse reads it."""
        found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = _version_number(None if found is None else found[0])
        if version not in READABLE_SCHEMA_VERSIONS:
            raise fail(
                Errors.E203,
                path=self.path,
                found="none" if found is None else found[0],
                expected=SCHEMA_VERSION,
            )
        self.schema_version = version
        return version

    def _migrate(self) -> None:
        """Version 1 → 2 inside the opening transaction: the new tables already exist (the
        schema makes what is missing), the new columns are added to the old tables."""
        for table, columns in _ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        self._db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
        self.schema_version = SCHEMA_VERSION

    @classmethod
    def for_task(cls, task: Task, *, create: bool, timeout: float | None = None) -> Store:
        """Open ``task``'s store (``task.store_path``) and check that it is the task's.

        ``create=True`` (a command that writes: annotate, the audit's review queue) makes the
        store if needed, and its first write records the task's name, kind and labels in it.
        ``create=False`` (a command that only reads: export, train --from-store, audit
        --annotator) needs an existing store (E204, no file made) and writes nothing. E205: the
        store holds another task's data; E206: it holds labels the task does not have (or, once
        recorded, another label set). A store from before identities were recorded is adopted
        when every label in it is one of the task's. A store that holds nothing takes any task.
        """
        store = cls(task.store_path, create=create, timeout=timeout)
        try:
            store._claim(task, record=create)
        except BaseException:
            store.close()
            raise
        return store

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
            if self._identity_to_record:
                # The first write of a task that opened the store records whose store it is.
                self._db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", self._identity_to_record
                )
            yield self._db
            self._db.execute("COMMIT")
            self._identity_to_record = []
        except BaseException:
            if self._db.in_transaction:
                # The original error says more; SQLite rolls back on close anyway.
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def _error(self, error: sqlite3.DatabaseError, *, opening: bool = False) -> StillhouseError:
        """The message for a SQLite failure: E201 for a file that is not a database, E208 when
        another process holds the lock, E209 for the rest (disk full, read-only, I/O …)."""
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        detail = str(error)
        if code == sqlite3.SQLITE_NOTADB or (opening and detail.startswith("no such table")):
            return fail(Errors.E201, path=self.path, detail=detail)
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return fail(Errors.E208, path=self.path, detail=detail, timeout=self.timeout)
        problem, advice = _SQLITE_PROBLEMS.get(code, _SQLITE_PROBLEM_OTHER)
        return fail(
            Errors.E209,
            path=self.path,
            problem=problem,
            detail=detail,
            advice=advice.format(path=self.path, name=self.path.name),
        )

    # the task -----------------------------------------------------------------------------
    @_sqlite_errors
    def identity(self) -> StoreIdentity | None:
        """The task recorded in the store, or None (a new store, or one from before identities)."""
        rows = dict(
            self._db.execute(
                f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(_IDENTITY_KEYS))})",
                _IDENTITY_KEYS,
            ).fetchall()
        )
        if set(rows) != set(_IDENTITY_KEYS):
            return None
        return StoreIdentity(
            rows["task_name"], rows["task_kind"], tuple(json.loads(rows["task_labels"]))
        )

    @_sqlite_errors
    def stored_labels(self) -> set[str]:
        """Every label name the store's examples and annotations use (gold, answers and the keys
        of per-label probabilities; invalid LLM answers left out)."""
        found: set[str] = set()
        for (gold,) in self._db.execute("SELECT gold FROM examples WHERE gold IS NOT NULL"):
            found |= _labels_in(json.loads(gold))
        for answer, probs, info in self._db.execute("SELECT answer, probs, info FROM annotations"):
            if not json.loads(info).get("invalid"):
                found |= _labels_in(json.loads(answer))
            if probs is not None and isinstance(loaded := json.loads(probs), dict):
                found |= set(loaded)
        return found

    def _is_empty(self) -> bool:
        logged = " OR EXISTS (SELECT 1 FROM predictions)" if self.schema_version >= 2 else ""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM examples) OR EXISTS (SELECT 1 FROM annotations)" + logged
        ).fetchone()
        return not row[0]

    @_sqlite_errors
    def _claim(self, task: Task, *, record: bool) -> None:
        """Check that the store may hold ``task``'s data (E205/E206); with ``record``, have the
        next write record the task's identity where the store does not have it yet (a command
        refused before it writes leaves the file as it was)."""
        self._check_task(task)
        wanted = StoreIdentity(task.name, task.kind, tuple(task.label_names))
        if record and self.identity() != wanted:
            labels = json.dumps(task.label_names, ensure_ascii=False)
            self._identity_to_record = list(
                zip(_IDENTITY_KEYS, (task.name, task.kind, labels), strict=True)
            )

    def _check_task(self, task: Task) -> None:
        if self._is_empty():
            return  # nothing in it belongs to any task yet
        where = task.path if task.path is not None else f"`{task.name}`"
        current = set(task.label_names)
        recorded = self.identity()
        if recorded is None:
            found = self.stored_labels()
            if found <= current:
                return  # a store from before identities, adopted
            stored = sorted(found)
        else:
            if (recorded.name, recorded.kind) != (task.name, task.kind):
                raise fail(
                    Errors.E205,
                    path=self.path,
                    stored=f"`{recorded.name}` ({recorded.kind})",
                    task_path=where,
                    current=f"`{task.name}` ({task.kind})",
                )
            if set(recorded.labels) == current:
                return
            stored = list(recorded.labels)
        only_stored = [label for label in stored if label not in current]
        only_task = [label for label in task.label_names if label not in set(stored)]
        difference = "; ".join(
            part
            for part in (
                only_stored and f"only in the store: {_names(only_stored)}",
                only_task and f"only in the task: {_names(only_task)}",
            )
            if part
        )
        raise fail(
            Errors.E206,
            path=self.path,
            task_path=where,
            difference=difference,
            stored=_names(stored),
            current=_names(task.label_names),
        )

    # examples -----------------------------------------------------------------------------
    @_sqlite_errors
    def add_examples(self, examples: Iterable[Example], kind: Kind) -> int:
        """Insert examples; returns how many were new. A known id keeps its text: a different
        text under it is refused (E207, nothing written). A known id with the same text and
        another gold answer gets the new gold (and so does its ``gold`` annotation, if any); an
        example without gold leaves the stored gold as it is."""
        now = time.time()
        given = list(examples)
        with self._transaction() as db:
            stored = self._texts_and_gold(db, [e.id for e in given])
            self._refuse_changed_texts(given, stored)
            rows, regold = [], []
            for e in given:
                gold = None if e.gold is None else answer_to_json(e.gold, kind)
                gold_json = None if gold is None else json.dumps(gold, ensure_ascii=False)
                if e.id not in stored:
                    meta = json.dumps(e.meta, ensure_ascii=False, sort_keys=True)
                    rows.append((e.id, e.text, meta, gold_json, now))
                    continue
                stored_gold = stored[e.id][1]
                if gold_json is not None and (
                    stored_gold is None or json.loads(stored_gold) != json.loads(gold_json)
                ):
                    regold.append((gold_json, e.id))
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO examples VALUES (?, ?, ?, ?, ?)", rows)
            added = db.total_changes - before
            db.executemany("UPDATE examples SET gold = ? WHERE id = ?", regold)
            db.executemany(
                "UPDATE annotations SET answer = ?, created_at = ? "
                "WHERE example_id = ? AND annotator = 'gold'",
                [(gold_json, now, example_id) for gold_json, example_id in regold],
            )
            return added

    @staticmethod
    def _texts_and_gold(
        db: sqlite3.Connection, ids: Sequence[str]
    ) -> dict[str, tuple[str, str | None]]:
        return {
            row[0]: (row[1], row[2])
            for chunk in _chunks(list(dict.fromkeys(ids)), 900)
            for row in db.execute(
                f"SELECT id, text, gold FROM examples WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        }

    @_sqlite_errors
    def check_examples(self, examples: Iterable[Example]) -> None:
        """E207 as :meth:`add_examples` would raise it, without writing (to check before slow
        work starts)."""
        given = list(examples)
        self._refuse_changed_texts(given, self._texts_and_gold(self._db, [e.id for e in given]))

    def _refuse_changed_texts(
        self, given: list[Example], stored: dict[str, tuple[str, str | None]]
    ) -> None:
        changed = [e for e in given if e.id in stored and stored[e.id][0] != e.text]
        if not changed:
            return
        first = changed[0]
        old, new = _excerpts(stored[first.id][0], first.text)
        more = ""
        if len(changed) > 1:
            shown = ", ".join(repr(e.id) for e in changed[1:4])
            more = f"; {len(changed) - 1} more id(s) with a changed text: {shown}"
            more += ", …" if len(changed) > 4 else ""
        raise fail(Errors.E207, id=first.id, path=self.path, stored=old, new=new, more=more)

    @_sqlite_errors
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

    @_sqlite_errors
    def count_examples(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM examples").fetchone()[0])

    @_sqlite_errors
    def data_version(self) -> int:
        """A number that changes whenever another connection (another process, or another
        Store on the file) commits to the store: SQLite's ``PRAGMA data_version``. The review
        server keeps what it read until this changes."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # annotations --------------------------------------------------------------------------
    @_sqlite_errors
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

    @_sqlite_errors
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

    @_sqlite_errors
    def annotated_ids(self, annotator: str) -> set[str]:
        rows = self._db.execute(
            "SELECT example_id FROM annotations WHERE annotator = ?", (annotator,)
        )
        return {row[0] for row in rows}

    @_sqlite_errors
    def annotators(self) -> list[tuple[str, int]]:
        """Every annotator id with its number of annotations."""
        return [
            (row[0], row[1])
            for row in self._db.execute(
                "SELECT annotator, COUNT(*) FROM annotations GROUP BY annotator ORDER BY annotator"
            )
        ]

    # LLM cache ----------------------------------------------------------------------------
    @_sqlite_errors
    def cache_get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in _chunks(list(keys), 900):
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(
                f"SELECT key, value FROM llm_cache WHERE key IN ({marks})", chunk
            ):
                found[key] = json.loads(value)
        return found

    @_sqlite_errors
    def cache_size(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    # review queue -------------------------------------------------------------------------
    @_sqlite_errors
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
            db.executemany(
                "INSERT INTO review_queue (queue, example_id, rank, priority, reasons, suggested, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    @_sqlite_errors
    def add_to_review_queue(self, queue: str, items: Sequence[ReviewItem]) -> None:
        """Append ``items`` to ``queue`` after its last rank (their own ``rank`` is ignored), in
        one transaction; an example already in the queue keeps its rank and gets the new
        reasons. Every ``example_id`` must already be in ``examples``."""
        now = time.time()
        with self._transaction() as db:
            rank = db.execute(
                "SELECT COALESCE(MAX(rank), 0) FROM review_queue WHERE queue = ?", (queue,)
            ).fetchone()[0]
            for offset, item in enumerate(items, start=1):
                db.execute(
                    "INSERT INTO review_queue (queue, example_id, rank, priority, reasons, "
                    "suggested, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (queue, example_id) DO UPDATE SET reasons = excluded.reasons, "
                    "priority = excluded.priority, created_at = excluded.created_at",
                    (
                        queue,
                        item.example_id,
                        rank + offset,
                        item.priority,
                        json.dumps(item.reasons, ensure_ascii=False),
                        item.suggested,
                        now,
                    ),
                )

    @_sqlite_errors
    def review_queue(self, queue: str) -> list[ReviewItem]:
        """The queue's items, rank 1 first."""
        rows = self._db.execute(
            "SELECT example_id, rank, priority, reasons, suggested FROM review_queue "
            "WHERE queue = ? ORDER BY rank",
            (queue,),
        )
        return [ReviewItem(row[0], row[1], row[2], json.loads(row[3]), row[4]) for row in rows]

    @_sqlite_errors
    def queued_predictions(self, queue: str = ABSTAINED_QUEUE) -> list[QueuedPrediction]:
        """The abstained predictions waiting in ``queue``, rank 1 (the earliest) first."""
        if self.schema_version < 2:
            return []
        rows = self._db.execute(
            "SELECT example_id, rank, priority, reasons, suggested, probs, info FROM "
            "review_queue WHERE queue = ? ORDER BY rank",
            (queue,),
        )
        return [
            QueuedPrediction(
                row[0],
                row[1],
                row[2],
                json.loads(row[3]),
                row[4],
                None if row[5] is None else json.loads(row[5]),
                {} if row[6] is None else json.loads(row[6]),
            )
            for row in rows
        ]

    # the prediction log -------------------------------------------------------------------
    @_sqlite_errors
    def log_predictions(
        self,
        records: Sequence[PredictionRecord],
        kind: Kind,
        abstained: Sequence[AbstainedText] = (),
    ) -> int:
        """Append ``records`` to the prediction log and put the ``abstained`` texts in the
        review queue ``abstained``, in one transaction: all of it is stored or none.

        Each abstained text is added to ``examples`` (id: its hash, meta ``source: serve``) if
        it is not there; a text seen before keeps its place in the queue and gets the newest
        probabilities and info. Returns how many abstained texts could not be queued because
        their id holds another text (an id given by hand that equals a hash)."""
        rows = [
            (
                r.time,
                r.system,
                r.version,
                r.text_hash,
                r.text,
                json.dumps(
                    "" if r.abstained else answer_to_json(r.answer, kind), ensure_ascii=False
                ),
                r.confidence,
                r.stage,
                int(r.abstained),
                r.latency_ms,
            )
            for r in records
        ]
        now = time.time()
        with self._transaction() as db:
            db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return self._queue_abstained(db, abstained, now)

    def _queue_abstained(
        self, db: sqlite3.Connection, abstained: Sequence[AbstainedText], now: float
    ) -> int:
        if not abstained:
            return 0
        ids = [text_id(item.text) for item in abstained]
        stored = self._texts_and_gold(db, ids)
        rank = db.execute(
            "SELECT COALESCE(MAX(rank), 0) FROM review_queue WHERE queue = ?", (ABSTAINED_QUEUE,)
        ).fetchone()[0]
        refused = 0
        for example_id, item in zip(ids, abstained, strict=True):
            if example_id in stored and stored[example_id][0] != item.text:
                refused += 1
                continue
            if example_id not in stored:
                meta = {"source": "serve"}
                db.execute(
                    "INSERT INTO examples VALUES (?, ?, ?, NULL, ?)",
                    (example_id, item.text, json.dumps(meta), now),
                )
                stored[example_id] = (item.text, None)
            rank += 1
            suggested = None if not item.probs else max(item.probs, key=item.probs.__getitem__)
            db.execute(
                "INSERT INTO review_queue VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (queue, example_id) DO UPDATE SET priority = excluded.priority, "
                "suggested = excluded.suggested, created_at = excluded.created_at, "
                "probs = excluded.probs, info = excluded.info",
                (
                    ABSTAINED_QUEUE,
                    example_id,
                    rank,
                    item.priority,
                    json.dumps(["abstained"]),
                    suggested,
                    now,
                    None if item.probs is None else json.dumps(item.probs, default=float),
                    json.dumps(item.info, ensure_ascii=False, default=float),
                ),
            )
        return refused

    @_sqlite_errors
    def logged_systems(
        self, since: float | None = None, until: float | None = None
    ) -> list[LoggedSystem]:
        """The systems with logged predictions in [since, until), by name."""
        if self.schema_version < 2:
            return []
        where, params = _window(since, until)
        rows = self._db.execute(
            f"SELECT system, COUNT(*), MIN(time), MAX(time) FROM predictions{where} "
            "GROUP BY system ORDER BY system",
            params,
        )
        return [LoggedSystem(*row) for row in rows]

    @_sqlite_errors
    def logged_predictions(
        self,
        kind: Kind,
        system: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[PredictionRecord]:
        """The logged predictions (all, or ``system``'s) with ``since`` ≤ time < ``until``, in
        time order (a store of schema version 1 has none)."""
        if self.schema_version < 2:
            return []
        where, params = _window(since, until)
        if system is not None:
            where += " AND system = ?" if where else " WHERE system = ?"
            params += (system,)
        rows = self._db.execute(
            "SELECT time, system, version, text_hash, text, answer, confidence, stage, "
            f"abstained, latency_ms FROM predictions{where} ORDER BY time, rowid",
            params,
        )
        return [
            PredictionRecord(
                time=row[0],
                system=row[1],
                version=row[2],
                text_hash=row[3],
                text=row[4],
                answer="" if row[8] else answer_from_json(json.loads(row[5]), kind),
                confidence=row[6],
                stage=row[7],
                abstained=bool(row[8]),
                latency_ms=row[9],
            )
            for row in rows
        ]

    @_sqlite_errors
    def count_logged_predictions(self) -> int:
        if self.schema_version < 2:
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    # runs ---------------------------------------------------------------------------------
    @_sqlite_errors
    def start_run(self, command: str, **fields: Any) -> str:
        """Record a run as ``running`` with this process (pid, host, start time) in ``stats``;
        first mark earlier runs whose process is gone as ``interrupted``."""
        from stillhouse.provenance import package_versions

        run_id = uuid.uuid4().hex[:12]
        process = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_started": _process_started(os.getpid()),
        }
        with self._transaction() as db:
            self._mark_interrupted(db)
            db.execute(
                "INSERT INTO runs (id, command, started_at, status, task_hash, data_hash, model, "
                "model_sha256, seed, versions, stats) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
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
                    json.dumps(process),
                ),
            )
        return run_id

    @staticmethod
    def _mark_interrupted(db: sqlite3.Connection) -> None:
        """Runs still ``running`` whose process on this host is gone (killed, crashed) become
        ``interrupted``, finished at their last committed annotation (else their start)."""
        host = socket.gethostname()
        gone = []
        for run_id, stats in db.execute("SELECT id, stats FROM runs WHERE status = 'running'"):
            process = json.loads(stats) if stats else {}
            if not isinstance(process, dict) or process.get("host") != host:
                continue  # another machine's run (or one recorded without its process)
            if isinstance(process.get("pid"), int) and _process_gone(
                process["pid"], process.get("process_started")
            ):
                gone.append((json.dumps({**process, "detected_at": time.time()}), run_id))
        db.executemany(
            "UPDATE runs SET status = 'interrupted', stats = ?, finished_at = COALESCE("
            "(SELECT MAX(created_at) FROM annotations WHERE run_id = runs.id), started_at) "
            "WHERE id = ?",
            gone,
        )

    @_sqlite_errors
    def finish_run(self, run_id: str, status: str, stats: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, stats = ? WHERE id = ?",
                (time.time(), status, json.dumps(stats, default=float), run_id),
            )

    @_sqlite_errors
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


# What E209 says for each SQLite result code: the problem, and what to do about it.
_SQLITE_PROBLEMS = {
    sqlite3.SQLITE_FULL: (
        "the disk is full",
        "Free some space on the disk that holds it, then run the command again",
    ),
    sqlite3.SQLITE_IOERR: (
        "reading or writing the disk failed",
        "Check that the disk has free space and is still there, then run the command again",
    ),
    sqlite3.SQLITE_READONLY: (
        "the store is read-only",
        "Make {path} and its folder writable (SQLite also writes {name}-wal and {name}-shm "
        "beside it), then run the command again",
    ),
    sqlite3.SQLITE_CANTOPEN: (
        "the store file cannot be opened",
        "Check that {path} is a file (or not there yet), that its folder exists and that you "
        "may read and write there",
    ),
    sqlite3.SQLITE_PERM: (
        "permission denied",
        "Check that you may read and write {path} and its folder",
    ),
    sqlite3.SQLITE_CORRUPT: (
        "the file is damaged",
        "Restore it from a backup, or save what is readable with `sqlite3 {path} .recover`",
    ),
}
_SQLITE_PROBLEM_OTHER = (
    "SQLite failed",
    "Check the disk's free space and the permissions of {path} and its folder, then run the "
    "command again",
)


def _timeout() -> float:
    """Seconds to wait for another process's lock: ``$STILLHOUSE_STORE_TIMEOUT``, else 30."""
    value = os.environ.get(TIMEOUT_ENVIRONMENT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0.0 <= seconds < float("inf"):
        raise fail(
            Errors.E515,
            what=f"Environment variable {TIMEOUT_ENVIRONMENT_VARIABLE}",
            expected="a number of seconds ≥ 0",
            value=value,
        )
    return seconds


def _version_number(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _window(since: float | None, until: float | None) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause (or "") and its parameters for since ≤ time < until."""
    parts, params = [], []
    if since is not None:
        parts.append("time >= ?")
        params.append(since)
    if until is not None:
        parts.append("time < ?")
        params.append(until)
    return (" WHERE " + " AND ".join(parts) if parts else "", tuple(params))


def _labels_in(answer: Any) -> set[str]:
    """The label names in a stored answer: a label, a list of labels or a list of spans."""
    if isinstance(answer, str):
        return {answer} if answer else set()
    if isinstance(answer, list):
        return {
            item["label"] if isinstance(item, dict) else item
            for item in answer
            if isinstance(item, str) or (isinstance(item, dict) and "label" in item)
        }
    return set()


def _names(labels: Iterable[str]) -> str:
    return ", ".join(repr(label) for label in labels) or "none"


def _excerpts(stored: str, new: str) -> tuple[str, str]:
    """Short quoted excerpts of two texts around where they first differ."""
    at = next(
        (i for i, (a, b) in enumerate(zip(stored, new, strict=False)) if a != b),
        min(len(stored), len(new)),
    )
    start = max(0, at - _EXCERPT // 2)

    def cut(text: str) -> str:
        part = text[start : start + _EXCERPT]
        return repr(("…" if start else "") + part + ("…" if start + _EXCERPT < len(text) else ""))

    return cut(stored), cut(new)


def _process_stat(pid: int) -> list[str] | None:
    """The fields of Linux's ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_started(pid: int) -> int | None:
    """When a process started (clock ticks since boot), so that a reused pid is not taken for
    the process that had it; None where ``/proc`` is not available."""
    fields = _process_stat(pid)
    return None if fields is None else int(fields[19])


def _process_gone(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` (on this host) has ended: no such process, a zombie, or a
    process that started at another time than ``started`` (the pid was reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, run by another user
    fields = _process_stat(pid)
    if fields is None:
        return False
    return fields[0] == "Z" or (started is not None and int(fields[19]) != started)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
