"""``stillhouse serve --engine ray``: the task's systems as a Ray Serve deployment.

A FastAPI ingress (``@serve.ingress``) answers ``POST /v1/predict``, ``GET /v1/systems``,
``/healthz`` and ``/readyz``; each replica opens every system once, and ``@serve.batch`` gathers
the texts of concurrent requests into one model call per system. Requests are read, checked and
answered with the local server's own functions (:mod:`stillhouse.serve.protocol`:
``parse_predict``, ``answer_json``, ``confidence_of``, ``error_body``; the systems through
:mod:`stillhouse.serve.systems`), so the same request gets the same JSON — only ``latency_ms``
differs. Replicas: a fixed number (``--replicas``) or Ray Serve's autoscaling between MIN and
MAX (``--autoscale``). Not here (the local server has them): the prediction log and the review
queue of abstained texts (replicas may run on nodes without the store), /metrics, reload.
"""

# No `from __future__ import annotations`: Ray Serve rebuilds the route methods, and FastAPI must
# see `Request` as a class, not a string it would look up in Ray's module.
import asyncio
import functools
import hmac
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from stillhouse.data.records import Prediction
from stillhouse.errors import Errors, fail
from stillhouse.serve.protocol import (
    ApiError,
    Limits,
    answer_json,
    confidence_of,
    error_body,
    parse_predict,
)
from stillhouse.serve.settings import ServeSettings
from stillhouse.task import Task

APP_NAME = "stillhouse"
_OPEN_PATHS = ("/healthz", "/readyz")


@dataclass(frozen=True)
class Replicas:
    """A fixed ``count`` of replicas, or autoscaling between ``low`` and ``high``."""

    count: int | None = 1
    low: int | None = None
    high: int | None = None

    def options(self) -> dict[str, Any]:
        if self.high is None:
            return {"num_replicas": self.count}
        return {
            "autoscaling_config": {
                "min_replicas": self.low,
                "max_replicas": self.high,
                # a replica per few requests in flight: model calls are short, batches large
                "target_ongoing_requests": 8,
            }
        }


def parse_autoscale(value: str) -> Replicas:
    """``MIN-MAX`` → autoscaling replicas; E953 otherwise."""
    low, dash, high = value.strip().partition("-")
    if not dash or not low.isdigit() or not high.isdigit():
        raise fail(Errors.E953, value=value)
    low_n, high_n = int(low), int(high)
    if low_n > high_n or high_n < 1:
        raise fail(Errors.E953, value=value)
    return Replicas(None, low_n, high_n)


def choose_replicas(replicas: int | None, autoscale: str | None) -> Replicas:
    """From ``--replicas``/``--autoscale`` (E956 both; default one replica)."""
    if replicas is not None and autoscale is not None:
        raise fail(Errors.E956, autoscale=autoscale)
    if autoscale is not None:
        return parse_autoscale(autoscale)
    return Replicas(replicas or 1)


def _json(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
    return Response(
        orjson.dumps(content), status, headers=dict(headers or {}), media_type="application/json"
    )


def _error(error: ApiError) -> Any:
    headers = {name.decode(): value.decode() for name, value in error.headers}
    return Response(error.body(), error.status, headers=headers, media_type="application/json")


def build_deployment(
    task: Task, specs: Mapping[str, str], settings: ServeSettings, replicas: Replicas
) -> Any:
    """The Ray Serve application (bound deployment) serving ``specs`` (name → system spec)."""
    from ray import serve

    api = FastAPI(
        title=f"stillhouse · {task.name} (Ray Serve)",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )

    @serve.deployment(
        name="stillhouse",
        ray_actor_options={"num_cpus": settings.threads or 1},
        max_ongoing_requests=max(64, settings.max_batch * 2),
        **replicas.options(),
    )
    @serve.ingress(api)
    class StillhouseDeployment:
        """One replica: every system opened and warmed up once; texts batched per system."""

        def __init__(self, task: Task, specs: dict[str, str], settings: ServeSettings) -> None:
            import ray

            from stillhouse.serve.systems import describe_system, open_system, warm_up, warm_up_text

            self.task = task
            self.settings = settings
            self.names = list(specs)
            self.default = self.names[0]
            self.limits = Limits(settings.max_texts, settings.max_text_chars, len(task.labels))
            self.token = settings.token.encode() if settings.token else None
            self.node = ray.get_runtime_context().get_node_id()
            self.systems = {
                name: open_system(name, spec, task, settings.threads)
                for name, spec in specs.items()
            }
            text = warm_up_text(task)
            self.summaries = {}
            for name, predictor in self.systems.items():
                warm_up(predictor, text)
                self.summaries[name] = describe_system(predictor)
            self.versions = {name: summary["version"] for name, summary in self.summaries.items()}
            self.specs = dict(specs)
            self.answer_batch.set_max_batch_size(settings.max_batch)
            self.answer_batch.set_batch_wait_timeout_s(settings.max_wait_ms / 1000)

        def _refused(self, request: Request) -> Any | None:
            """The 401 answer when a token is required and not given (as the local server)."""
            if self.token is None or request.url.path in _OPEN_PATHS:
                return None
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), self.token
            ):
                return None
            headers = ((b"www-authenticate", b'Bearer realm="stillhouse"'),)
            return _error(ApiError(401, fail(Errors.E810), headers=headers))

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
        async def answer_batch(self, items: list[tuple[str, str, str | None]]) -> list[Prediction]:
            """(system, text, lang) of concurrent requests → one model call per system (a
            by-lang system told languages gets them as meta fields, as on the local server)."""
            by_system: dict[str, list[int]] = {}
            for position, (system, _, _) in enumerate(items):
                by_system.setdefault(system, []).append(position)
            answers: list[Prediction | None] = [None] * len(items)
            for system, positions in by_system.items():
                texts = [items[i][1] for i in positions]
                langs = [items[i][2] for i in positions]
                predict = self.systems[system].predict
                if any(langs) and getattr(self.systems[system], "reads_meta", False):
                    metas = [{} if lang is None else {"lang": lang} for lang in langs]
                    predict = functools.partial(predict, metas=metas)  # type: ignore[call-arg]
                # on a thread: the replica keeps reading requests while the model works
                predictions = await asyncio.to_thread(predict, texts)
                if len(predictions) != len(texts):
                    raise fail(Errors.E513, name=system, got=len(predictions), expected=len(texts))
                for i, prediction in zip(positions, predictions, strict=True):
                    answers[i] = prediction
            return answers  # type: ignore[return-value]

        @api.post("/v1/predict")
        async def predict(self, request: Request) -> Any:
            started = time.perf_counter()
            refused = self._refused(request)
            if refused is not None:
                return refused
            try:
                body = await request.body()
                if len(body) > self.settings.max_body_bytes:
                    raise ApiError(413, fail(Errors.E811, limit=self.settings.max_body_bytes))
                parsed = parse_predict(body, self.names, self.limits)
                system = parsed.system or self.default
                k = parsed.k or min(self.settings.top_k, self.limits.labels)
                lang = parsed.lang
                try:
                    predictions = await asyncio.wait_for(
                        asyncio.gather(
                            *(self.answer_batch((system, t, lang)) for t in parsed.texts)
                        ),
                        self.settings.timeout_s,
                    )
                except TimeoutError:
                    raise ApiError(
                        504, fail(Errors.E824, timeout=self.settings.timeout_s)
                    ) from None
                latency_ms = (time.perf_counter() - started) * 1000
                kind, version = self.task.kind, self.versions[system]
                answers = [
                    answer_json(
                        p,
                        kind,
                        k=k,
                        version=version,
                        latency_ms=latency_ms,
                        confidence=confidence_of(p, kind),
                    )
                    for p in predictions
                ]
                return _json(
                    {"system": system, "predictions": answers},
                    headers={"x-stillhouse-node": self.node},
                )
            except ApiError as error:
                return _error(error)
            except Exception as error:  # never a traceback in a response
                body = error_body(fail(Errors.E827, kind=type(error).__name__))
                return Response(body, 500, media_type="application/json")

        @api.get("/v1/systems")
        async def systems(self, request: Request) -> Any:
            refused = self._refused(request)
            if refused is not None:
                return refused
            return _json(
                {
                    "systems": [
                        {
                            "name": name,
                            "default": name == self.default,
                            "spec": self.specs[name],
                            "labels": self.task.label_names,
                            **self.summaries[name],
                            "counted_by": "not counted on Ray Serve",
                        }
                        for name in self.names
                    ]
                }
            )

        @api.get("/healthz")
        async def healthz(self) -> Any:
            return _json({"status": "alive"})

        @api.get("/readyz")
        async def readyz(self) -> Any:
            # a replica takes requests only once its constructor has loaded every system
            return _json({"ready": True, "systems": self.versions})

    return StillhouseDeployment.bind(task, dict(specs), settings)


def free_port(host: str) -> int:
    """A port free on ``host`` now (Ray Serve binds its own socket, so --port 0 is resolved here)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_on_ray(
    task: Task,
    specs: Mapping[str, str],
    settings: ServeSettings,
    replicas: Replicas,
    engine: Any,
    say: Any,
) -> None:
    """Deploy on Ray Serve (local instance or ``engine.address``), say where, and serve until
    Ctrl-C; then the application is deleted (and a local Ray instance stopped)."""
    from ray import serve

    from stillhouse.scale.engine import connected
    from stillhouse.serve.systems import resolve_paths

    # replicas run in other folders (and on other nodes): every path made absolute here
    here = Path.cwd()
    specs = {name: resolve_paths(name, spec, here) for name, spec in specs.items()}
    port = settings.port or free_port(settings.host)
    need = (replicas.high or replicas.count or 1) * (settings.threads or 1) + 1  # + the proxy
    with connected(engine, cpus=need):
        serve.start(http_options={"host": settings.host, "port": port}, detached=False)
        try:
            try:
                serve.run(
                    build_deployment(task, specs, settings, replicas),
                    name=APP_NAME,
                    route_prefix="/",
                )
            except RuntimeError as error:  # a replica failed to start: its last line says why
                lines = [line for line in str(error).splitlines() if line.strip()]
                raise fail(Errors.E958, what="the systems", detail=lines[-1]) from None
            shown = f"[{settings.host}]" if ":" in settings.host else settings.host
            how = (
                f"{replicas.count} replica(s)"
                if replicas.high is None
                else f"autoscaling {replicas.low}-{replicas.high} replicas"
            )
            say(f"serving {', '.join(specs)} on Ray Serve ({how}) at http://{shown}:{port}")
            say("ready: every replica has loaded its systems; Ctrl-C stops")
            while True:
                time.sleep(3600)
        finally:
            serve.shutdown()
