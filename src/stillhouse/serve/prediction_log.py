"""The prediction log: what a served system answered, written to the workspace store in the
background, so that no request waits on a disk flush.

:meth:`PredictionLog.record` only appends to an in-memory queue (under a lock, microseconds). A
background thread writes the queue to the store's ``predictions`` table in one transaction per
flush, every ``flush_seconds`` (0.5 s) or as soon as ``flush_records`` (500) are waiting,
whichever comes first. So ``kill -9`` of the server loses at most the predictions not yet
committed (the last batch), and the store stays a consistent SQLite file (WAL mode).

- **Policy.** ``all`` logs every prediction, ``none`` none, ``sample:P`` each with probability
  P (0 < P ≤ 1, drawn independently). Texts are stored only with ``log_texts``; otherwise a
  row holds the text's hash (:func:`~stillhouse.data.records.text_id`) only.
- **Abstentions go to review, whatever the policy.** Every abstained prediction's text is added
  to ``examples`` and to the review queue ``abstained`` with its stage probabilities and reason
  ``abstained`` — people cannot review a text they cannot read, so these texts are stored even
  without ``log_texts`` (and with policy ``none``).
- **Never blocking, never silent.** The queue is bounded (``max_queued``, 20,000 predictions):
  when the disk cannot keep up, further predictions are dropped and counted (``dropped``)
  rather than making a request wait or memory grow. A busy store (another process holds the
  write lock beyond the store's timeout) or a failing disk is retried after ``retry_pauses``;
  a batch that still cannot be written is counted in ``failed`` and logged as a warning
  (logger ``stillhouse.serve.prediction_log``).
- **Several processes.** Each server worker process makes its own PredictionLog (after the
  fork); SQLite's WAL mode and busy timeout let them append to one store at once.

:meth:`PredictionLog.stats` counts predictions: every prediction given to :meth:`record` is
``sampled_out`` (the policy logs no row for it), ``queued`` (waiting or being written),
``written`` (its row is committed) or ``failed`` (its row was lost: ``dropped`` for a full
queue, the store failing, or recorded after :meth:`close`). Abstained texts bound for the
review queue are counted apart: ``review_written`` and ``review_failed``.
"""

from __future__ import annotations

import atexit
import logging
import math
import random
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stillhouse.data.records import text_id
from stillhouse.data.store import AbstainedText, PredictionRecord, Store
from stillhouse.errors import Errors, StillhouseError, fail
from stillhouse.task import Task

FLUSH_SECONDS = 0.5
FLUSH_RECORDS = 500
MAX_QUEUED = 20_000
# At most this many predictions per transaction when a backlog is written.
MAX_BATCH = 5_000
# Pauses before the 2nd, 3rd and 4th attempt at a batch the store refused (busy, disk).
RETRY_PAUSES = (0.5, 2.0, 5.0)
POLICIES = "all, none, sample:P (0 < P ≤ 1)"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedPrediction:
    """One prediction as the server made it.

    ``time``: seconds since the epoch; ``answer``: a label, a tuple of labels or a tuple of
    :class:`~stillhouse.data.records.Span` (``""`` when abstained); ``probs``: the answering
    stage's per-label probabilities (kept for abstained texts, in the review queue);
    ``confidence``: the probability of the answer (for an abstention, of the best label);
    ``stage``: the cascade stage that answered (None for a single model)."""

    time: float
    system: str
    version: str
    text: str
    answer: Any
    probs: dict[str, float] | None
    confidence: float | None
    stage: str | None
    abstained: bool
    latency_ms: float


def parse_policy(policy: str) -> float:
    """The share of predictions a policy logs: ``all`` 1, ``none`` 0, ``sample:P`` P; E830."""
    text = policy.strip() if isinstance(policy, str) else ""
    if text == "all":
        return 1.0
    if text == "none":
        return 0.0
    name, colon, value = text.partition(":")
    if name == "sample" and colon:
        try:
            share = float(value)
        except ValueError:
            share = math.nan
        if 0.0 < share <= 1.0:
            return share
    raise fail(Errors.E830, policy=policy)


class PredictionLog:
    """Logs a task's predictions into its workspace store (``task.store_path``) in the
    background; see the module docstring. The store is opened, migrated and checked against the
    task when the log is made, so E203–E209 surface here, not in a request. Use as a context
    manager or call :meth:`close` (it is also called at interpreter exit)."""

    def __init__(
        self,
        task: Task,
        *,
        policy: str = "all",
        log_texts: bool = False,
        flush_seconds: float = FLUSH_SECONDS,
        flush_records: int = FLUSH_RECORDS,
        max_queued: int = MAX_QUEUED,
        retry_pauses: Sequence[float] = RETRY_PAUSES,
        store_timeout: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.task = task
        self.policy = policy
        self.log_texts = log_texts
        self._share = parse_policy(policy)
        self._flush_seconds = flush_seconds
        self._flush_records = flush_records
        self._max_queued = max_queued
        self._retry_pauses = tuple(retry_pauses)
        self._store_timeout = store_timeout
        self._random = random.Random(seed)
        self._pending: deque[tuple[LoggedPrediction, bool]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._counts: Counter[str] = Counter()
        self._in_flight = 0
        self._closed = False
        self._warned_closed = False
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="stillhouse-prediction-log", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error
        atexit.register(self.close)

    # the request side ------------------------------------------------------------------------
    def record(self, predictions: Sequence[LoggedPrediction]) -> None:
        """Queue ``predictions`` for the store; returns at once (never waits on the disk)."""
        with self._lock:
            if self._closed:
                self._count_lost(predictions, dropped=False)
                if not self._warned_closed:
                    self._warned_closed = True
                    logger.warning("predictions recorded after the prediction log was closed")
                return
            for prediction in predictions:
                logged = self._share >= 1.0 or (
                    self._share > 0.0 and self._random.random() < self._share
                )
                if not logged:
                    self._counts["sampled_out"] += 1
                    if not prediction.abstained:
                        continue
                if len(self._pending) >= self._max_queued:
                    self._counts["dropped"] += 1
                    self._counts["failed"] += int(logged)
                    self._counts["review_failed"] += int(prediction.abstained)
                    continue
                self._pending.append((prediction, logged))
            if len(self._pending) >= self._flush_records:
                self._wake.set()

    def _count_lost(self, predictions: Sequence[LoggedPrediction], *, dropped: bool) -> None:
        for prediction in predictions:
            self._counts["failed"] += 1
            self._counts["dropped"] += int(dropped)
            self._counts["review_failed"] += int(prediction.abstained)

    def stats(self) -> dict[str, int]:
        """``queued``, ``written``, ``sampled_out``, ``failed`` (of which ``dropped``: lost to
        a full queue), ``review_written`` and ``review_failed`` (abstained texts)."""
        with self._lock:
            queued = sum(logged for _, logged in self._pending) + self._in_flight
            keys = (
                "written",
                "sampled_out",
                "failed",
                "dropped",
                "review_written",
                "review_failed",
            )
            return {"queued": queued, **{key: self._counts[key] for key in keys}}

    def close(self) -> None:
        """Write what is queued, then stop the writer (blocks until it is written or failed)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        atexit.unregister(self.close)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            store = Store.for_task(self.task, create=True, timeout=self._store_timeout)
        except BaseException as error:  # handed to the constructor, which raises it
            self._open_error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self._wake.wait(self._flush_seconds)
                self._wake.clear()
                self._flush(store)
            self._flush(store)
        finally:
            store.close()

    def _flush(self, store: Store) -> None:
        """Write everything queued, in transactions of at most MAX_BATCH predictions."""
        while True:
            with self._lock:
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
                self._in_flight = sum(logged for _, logged in batch)
            if not batch:
                return
            try:
                self._write(store, batch)
            finally:
                with self._lock:
                    self._in_flight = 0

    def _write(self, store: Store, batch: list[tuple[LoggedPrediction, bool]]) -> None:
        try:
            records = [self._record(p) for p, logged in batch if logged]
            abstained = [_abstained_text(p) for p, _ in batch if p.abstained]
        except Exception as error:  # a malformed prediction must not stop the writer
            self._lose(batch, f"a prediction could not be stored ({error!r})")
            return
        pauses = [*self._retry_pauses, None]
        for pause in pauses:
            try:
                refused = store.log_predictions(records, self.task.kind, abstained)
            except (StillhouseError, sqlite3.Error, TypeError, ValueError) as error:
                if pause is None:
                    self._lose(batch, str(error))
                    return
                time.sleep(pause)
                continue
            with self._lock:
                self._counts["written"] += len(records)
                self._counts["review_written"] += len(abstained) - refused
                self._counts["review_failed"] += refused
            if refused:
                logger.warning(
                    "%d abstained text(s) not queued for review: their id holds another text",
                    refused,
                )
            return

    def _lose(self, batch: list[tuple[LoggedPrediction, bool]], why: str) -> None:
        rows = sum(logged for _, logged in batch)
        texts = sum(p.abstained for p, _ in batch)
        with self._lock:
            self._counts["failed"] += rows
            self._counts["review_failed"] += texts
        logger.warning(
            "prediction log: %d prediction(s) and %d abstained text(s) not written to %s: %s",
            rows,
            texts,
            self.task.store_path,
            why,
        )

    def _record(self, prediction: LoggedPrediction) -> PredictionRecord:
        return PredictionRecord(
            time=float(prediction.time),
            system=str(prediction.system),
            version=str(prediction.version),
            text_hash=text_id(prediction.text),
            text=prediction.text if self.log_texts else None,
            answer=prediction.answer,
            confidence=None if prediction.confidence is None else float(prediction.confidence),
            stage=prediction.stage,
            abstained=bool(prediction.abstained),
            latency_ms=float(prediction.latency_ms),
        )


def _abstained_text(prediction: LoggedPrediction) -> AbstainedText:
    confidence = prediction.confidence
    info: dict[str, Any] = {
        "system": prediction.system,
        "version": prediction.version,
        "stage": prediction.stage,
        "confidence": confidence,
        "time": prediction.time,
    }
    probs = None if prediction.probs is None else {k: float(v) for k, v in prediction.probs.items()}
    priority = 1.0 - float(confidence) if confidence is not None else 1.0
    return AbstainedText(prediction.text, probs, info, round(priority, 6))
