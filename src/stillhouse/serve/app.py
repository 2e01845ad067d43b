"""The HTTP layer: :func:`create_app` builds the ASGI app (a FastAPI app) around a
:class:`~stillhouse.serve.runtime.Runtime`.

Endpoints: ``POST /v1/predict``, ``GET /v1/systems``, ``POST /v1/admin/reload``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` and ``GET /openapi.json`` (no /docs or /redoc: those pages load
Swagger UI from a CDN, and this server works offline).

``POST /v1/predict`` is answered on a short path that skips FastAPI's routing and dependency
machinery (it is most of the cost of a request to a fast model): the body is read with its size
limit enforced while reading (413 before the rest of a large body is read), parsed with orjson,
checked (:mod:`stillhouse.serve.protocol`), batched and answered with orjson bytes. The FastAPI
route of the same path documents it in the OpenAPI schema and answers it the same way when the
short path is off (CORS configured: the CORS middleware must see every response).

Security: with a token, every endpoint but ``/healthz`` and ``/readyz`` needs
``Authorization: Bearer <token>`` (compared in constant time); otherwise 401. Every error is
``{"error": {"code", "message"}}`` (:mod:`stillhouse.serve.protocol`), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import stillhouse
from stillhouse.errors import Errors, fail
from stillhouse.predictors import Predictor
from stillhouse.serve.metrics import CONTENT_TYPE, ENDPOINTS
from stillhouse.serve.prediction_log import PredictionLog
from stillhouse.serve.protocol import (
    ApiError,
    ErrorResponse,
    Health,
    PredictResponse,
    Readiness,
    ReloadResponse,
    SystemsResponse,
    error_body,
    parse_predict,
    predict_request_schema,
)
from stillhouse.serve.runtime import Runtime
from stillhouse.serve.settings import ServeSettings
from stillhouse.task import Task

logger = logging.getLogger("stillhouse.serve")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

OPEN_PATHS = ("/healthz", "/readyz")
PREDICT = "/v1/predict"
_JSON = b"application/json"
_UNAUTHORIZED_HEADERS = ((b"www-authenticate", b'Bearer realm="stillhouse"'),)


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def create_app(
    task: Task,
    systems: Mapping[str, str | Predictor],
    settings: ServeSettings | None = None,
    *,
    prediction_log: PredictionLog | None = None,
    reload_on_sighup: bool = False,
    supervisor: int | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    workers_ready: Callable[[], tuple[int, int]] | None = None,
) -> ServeApp:
    """The ASGI app serving ``systems`` (name → ``model:DIR`` / ``llm:MODEL`` /
    ``cascade:...`` spec, opened at start-up and reloadable, or a Predictor served as it is;
    the first is the default) for ``task``.

    Models load in the background when the app starts (its lifespan): /healthz answers at once,
    /readyz is 503 until every system is loaded and warmed up. ``prediction_log``: where
    predictions go (default: a :class:`PredictionLog` on the task's store, with
    ``settings.log_predictions``). ``reload_on_sighup``: reload on SIGHUP (the command line's
    server; an embedding app keeps its signals). ``supervisor``: the process to send SIGHUP to
    for /v1/admin/reload (several workers: it reloads them all). ``on_failure``: called when
    the systems cannot be loaded; ``on_ready``: when they are loaded and warm. ``workers_ready``:
    (workers ready, workers) of the whole server — /readyz is 200 only when all are (several
    worker processes share one socket, and any of them may answer the next request).
    """
    settings = settings or ServeSettings()
    runtime = Runtime(task, systems, settings, prediction_log=prediction_log)
    return ServeApp(
        runtime,
        reload_on_sighup=reload_on_sighup,
        supervisor=supervisor,
        on_failure=on_failure,
        on_ready=on_ready,
        workers_ready=workers_ready,
    )


class ServeApp(FastAPI):
    """A FastAPI app whose ``__call__`` checks the token and answers /v1/predict directly (see
    the module docstring); everything else is FastAPI's. ``runtime`` holds the systems."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        reload_on_sighup: bool = False,
        supervisor: int | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        workers_ready: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        settings = runtime.settings
        super().__init__(
            title=f"stillhouse · {runtime.task.name}",
            version=stillhouse.__version__,
            description=f"Answers `{runtime.task.kind}` texts of task `{runtime.task.name}` "
            f"with: {', '.join(runtime.names)} (default {runtime.default}).",
            docs_url=None,
            redoc_url=None,
            swagger_ui_oauth2_redirect_url=None,
            openapi_url="/openapi.json",
            lifespan=self._lifespan,
        )
        self.runtime = runtime
        self._token = settings.token.encode() if settings.token else None
        self._short_path = not settings.cors_origins
        self._reload_on_sighup = reload_on_sighup
        self._supervisor = supervisor
        self._on_failure = on_failure
        self._on_ready = on_ready
        self._workers_ready = workers_ready
        self._loader: asyncio.Task[None] | None = None
        self._sighup_reloads: set[asyncio.Task[None]] = set()
        self._requests = runtime.metrics.requests
        self._in_flight = runtime.metrics.in_flight
        if settings.cors_origins:
            from fastapi.middleware.cors import CORSMiddleware

            self.add_middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        self._add_routes()
        self.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
        self.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
        self.add_exception_handler(Exception, _internal_error)

    # ------------------------------------------------------------------------------------------
    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        self._in_flight.inc()
        try:
            if self._token is not None and path not in OPEN_PATHS and not self._authorized(scope):
                error = ApiError(401, fail(Errors.E810), headers=_UNAUTHORIZED_HEADERS)
                await _send(send, 401, error.body(), headers=error.headers)
                self._count(path, "-", 401)
            elif self._short_path and path == PREDICT and scope["method"] == "POST":
                status, system, body, headers = await self.answer_predict(scope, receive)
                if body is not None:
                    await _send(send, status, body, headers=headers)
                    self._count(path, system, status)
            else:
                await self._through_fastapi(path, scope, receive, send)
        finally:
            self._in_flight.dec()

    async def _through_fastapi(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500

        async def counting_send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await super().__call__(scope, receive, counting_send)
        finally:
            if path != PREDICT:  # the route counts its own, with the system
                self._count(path, "-", status)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token or b""
                )
        return False

    def _count(self, path: str, system: str, status: int) -> None:
        endpoint = path if path in ENDPOINTS else "other"
        self._requests.labels(endpoint, system, str(status)).inc()

    async def answer_predict(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, str, bytes | None, list[tuple[bytes, bytes]]]:
        """Status, system, body and headers of the answer to a /v1/predict request (body None:
        the client went away before sending its body)."""
        started = time.perf_counter()
        runtime = self.runtime
        system = "-"
        headers: list[tuple[bytes, bytes]] = []
        runtime.arriving += 1
        try:
            try:
                body = await _read_body(scope, receive, runtime.settings.max_body_bytes)
                request = parse_predict(body, runtime.names, runtime.limits)
            finally:
                runtime.arriving -= 1
            system = request.system or runtime.default
            system, payload = await runtime.predict(request, started)
            status = 200
        except ApiError as error:
            status, payload, headers = error.status, error.body(), error.headers
        except _ClientGone:
            return 499, system, None, headers
        except Exception as error:  # never a traceback in a response; the log has it
            logger.exception("stillhouse serve: /v1/predict failed")
            status, payload = 500, error_body(fail(Errors.E827, kind=type(error).__name__))
        if status == 200:
            runtime.served[system].meters["latency"].observe(time.perf_counter() - started)
        return status, system, payload, headers

    # ------------------------------------------------------------------------------------------
    # lifespan: load in the background, reload on SIGHUP, stop cleanly

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        self._loader = loop.create_task(self.runtime.start(self._on_failure))
        self._loader.add_done_callback(self._announce_ready)
        sighup = False
        if self._reload_on_sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, self._sighup)
                sighup = True
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                logger.warning("stillhouse serve: SIGHUP cannot be handled here; use the API")
        try:
            yield
        finally:
            if sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            if not self._loader.done():
                self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
            for task in list(self._sighup_reloads):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.runtime.stop()

    def _announce_ready(self, _loader: asyncio.Task[None]) -> None:
        if self.runtime.ready and self._on_ready is not None:
            self._on_ready()

    def _sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_logged())
        self._sighup_reloads.add(task)
        task.add_done_callback(self._sighup_reloads.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.runtime.reload()
        except ApiError as error:  # the runtime logged why
            logger.warning("stillhouse serve: SIGHUP reload: %s", error.error.message)

    # ------------------------------------------------------------------------------------------
    # routes (and the OpenAPI schema)

    def _add_routes(self) -> None:
        runtime = self.runtime
        errors = {
            status: {"model": ErrorResponse, "description": description}
            for status, description in (
                (400, "The body is not JSON (or not UTF-8)."),
                (401, "No or a wrong bearer token (when the server has one)."),
                (413, "The body is larger than the server's limit."),
                (422, "A field breaks a rule; the message and `field` name it (texts[3])."),
                (500, "The system failed (the server's log has the details)."),
                (503, "Not ready: the systems are still loading."),
                (504, "The prediction took longer than the request timeout."),
            )
        }
        request_body = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": predict_request_schema(runtime.names, runtime.limits)
                }
            },
        }

        @self.post(
            PREDICT,
            response_model=PredictResponse,
            responses=errors,  # type: ignore[arg-type]
            openapi_extra={"requestBody": request_body},
            summary="Answer one text or several",
            tags=["predict"],
        )
        async def predict(request: Request) -> Response:
            """Per text: the label (labels, spans), the top-k calibrated probabilities,
            confidence, whether the cascade abstained, the stage that answered, the system's
            version and the latency."""
            status, system, body, _ = await self.answer_predict(request.scope, request.receive)
            self._count(PREDICT, system, status)
            return Response(body or b"", status, media_type="application/json")

        @self.get(
            "/v1/systems",
            response_model=SystemsResponse,
            responses={k: errors[k] for k in (401, 503)},  # type: ignore[arg-type]
            summary="The systems served",
            tags=["systems"],
        )
        async def systems() -> Response:
            """Each system: spec, labels, version (content hash), recipe, when it was trained,
            a summary of its card, a cascade's stages with their thresholds, and the share of
            texts each stage answered so far."""
            return _json(runtime.systems_json())

        @self.post(
            "/v1/admin/reload",
            response_model=ReloadResponse,
            responses={202: {"model": ReloadResponse, "description": "Requested of every worker."}}
            | {k: errors[k] for k in (401, 500, 503)},  # type: ignore[arg-type]
            summary="Reload the model folders from disk",
            tags=["admin"],
        )
        async def reload() -> Response:
            """Open every system again from its spec and swap them in atomically: requests in
            flight finish on the old models, new ones use the new. With several workers, every
            worker reloads (202: requested)."""
            if self._supervisor is not None:
                os.kill(self._supervisor, signal.SIGHUP)
                body = {"requested": True, "workers": runtime.settings.workers}
                return _json(body, 202)
            return _json(await runtime.reload())

        @self.get(
            "/healthz", response_model=Health, summary="The process is alive", tags=["health"]
        )
        async def healthz() -> Response:
            return _json({"status": "alive"})

        @self.get(
            "/readyz",
            response_model=Readiness,
            responses={503: errors[503]},  # type: ignore[arg-type]
            summary="Every system loaded and warmed up",
            tags=["health"],
        )
        async def readyz() -> Response:
            if not runtime.ready:
                raise ApiError(503, fail(Errors.E823, detail=runtime.loading))
            if self._workers_ready is not None:
                ready, workers = self._workers_ready()
                if ready < workers:
                    detail = f"{ready} of {workers} workers are ready"
                    raise ApiError(503, fail(Errors.E823, detail=detail))
            return _json(runtime.readiness())

        @self.get(
            "/metrics",
            response_class=Response,
            responses={
                200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
                401: errors[401],
            },  # type: ignore[arg-type]
            summary="Prometheus metrics",
            tags=["health"],
        )
        async def metrics() -> Response:
            return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

        self.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with the bearer token declared when the server has one."""
        if self.openapi_schema is not None:
            return self.openapi_schema
        schema = super().openapi()
        if self._token is not None:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
            for path in OPEN_PATHS:
                for operation in schema["paths"].get(path, {}).values():
                    operation["security"] = []
        self.openapi_schema = schema
        return schema


# ----------------------------------------------------------------------------------------------
# helpers


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from
    Content-Length before reading, else while reading (the rest is never read)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > limit:
                raise ApiError(413, fail(Errors.E811, limit=limit))
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, fail(Errors.E811, limit=limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, *, headers: list[tuple[bytes, bytes]] | tuple = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _JSON),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


async def _api_error(request: Request, error: ApiError) -> Response:
    headers = {name.decode(): value.decode() for name, value in error.headers}
    return Response(error.body(), error.status, headers=headers, media_type="application/json")


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    method, path = request.method, request.url.path
    if error.status_code == 404:
        failure = fail(Errors.E825, method=method, path=path)
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        failure = fail(Errors.E826, method=method, path=path, allowed=allowed)
    else:
        failure = fail(Errors.E829, detail=str(error.detail), status=error.status_code)
    return Response(
        error_body(failure),
        error.status_code,
        headers=dict(error.headers or {}),
        media_type="application/json",
    )


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    failure = fail(Errors.E829, detail="the request does not match the schema", status=422)
    return Response(error_body(failure), 422, media_type="application/json")


async def _internal_error(request: Request, error: Exception) -> Response:
    logger.error("stillhouse serve: %s %s failed", request.method, request.url.path, exc_info=error)
    failure = fail(Errors.E827, kind=type(error).__name__)
    return Response(error_body(failure), 500, media_type="application/json")
