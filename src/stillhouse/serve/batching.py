"""Adaptive micro-batching: concurrent requests for one system become one ``predict`` call, made on
the system's own thread so the event loop keeps accepting requests.

A :class:`Batcher` owns ``lanes`` worker threads (one by default) and a queue of jobs (a
request's texts, or a ``max_batch`` slice of them). Each lane's runner takes everything queued,
up to ``max_batch`` texts, as one batch, runs it on its thread, hands each job its results and
starts over; with two lanes a second batch forms and runs while the first is on the other core
(a model whose runtime leaves the GIL, as ONNX Runtime does, then uses both). So:

- a lone request never waits: with nothing in flight and nothing queued, its batch starts at
  once (batching costs nothing at concurrency 1);
- while a batch runs, new requests queue up and go together into the next one: the busier the
  system, the bigger its batches (as BentoML's adaptive batching and Ray Serve's
  ``@serve.batch`` do);
- when other requests are already arriving (read, not yet queued: ``arriving()``) the runner
  waits for them at most ``max_wait_s`` before it starts a batch that is not full.

A job whose future is already done (its request timed out) is skipped, not predicted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Job:
    """Texts of one request (or a slice of one), what to answer them with, and its future."""

    texts: Sequence[str]
    k: int
    started: float  # time.perf_counter() when the request arrived
    future: asyncio.Future[Any] = field(repr=False)
    lang: str | None = None  # the request's language (a by-lang system routes by it)


class Batcher:
    """Gathers jobs into batches for ``run_batch(jobs) -> one result per job``, which runs on a
    thread of its own (see the module docstring)."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Job]], list[Any]],
        *,
        max_batch: int,
        max_wait_s: float,
        arriving: Callable[[], int] = lambda: 0,
        lanes: int = 1,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._arriving = arriving
        self._queue: deque[Job] = deque()
        self._queued_texts = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self.lanes = max(1, lanes)
        self._executor = ThreadPoolExecutor(self.lanes, thread_name_prefix=f"stillhouse-{name}")
        self._loop = asyncio.get_running_loop()
        self._runners = [
            self._loop.create_task(self._run(), name=f"batcher-{name}-{lane}")
            for lane in range(self.lanes)
        ]
        self.batches = 0

    def submit(
        self, texts: Sequence[str], k: int, started: float, lang: str | None = None
    ) -> list[asyncio.Future[Any]]:
        """Queue ``texts`` (in slices of at most ``max_batch``); one future per slice, whose
        result is ``run_batch``'s for it. Call from the event loop."""
        if self._closing:
            raise RuntimeError(f"batcher {self.name} is closed")
        futures = []
        for start in range(0, len(texts), self.max_batch):
            future: asyncio.Future[Any] = self._loop.create_future()
            chunk = texts[start : start + self.max_batch]
            self._queue.append(Job(chunk, k, started, future, lang))
            self._queued_texts += len(chunk)
            futures.append(future)
        self._wakeup.set()
        return futures

    async def close(self) -> None:
        """Answer everything queued, then stop the thread (a retired system's batcher)."""
        self._closing = True
        self._wakeup.set()
        await asyncio.gather(*self._runners)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._gather_arriving()
            jobs = self._take()
            if not jobs:
                continue
            try:
                results = await self._loop.run_in_executor(self._executor, self._run_batch, jobs)
            except asyncio.CancelledError:
                for job in jobs:
                    job.future.cancel()
                raise
            except Exception as error:  # the jobs' requests answer it; the runner goes on
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            finally:
                self.batches += 1
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)

    async def _gather_arriving(self) -> None:
        """Wait at most ``max_wait_s`` for requests already arriving, while the batch is not full."""
        if self.max_wait_s <= 0 or not self._arriving():
            return
        deadline = time.monotonic() + self.max_wait_s
        while self._arriving() and self._queued_texts < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[Job]:
        """Queued jobs up to ``max_batch`` texts (at least one job), skipping abandoned ones."""
        jobs: list[Job] = []
        size = 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # its request timed out or went away
                self._queue.popleft()
                self._queued_texts -= len(job.texts)
                continue
            if jobs and size + len(job.texts) > self.max_batch:
                break
            self._queue.popleft()
            self._queued_texts -= len(job.texts)
            jobs.append(job)
            size += len(job.texts)
        return jobs
