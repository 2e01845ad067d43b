"""`stillhouse serve`: the HTTP service of a task's systems (FastAPI + uvicorn), with adaptive
micro-batching, Prometheus metrics, token auth, request limits, atomic reloads and the prediction
log; ``create_app(task, systems, settings)`` returns the ASGI app for embedding.

Modules: ``settings`` (what a server runs with, the thread plan), ``systems`` (specs, opening,
versions, descriptions), ``batching`` (micro-batches on a thread per system), ``runtime``
(loading, answering, reloading), ``protocol`` (request checks, answers, errors, schemas),
``metrics`` (Prometheus), ``app`` (the HTTP layer), ``server`` (sockets, uvicorn, workers),
``prediction_log`` (predictions and abstained texts to the store).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI and friends load only when the app is wanted (the prediction log does not need them)
    if name == "create_app":
        from stillhouse.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from stillhouse.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
