"""Restartable Ray actors, one loaded object (a model) each, fed batches in order.

Every actor is created with ``max_restarts=-1`` and ``max_task_retries=-1``: an actor that dies
(killed with ``ray.kill``, its node lost) is started again by Ray, which loads its model again
and reruns the batches it held. The driver keeps the results by batch, not by actor, and hands
them on in input order, so a restart never loses or repeats a row: the driver commits each
batch once, when its turn comes.

Why plain actors rather than Ray Data's ``map_batches`` with an actor pool: the driver must
commit batches in order, each in one SQLite transaction, while later batches are still being
answered (a killed run keeps what was committed), and annotate looks each batch up in the
driver's cache before any model sees it. Ray Data streams blocks out of order unless told to
preserve it, re-batches rows into its own blocks, and would need the store on every node; a
window of actor calls keeps the local run's batches, order and transactions exactly.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stillhouse.errors import Errors, StillhouseError, fail

# How long actors may take to start and load their model before the run gives up.
READY_TIMEOUT_S = 600.0


class Worker:
    """The body of one actor: ``opener(*args)`` loaded once (the model), then functions applied
    to it. A StillhouseError while loading is kept and reported by :meth:`ready` (an actor whose
    constructor raises would be restarted for ever)."""

    def __init__(self, opener: Callable[..., Any], *args: Any) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.error: tuple[str, str] | None = None
        self.value: Any = None
        try:
            self.value = opener(*args)
        except StillhouseError as error:
            self.error = (error.code, error.message)
        except Exception as error:  # a worker without the files, or another version
            self.error = ("", f"{type(error).__name__}: {error}")

    def ready(self) -> tuple[tuple[str, str] | None, str]:
        """(the loading error or None, this actor's node id)."""
        return self.error, self.node

    def apply(self, function: Callable[..., Any], *args: Any) -> tuple[str, Any]:
        """(node id, ``function(model, *args)``): the node says where the batch ran."""
        return self.node, function(self.value, *args)


@dataclass
class WorkerPool:
    """``workers`` actors of :class:`Worker`, ``threads`` CPUs each. ``batch_nodes`` records the
    node that answered each batch, in the order the results were taken."""

    actors: list[Any]
    what: str
    batch_nodes: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        opener: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        workers: int,
        threads: int,
        what: str,
    ) -> WorkerPool:
        """Start the actors and wait until each has loaded ``opener(*args)``: E960 when the
        cluster has too few CPUs, E958 (or the loader's own error) when a worker cannot load."""
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0))
        if workers * threads > cpus:
            raise fail(
                Errors.E960, workers=workers, threads=threads, need=workers * threads, cpus=cpus
            )
        remote = ray.remote(Worker).options(  # type: ignore[attr-defined]
            num_cpus=threads, max_restarts=-1, max_task_retries=-1
        )
        pool = cls([remote.remote(opener, *args) for _ in range(workers)], what)
        try:
            states = ray.get(
                [actor.ready.remote() for actor in pool.actors], timeout=READY_TIMEOUT_S
            )
        except ray.exceptions.GetTimeoutError:
            pool.close()
            detail = f"the actors did not start within {READY_TIMEOUT_S:.0f} s"
            raise fail(Errors.E958, what=what, detail=detail) from None
        except BaseException:
            pool.close()
            raise
        for error, _node in states:
            if error is not None:
                pool.close()
                code, message = error
                if code:
                    raise StillhouseError(code, message)
                raise fail(Errors.E958, what=what, detail=message)
        return pool

    @property
    def size(self) -> int:
        return len(self.actors)

    def submit(self, index: int, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(model, *args)`` on actor ``index % size``; returns the ObjectRef."""
        return self.actors[index % self.size].apply.remote(function, *args)

    def result(self, ref: Any) -> Any:
        """The value of a submitted call (waits for it), its node recorded."""
        import ray

        node, value = ray.get(ref)
        self.batch_nodes.append(node)
        return value

    def ordered(
        self, function: Callable[..., Any], items: Iterable[tuple[Any, ...]], *, depth: int = 2
    ) -> Iterator[Any]:
        """``function(model, *item)`` for every item, spread round-robin over the actors with at
        most ``depth`` calls queued per actor; results in input order."""
        window: deque[Any] = deque()
        for index, item in enumerate(items):
            window.append(self.submit(index, function, *item))
            if len(window) >= depth * self.size:
                yield self.result(window.popleft())
        while window:
            yield self.result(window.popleft())

    def close(self) -> None:
        """Stop the actors (for good: no restart)."""
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor, no_restart=True)
