"""Trained models and evaluate's systems in Ray actors, one loaded model per actor.

:class:`RayModel` stands in for a :class:`~stillhouse.train.model.TrainedModel` (predict) or
any :class:`~stillhouse.predictors.Predictor` (evaluate): it carries what the driver needs
(``card``, ``labels``, ``describe()``) and answers batches of texts through the actors, in order.
A model is deterministic given its files, so each batch's predictions are the local run's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from stillhouse.data.records import Prediction
from stillhouse.errors import Errors, fail
from stillhouse.scale.engine import Engine, cluster_workers, connected
from stillhouse.scale.pool import WorkerPool
from stillhouse.task import Task

# texts per actor call when one predict() call is split over the actors (evaluate)
SPLIT_BATCH = 256


def checked_card(path: str | Path, task: Task | None) -> dict[str, Any]:
    """The model folder's card, checked as :func:`stillhouse.train.load.load_model` checks it
    (E720–E723), without loading the model on the driver."""
    from stillhouse.train.load import read_card

    card = read_card(path)
    if task is not None and list(card["labels"]) != task.label_names:
        raise fail(
            Errors.E723,
            path=Path(path),
            found=", ".join(card["labels"]),
            task=task.path or task.name,
            expected=", ".join(task.label_names),
        )
    return card


def _load_folder(path: str, threads: int, task: Task | None) -> Any:
    from stillhouse.train.load import load_model

    return load_model(path, threads=threads, task=task)


def _open_system(name: str, spec: str, task: Task, threads: int) -> Any:
    from stillhouse.serve.systems import open_system

    return open_system(name, spec, task, threads)


def _predict(model: Any, texts: Sequence[str]) -> list[Prediction]:
    return list(model.predict(texts))


def _describe(model: Any) -> dict[str, Any]:
    return dict(model.describe())


class RayModel:
    """A model (``card``, ``labels``) whose copies run in Ray actors. ``pool.batch_nodes``
    records the node of each answered batch."""

    def __init__(
        self, pool: WorkerPool, stack: ExitStack, card: dict[str, Any] | None = None
    ) -> None:
        self.pool = pool
        self.card = card or {}
        self.labels = list(self.card.get("labels", []))
        self._stack = stack
        self._description: dict[str, Any] | None = None

    @classmethod
    def open_folder(cls, path: str | Path, engine: Engine, *, task: Task | None = None) -> RayModel:
        """A model folder written by ``stillhouse train``, checked here, loaded in each actor
        (the folder must be at the same path on every node)."""
        card = checked_card(path, task)
        return cls._start(
            _load_folder,
            (str(Path(path).resolve()), engine.threads, task),
            engine,
            f"the model folder {path}",
            card,
        )

    @classmethod
    def open_system(cls, name: str, spec: str, task: Task, engine: Engine) -> RayModel:
        """An evaluate/serve system spec (``model:DIR``, ``llm:MODEL``, ``cascade:...``)."""
        return cls._start(
            _open_system, (name, spec, task, engine.threads), engine, f"system {name}={spec}", None
        )

    @classmethod
    def _start(
        cls,
        opener: Any,
        args: tuple[Any, ...],
        engine: Engine,
        what: str,
        card: dict[str, Any] | None,
    ) -> RayModel:
        stack = ExitStack()
        try:
            stack.enter_context(connected(engine))
            pool = WorkerPool.start(
                opener, args, workers=cluster_workers(engine), threads=engine.threads, what=what
            )
            stack.callback(pool.close)
        except BaseException:
            stack.close()
            raise
        return cls(pool, stack, card)

    def predict_batches(self, batches: Iterable[Sequence[str]]) -> Iterator[list[Prediction]]:
        """Each batch's predictions, in order, the batches spread over the actors."""
        return self.pool.ordered(_predict, ((list(texts),) for texts in batches))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The Predictor call: ``texts`` cut into batches answered by all actors at once."""
        chunks = [texts[i : i + SPLIT_BATCH] for i in range(0, len(texts), SPLIT_BATCH)]
        return [p for batch in self.predict_batches(chunks) for p in batch]

    def describe(self) -> dict[str, Any]:
        """The model's own description (from the first actor)."""
        if self._description is None:
            self._description = self.pool.result(self.pool.submit(0, _describe))
            self.pool.batch_nodes.pop()
        return self._description

    def close(self) -> None:
        try:
            self.pool.close()
        finally:
            self._stack.close()


# evaluate's systems whose inference runs in actors; preds: files have none, and a cascade
# stays in this process (evaluate reads its stages' routing from the Cascade object itself)
RAY_SOURCES = ("model", "llm")


def open_systems_on_ray(
    specs: Sequence[str], task: Task, engine: Engine
) -> tuple[dict[str, Any], list[RayModel]]:
    """The Predictors of ``--system`` specs (in order) with ``model:`` and ``llm:`` systems in
    Ray actors (the cluster's workers shared between them), the others opened here; and the
    Ray ones, to close. Call inside :func:`stillhouse.scale.engine.connected`."""
    from stillhouse.predictors import open_systems
    from stillhouse.serve.systems import resolve_paths

    split = [(spec, *spec.partition("=")[::2]) for spec in specs]
    remote = [
        (spec, name.strip(), value)
        for spec, name, value in split
        if value.partition(":")[0] in RAY_SOURCES
    ]
    local = (
        open_systems(
            [spec for spec, _, value in split if value.partition(":")[0] not in RAY_SOURCES], task
        )
        if len(remote) < len(specs)
        else {}
    )
    share = replace(engine, workers=max(1, cluster_workers(engine) // max(1, len(remote))))
    opened: list[RayModel] = []
    systems: dict[str, Any] = {}
    try:
        for _spec, name, value in split:
            if value.partition(":")[0] in RAY_SOURCES:
                model = RayModel.open_system(
                    name, resolve_paths(name, value, Path.cwd()), task, share
                )
                opened.append(model)
                systems[name] = model
            else:
                systems[name.strip()] = local[name.strip()]
    except BaseException:
        for model in opened:
            model.close()
        raise
    return systems, opened
