"""What a server does, apart from HTTP: load and warm up its systems, answer texts through their
batchers, count and log what they answered, and reload model folders without dropping a request.

- **Loading.** :meth:`Runtime.start` opens every system on a thread (so /healthz answers at
  once), holds the runtimes to the thread budget, runs one warm-up prediction through every part
  of every system, opens the prediction log, and only then is the runtime ``ready``.
- **Answering.** :meth:`Runtime.predict` queues a request's texts with its system's
  :class:`~stillhouse.serve.batching.Batcher`; the batch runs on the system's thread, which also
  writes each answer's JSON, counts stages, abstentions and confidences, and hands the batch to
  the prediction log (which only queues: a request never waits on the disk). A request that
  outlives ``timeout_s`` is answered 504 (its texts are dropped if not yet started).
- **Reloading.** :meth:`Runtime.reload` opens and warms up the systems again from their specs,
  then swaps them in with one assignment: requests that already chose a system finish on the
  old one (its batcher answers what it holds, then closes it), new requests use the new one,
  and none fails. If anything fails to load, the systems in service stay (E828).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from stillhouse.data.records import Prediction
from stillhouse.errors import Errors, StillhouseError, fail
from stillhouse.predictors import Predictor
from stillhouse.serve.batching import Batcher, Job
from stillhouse.serve.metrics import ServeMetrics
from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog
from stillhouse.serve.protocol import (
    ApiError,
    Limits,
    PredictRequest,
    answer_json,
    confidence_of,
    flagged_guard,
)
from stillhouse.serve.settings import ServeSettings, ThreadPlan, available_cores, limit_threads
from stillhouse.serve.systems import (
    close_system,
    describe_system,
    is_llm_stage,
    open_system,
    stage_names,
    warm_up,
    warm_up_text,
)
from stillhouse.task import Task

logger = logging.getLogger("stillhouse.serve")


@dataclass
class Served:
    """One system in service: what answers (``predictor``), its version and description, the
    batcher that feeds it, and the metric series bound to its name."""

    name: str
    spec: str | None
    predictor: Predictor
    version: str
    summary: dict[str, Any]
    loaded_at: str
    stages: list[str]
    first_llm_stage: int | None
    batcher: Batcher | None = None
    meters: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Opened:
    predictor: Predictor
    version: str
    summary: dict[str, Any]
    loaded_at: str


class Runtime:
    """The systems of one server process (see the module docstring). ``systems``: name → a
    spec (``model:DIR``, ``llm:MODEL``, ``cascade:...``; opened here and reloadable) or a
    Predictor (served as it is); the first is the default."""

    def __init__(
        self,
        task: Task,
        systems: Mapping[str, str | Predictor],
        settings: ServeSettings,
        *,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        if not systems:
            raise fail(Errors.E801, path=task.path or "task.toml")
        self.task = task
        self.settings = settings
        self.sources = dict(systems)
        self.names = list(systems)
        self.default = self.names[0]
        self.kind = task.kind
        self.limits = Limits(settings.max_texts, settings.max_text_chars, len(task.labels))
        self.served: dict[str, Served] = {}
        self.ready = False
        self.loading = "loading the systems"
        self.failure: BaseException | None = None
        self.arriving = 0  # /v1/predict requests read but not yet queued (see Batcher)
        self.log = prediction_log
        self._own_log = prediction_log is None
        self.metrics = ServeMetrics(self.names, log_stats=self._log_stats)
        self._counts = {name: {"answered": Tally(), "abstained": 0} for name in self.names}
        self._counts_lock = threading.Lock()
        self._reload_lock: asyncio.Lock | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._max_wait_s = settings.max_wait_ms / 1000
        # batch lanes of `model:` systems: from the thread plan (an embedding app without one: 1)
        self._lanes = (
            1
            if settings.threads is None
            else ThreadPlan(available_cores(), settings.workers, settings.threads).lanes
        )

    # ------------------------------------------------------------------------------------------
    # loading, reloading, stopping

    async def start(self, on_failure: Callable[[BaseException], None] | None = None) -> None:
        """Open and warm up every system (on a thread), then become ready. A failure is kept in
        ``failure``, logged, and handed to ``on_failure`` (the CLI stops the server with it)."""
        self._reload_lock = asyncio.Lock()
        started = time.perf_counter()
        try:
            opened = await asyncio.to_thread(self._open, self.sources, True)
        except Exception as error:
            self.failure = error
            self.loading = f"loading failed: {_message(error)}"
            logger.error("stillhouse serve: %s", _message(error))
            if on_failure is not None:
                on_failure(error)
            return
        self.served = {name: self._serve(name, item) for name, item in opened.items()}
        self.ready = True
        self.loading = "ready"
        versions = ", ".join(f"{name} {served.version}" for name, served in self.served.items())
        seconds = time.perf_counter() - started
        logger.info(
            "stillhouse serve: ready in %.1f s (pid %d): %s", seconds, os.getpid(), versions
        )

    def _open(self, sources: Mapping[str, str | Predictor], first: bool) -> dict[str, _Opened]:
        """Open (specs) and warm up every system; on the first load also limit the threads and
        open the prediction log. Runs on a thread; closes what it opened if anything fails."""
        opened: dict[str, _Opened] = {}
        text = warm_up_text(self.task)
        try:
            for name, source in sources.items():
                self.loading = f"loading system `{name}`"
                predictor = (
                    open_system(name, source, self.task, self.settings.threads)
                    if isinstance(source, str)
                    else source
                )
                loaded_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                opened[name] = _Opened(predictor, "", {}, loaded_at)
            if first and self.settings.threads is not None:
                limit_threads(self.settings.threads)  # after loading: the libraries are loaded
            for name, item in opened.items():
                self.loading = f"warming up system `{name}`"
                warm_up(item.predictor, text)
                item.summary = describe_system(item.predictor)
                item.version = item.summary["version"]
            if first and self.log is None:
                self.loading = "opening the prediction log"
                self.log = PredictionLog(
                    self.task,
                    policy=self.settings.log_predictions,
                    log_texts=self.settings.log_texts,
                )
        except BaseException:
            for name, item in opened.items():
                if isinstance(sources[name], str):
                    close_system(item.predictor)
            raise
        return opened

    def _serve(self, name: str, opened: _Opened) -> Served:
        stages = stage_names(opened.predictor)
        llm = [i for i, stage in enumerate(stages) if is_llm_stage(stage)]
        source = self.sources[name]
        served = Served(
            name=name,
            spec=source if isinstance(source, str) else None,
            predictor=opened.predictor,
            version=opened.version,
            summary=opened.summary,
            loaded_at=opened.loaded_at,
            stages=stages,
            first_llm_stage=llm[0] if llm else None,
        )
        metrics = self.metrics
        served.meters = {
            "batch": metrics.batch_size.labels(name),
            "confidence": metrics.confidence.labels(name),
            "latency": metrics.latency.labels(name),
            "abstained": metrics.abstained.labels(name),
            "llm": metrics.llm.labels(name),
        }
        served.batcher = Batcher(
            name,
            lambda jobs: self._run_batch(served, jobs),
            max_batch=self.settings.max_batch,
            max_wait_s=self._max_wait_s,
            arriving=lambda: self.arriving,
            lanes=self._lanes if served.spec and served.spec.startswith("model:") else 1,
        )
        return served

    async def reload(self) -> dict[str, Any]:
        """Open every system given as a spec again (model folders as they are on disk now), warm
        them up and swap them in (see the module docstring); E823 before the first load is
        done, E828 when something fails to load (nothing is swapped)."""
        if not self.ready or self._reload_lock is None:
            raise ApiError(503, fail(Errors.E823, detail=self.loading))
        async with self._reload_lock:
            started = time.perf_counter()
            sources = {name: s for name, s in self.sources.items() if isinstance(s, str)}
            try:
                opened = await asyncio.to_thread(self._open, sources, False)
            except Exception as error:
                self.metrics.reloads.labels("failed").inc()
                logger.error("stillhouse serve: reload failed: %s", _message(error))
                raise ApiError(500, fail(Errors.E828, detail=_message(error))) from None
            old = self.served
            self.served = {**old, **{name: self._serve(name, o) for name, o in opened.items()}}
            for name in opened:
                self._in_background(self._retire(old[name]))
            self.metrics.reloads.labels("ok").inc()
            reloaded = [
                {"name": name, "before": old[name].version, "after": self.served[name].version}
                for name in opened
            ]
            logger.info("stillhouse serve: reloaded %s", reloaded)
            return {"reloaded": reloaded, "seconds": round(time.perf_counter() - started, 3)}

    async def _retire(self, served: Served) -> None:
        """Let a replaced system answer what it holds, then close it."""
        if served.batcher is not None:
            await served.batcher.close()
        if served.spec is not None:
            await asyncio.to_thread(close_system, served.predictor)

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Answer what is queued, close every system, flush the prediction log."""
        self.ready = False
        for served in self.served.values():
            await self._retire(served)
        for task in list(self._background):
            await task
        if self.log is not None and self._own_log:
            await asyncio.to_thread(self.log.close)
        self.metrics.close()

    # ------------------------------------------------------------------------------------------
    # answering

    async def predict(self, request: PredictRequest, started: float) -> tuple[str, bytes]:
        """The JSON answer to a checked request (``started``: its arrival, perf_counter), and
        the system's name. :class:`ApiError` 503 before ready, 504 after ``timeout_s``, 500 if
        the system fails."""
        if not self.ready:
            raise ApiError(503, fail(Errors.E823, detail=self.loading))
        served = self.served[request.system or self.default]
        futures = served.batcher.submit(  # type: ignore[union-attr]
            request.texts,
            request.k or min(self.settings.top_k, self.limits.labels),
            started,
            request.lang,
        )
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.settings.timeout_s, self._time_out, futures)
        try:
            if len(futures) == 1:
                answers = await futures[0]
            else:
                answers = [answer for future in futures for answer in await future]
        except (ApiError, asyncio.CancelledError):
            raise
        except Exception as error:
            logger.exception("stillhouse serve: system `%s` failed", served.name)
            raise ApiError(500, fail(Errors.E827, kind=type(error).__name__)) from None
        finally:
            timer.cancel()
        return served.name, orjson.dumps({"system": served.name, "predictions": answers})

    def _time_out(self, futures: list[asyncio.Future[Any]]) -> None:
        error = ApiError(504, fail(Errors.E824, timeout=self.settings.timeout_s))
        for future in futures:
            if not future.done():
                future.set_exception(error)

    def _run_batch(self, served: Served, jobs: list[Job]) -> list[list[dict[str, Any]]]:
        """One model call for the jobs' texts, on the system's thread: each job's answers (JSON
        objects), counted and handed to the prediction log."""
        texts = [text for job in jobs for text in job.texts]
        told = any(job.lang is not None for job in jobs)
        if told and getattr(served.predictor, "reads_meta", False):  # a by-lang system
            metas = [
                {} if job.lang is None else {"lang": job.lang} for job in jobs for _ in job.texts
            ]
            predictions: list[Prediction] = served.predictor.predict(texts, metas=metas)  # type: ignore[call-arg]
        else:
            predictions = served.predictor.predict(texts)
        if len(predictions) != len(texts):
            raise fail(Errors.E513, name=served.name, got=len(predictions), expected=len(texts))
        done = time.perf_counter()
        now = time.time()
        meters = served.meters
        meters["batch"].observe(len(texts))
        kind, version, name = self.kind, served.version, served.name
        default_stage = (served.spec or "model").partition(":")[0]
        answered: Tally[str] = Tally()
        flagged: Tally[str] = Tally()  # [guard] action -> texts flagged as injection
        abstained = reached_llm = 0
        logged: list[LoggedPrediction] = []
        results: list[list[dict[str, Any]]] = []
        position = 0
        for job in jobs:
            latency_ms = (done - job.started) * 1000
            answers = []
            for text in job.texts:
                prediction = predictions[position]
                position += 1
                info = prediction.info
                confidence = confidence_of(prediction, kind)
                stage = info.get("stage")
                is_abstained = bool(info.get("abstained", False))
                if is_abstained:
                    abstained += 1
                else:
                    answered[stage or default_stage] += 1
                if served.first_llm_stage is not None:
                    reached_llm += info.get("stages_tried", 0) > served.first_llm_stage
                if confidence is not None:
                    meters["confidence"].observe(confidence)
                guard = flagged_guard(prediction)
                if guard is not None:
                    flagged[str(guard.get("action"))] += 1
                answers.append(
                    answer_json(
                        prediction,
                        kind,
                        k=job.k,
                        version=version,
                        latency_ms=latency_ms,
                        confidence=confidence,
                    )
                )
                logged.append(
                    LoggedPrediction(
                        time=now,
                        system=name,
                        version=version,
                        text=text,
                        answer=prediction.answer,
                        probs=prediction.probs,
                        confidence=confidence,
                        stage=stage,
                        abstained=is_abstained,
                        latency_ms=latency_ms,
                    )
                )
            results.append(answers)
        for stage, count in answered.items():
            self.metrics.answered.labels(name, stage).inc(count)
        for action, count in flagged.items():
            self.metrics.guard_flagged.labels(name, action).inc(count)
        if abstained:
            meters["abstained"].inc(abstained)
        if reached_llm:
            meters["llm"].inc(reached_llm)
        with self._counts_lock:
            counts = self._counts[name]
            counts["answered"].update(answered)
            counts["abstained"] += abstained
        if self.log is not None:
            self.log.record(logged)
        return results

    # ------------------------------------------------------------------------------------------
    # what the endpoints report

    def readiness(self) -> dict[str, Any]:
        return {"ready": True, "systems": {n: s.version for n, s in self.served.items()}}

    def systems_json(self) -> dict[str, Any]:
        """Every system: its spec, labels, version, when it was loaded, the summary of its card
        (a cascade: per stage, with thresholds) and the share of texts each stage answered so
        far in this process."""
        if not self.ready:
            raise ApiError(503, fail(Errors.E823, detail=self.loading))
        systems = []
        for name, served in self.served.items():
            with self._counts_lock:
                answered = dict(self._counts[name]["answered"])
                abstained = self._counts[name]["abstained"]
            total = sum(answered.values()) + abstained
            summary = dict(served.summary)
            if "stages" in summary:
                summary["stages"] = [
                    {
                        **stage,
                        "answered": answered.get(stage["name"], 0),
                        "share": answered.get(stage["name"], 0) / total if total else None,
                    }
                    for stage in summary["stages"]
                ]
            systems.append(
                {
                    "name": name,
                    "default": name == self.default,
                    "spec": served.spec,
                    "labels": self.task.label_names,
                    **summary,
                    "loaded_at": served.loaded_at,
                    "reloadable": served.spec is not None,
                    "texts": total,
                    "answered": answered,
                    "abstained": abstained,
                    "abstained_share": abstained / total if total else None,
                    "counted_by": "this worker process"
                    if self.settings.workers > 1
                    else "this server",
                }
            )
        return {"default": self.default, "systems": systems}

    def _log_stats(self) -> dict[str, int]:
        return self.log.stats() if self.log is not None else {}


def _message(error: BaseException) -> str:
    """A failure in words: a StillhouseError's message with its code, else the exception."""
    if isinstance(error, StillhouseError):
        return str(error)
    return f"{type(error).__name__}: {error}"
