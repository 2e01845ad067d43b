"""annotate's LLM in Ray actors: :class:`RayLLM` stands in for the backend on the driver.

Each actor opens the model once (:func:`stillhouse.llm.backend.open_backend`). The driver keeps
everything that touches the store: for each batch an actor cuts the texts and builds the
prompts and cache keys (:func:`stillhouse.llm.batches.prepare_batch`, which needs the model's
tokenizer), the driver looks the keys up in its cache, and an actor answers the rest
(:func:`stillhouse.llm.answer.answer_many`). Label scoring is independent of which texts share a
batch or ran before (see :mod:`stillhouse.llm.backends.llamacpp`), so the answers are the local
run's, bit for bit, whichever actor gives them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.data.records import Example
from stillhouse.errors import Errors, fail
from stillhouse.llm.answer import LLMAnswer, Method, answer_many
from stillhouse.llm.backend import Backend, BackendSettings, open_backend
from stillhouse.llm.batches import AnsweredBatch, CacheLookup, PreparedBatch, prepare_batch
from stillhouse.llm.prompts import ChatPrompt
from stillhouse.scale.engine import Engine, cluster_workers, connected
from stillhouse.scale.pool import WorkerPool
from stillhouse.task import Task

# Backend methods the driver may call directly (content-free calibration, describe): run on
# the first actor.
_FORWARDED = frozenset(
    {
        "score_labels",
        "score_labels_many",
        "score_yes_no",
        "score_yes_no_many",
        "generate",
        "truncate",
        "describe",
    }
)


def _identity(backend: Backend) -> dict[str, Any]:
    return {
        "name": backend.name,
        "model_name": backend.model_name,
        "model_sha256": backend.model_sha256,
        "can_score": backend.can_score,
        "tolerance": getattr(backend, "tolerance", None),
    }


def _call(backend: Backend, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return getattr(backend, name)(*args, **kwargs)


def _prepare(
    backend: Backend,
    task: Task,
    method: str,
    batch: Sequence[Example],
    neighbours: Sequence[Sequence[Example]],
) -> PreparedBatch:
    return prepare_batch(backend, task, method, batch, neighbours)


def _answer(
    backend: Backend,
    task: Task,
    method: Method,
    prior: np.ndarray | None,
    prompts: Sequence[ChatPrompt],
    texts: Sequence[str],
) -> list[LLMAnswer]:
    return answer_many(backend, task, prompts, texts, method, prior)


class RayLLM:
    """The driver's view of a backend whose model runs in Ray actors: the identity a run records
    (``name``, ``model_sha256``, …), :meth:`answer_batches` for annotate's loop, and the
    backend's methods forwarded to the first actor. ``pool.batch_nodes``: the node of each
    answered batch."""

    privacy = None  # in-process models only: nothing leaves the cluster

    def __init__(self, pool: WorkerPool, identity: dict[str, Any], stack: ExitStack) -> None:
        self.pool = pool
        self.name: str = identity["name"]
        self.model_name: str = identity["model_name"]
        self.model_sha256: str = identity["model_sha256"]
        self.can_score: bool = identity["can_score"]
        self.tolerance = identity["tolerance"]
        self._stack = stack

    def __getattr__(self, name: str) -> Any:
        if name not in _FORWARDED:
            raise AttributeError(name)

        def forwarded(*args: Any, **kwargs: Any) -> Any:
            return self.pool.result(self.pool.submit(0, _call, name, args, kwargs))

        return forwarded

    def answer_batches(
        self,
        task: Task,
        method: Method,
        prior: np.ndarray | None,
        batches: Iterable[tuple[Sequence[Example], Sequence[Sequence[Example]]]],
        lookup: CacheLookup,
    ) -> Iterator[AnsweredBatch]:
        """As :func:`stillhouse.llm.batches.answer_batches`, spread over the actors, in order.

        Each actor holds one batch being answered and the next one queued behind it; the next
        batch's preparation is queued on an actor *before* that actor's answer, so it is ready
        when the driver needs it and no actor waits for the driver's cache look-up.
        """
        import ray

        task_ref = ray.put(task)
        prior_ref = ray.put(prior)
        pending = iter(batches)
        size = self.pool.size
        preparing: deque[Any] = deque()

        def prepare_next(index: int) -> None:
            item = next(pending, None)
            if item is not None:
                batch, neighbours = item
                preparing.append(
                    self.pool.submit(index, _prepare, task_ref, method, list(batch), neighbours)
                )

        for index in range(size):
            prepare_next(index)
        in_flight: deque[tuple[PreparedBatch, dict[str, Any], list[int], Any]] = deque()
        index = 0
        while preparing:
            prepared: PreparedBatch = ray.get(preparing.popleft())[1]
            cached = lookup(prepared.keys)
            missing = [i for i, key in enumerate(prepared.keys) if key not in cached]
            prepare_next(index)  # queued before this batch's answer on the same actor
            ref = None
            if missing:
                ref = self.pool.submit(
                    index,
                    _answer,
                    task_ref,
                    method,
                    prior_ref,
                    [prepared.prompts[i] for i in missing],
                    [prepared.texts[i] for i in missing],
                )
            in_flight.append((prepared, cached, missing, ref))
            index += 1
            while len(in_flight) > size:
                yield self._collect(in_flight.popleft())
        while in_flight:
            yield self._collect(in_flight.popleft())

    def _collect(
        self, entry: tuple[PreparedBatch, dict[str, Any], list[int], Any]
    ) -> AnsweredBatch:
        prepared, cached, missing, ref = entry
        answers = self.pool.result(ref) if ref is not None else []
        return prepared, cached, dict(zip(missing, answers, strict=True))

    def close(self) -> None:
        """Stop the actors, and the local Ray instance if this run started it."""
        try:
            self.pool.close()
        finally:
            self._stack.close()


def open_ray_llm(spec: str, settings: BackendSettings, task: Task, engine: Engine) -> RayLLM:
    """Connect to Ray and start ``engine.workers`` actors with model ``spec`` loaded
    (``engine.threads`` llama.cpp threads each). E957 for a remote ``openai:`` model."""
    if spec.startswith("openai:"):
        raise fail(Errors.E957, spec=spec)
    if spec.endswith(".gguf"):  # actors run in another folder (or on another node)
        spec = str(Path(spec).expanduser().resolve())
    stack = ExitStack()
    try:
        stack.enter_context(connected(engine))
        pool = WorkerPool.start(
            open_backend,
            (spec, replace(settings, threads=engine.threads)),
            workers=cluster_workers(engine),
            threads=engine.threads,
            what=f"the model {spec}",
        )
        stack.callback(pool.close)
        identity = pool.result(pool.submit(0, _identity))
        pool.batch_nodes.clear()
    except BaseException:
        stack.close()
        raise
    return RayLLM(pool, identity, stack)
