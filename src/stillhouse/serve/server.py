"""Running a server process: the socket, uvicorn, worker processes, signals and threads.

:func:`run_server` binds the address first (a port in use is E806 before anything loads), plans
threads so that workers × threads ≤ cores, then runs uvicorn (uvloop and httptools when
installed, access log off unless asked for):

- **one worker**: the app runs in this process; SIGHUP reloads the model folders;
- **N workers**: uvicorn's supervisor starts N processes on the one socket, each building the
  app through :func:`app_from_environment` from the configuration in ``$STILLHOUSE_SERVE`` (the
  token travels in ``$STILLHOUSE_TOKEN``); SIGHUP to the supervisor (or /v1/admin/reload on any
  worker) is passed to every worker, which reloads in place — no process restarts, no request
  dropped; /metrics adds up all workers (prometheus-client's multiprocess mode, in a private
  temporary folder); /readyz is 200 only once every worker is ready (each leaves a file named
  by its pid in that folder), since any of them may take the next request.

Systems that fail to load after the server started (rare: the folders were checked before)
stop it with the error, exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stillhouse.errors import StillhouseError
from stillhouse.serve.metrics import MULTIPROCESS_VARIABLE
from stillhouse.serve.prediction_log import PredictionLog
from stillhouse.serve.settings import (
    THREAD_VARIABLES,
    TOKEN_ENVIRONMENT_VARIABLE,
    ServeSettings,
    ThreadPlan,
    is_loopback,
)
from stillhouse.task import Task

CONFIG_VARIABLE = "STILLHOUSE_SERVE"
logger = logging.getLogger("stillhouse.serve")


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free one); E806 when that is impossible
    (in use, not an address of this machine, no permission)."""
    from stillhouse.errors import Errors, fail

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise fail(Errors.E806, host=host, port=port, detail=error.strerror or str(error)) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        detail = error.strerror or str(error)
        if error.errno == 98:  # EADDRINUSE
            detail = "the port is in use by another program"
        raise fail(Errors.E806, host=host, port=port, detail=detail) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def configure_logging() -> None:
    """The server's own messages (loading, ready, reloads, the prediction log) on stderr."""
    serve_logger = logging.getLogger("stillhouse.serve")
    if not any(getattr(h, "_stillhouse", False) for h in serve_logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._stillhouse = True  # type: ignore[attr-defined]
        serve_logger.addHandler(handler)
    serve_logger.setLevel(logging.INFO)
    serve_logger.propagate = False


def _uvicorn_config(app: Any, settings: ServeSettings, **extra: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        lifespan="on",
        access_log=settings.access_log,
        log_level="warning",
        timeout_graceful_shutdown=max(5, int(settings.timeout_s) + 1),
        **extra,
    )


def run_server(
    task: Task,
    systems: Mapping[str, str],
    settings: ServeSettings,
    sock: socket.socket,
    plan: ThreadPlan,
    *,
    prediction_log: PredictionLog | None = None,
) -> None:
    """Serve until stopped (Ctrl-C, SIGTERM); ``settings.threads`` is the plan's. Raises the
    error that stopped it when the systems could not be loaded."""
    configure_logging()
    if settings.workers == 1:
        _run_one(task, systems, settings, sock, prediction_log)
    else:
        _run_workers(task, systems, settings, sock, plan)


def _run_one(
    task: Task,
    systems: Mapping[str, str],
    settings: ServeSettings,
    sock: socket.socket,
    prediction_log: PredictionLog | None,
) -> None:
    import uvicorn

    from stillhouse.serve.app import create_app

    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop(error: BaseException) -> None:
        failures.append(error)
        if server is not None:
            server.should_exit = True

    app = create_app(
        task,
        systems,
        settings,
        prediction_log=prediction_log,
        reload_on_sighup=True,
        on_failure=stop,
    )
    server = uvicorn.Server(_uvicorn_config(app, settings))
    server.run(sockets=[sock])
    if failures:
        raise _as_error(failures[0])


def _as_error(error: BaseException) -> BaseException:
    return error if isinstance(error, StillhouseError | OSError) else RuntimeError(str(error))


class _Supervisor:
    """uvicorn's worker supervisor, with SIGHUP passed on to every worker (each reloads in
    place) instead of restarting them, SIGUSR1 from a worker that could not load its systems
    stopping them all, and Ctrl-C ending as it does with one worker (KeyboardInterrupt once the
    workers have stopped, so the command says what was kept and exits 130)."""

    def __init__(self, config: Any, sock: socket.socket) -> None:
        from uvicorn.supervisors.multiprocess import Multiprocess

        supervisor = self

        class Supervisor(Multiprocess):
            def handle_hup(self) -> None:
                logger.info("stillhouse serve: SIGHUP: every worker reloads its systems")
                for process in self.processes:
                    if process.pid is not None:
                        os.kill(process.pid, signal.SIGHUP)

            def handle_usr1(self) -> None:
                supervisor.failed = True
                self.should_exit.set()

            def handle_int(self) -> None:
                supervisor.interrupted = True
                super().handle_int()

        self.failed = False
        self.interrupted = False
        self._multiprocess = Supervisor(config, sockets=[sock])

    def run(self) -> None:
        self._multiprocess.run()
        if self.interrupted and not self.failed:
            raise KeyboardInterrupt


def _run_workers(
    task: Task,
    systems: Mapping[str, str],
    settings: ServeSettings,
    sock: socket.socket,
    plan: ThreadPlan,
) -> None:
    run_folder = Path(tempfile.mkdtemp(prefix="stillhouse-serve-"))
    metrics_folder = run_folder / "metrics"
    metrics_folder.mkdir()
    failure_file = run_folder / "failure.txt"
    ready_folder = run_folder / "ready"  # a file per worker process that is ready, named by pid
    ready_folder.mkdir()
    saved = {name: os.environ.get(name) for name in _WORKER_VARIABLES}
    try:
        os.environ[MULTIPROCESS_VARIABLE] = str(metrics_folder)
        for name in THREAD_VARIABLES:  # read by BLAS / OpenMP when a worker loads them
            os.environ[name] = str(plan.threads)
        if settings.token:
            os.environ[TOKEN_ENVIRONMENT_VARIABLE] = settings.token
        os.environ[CONFIG_VARIABLE] = json.dumps(
            {
                "task": str(task.path),
                "systems": dict(systems),
                "settings": settings.to_json(),
                "supervisor": os.getpid(),
                "failure_file": str(failure_file),
                "ready_folder": str(ready_folder),
            }
        )
        config = _uvicorn_config(
            "stillhouse.serve.server:app_from_environment",
            settings,
            factory=True,
            workers=settings.workers,
        )
        supervisor = _Supervisor(config, sock)
        supervisor.run()
        if supervisor.failed and failure_file.exists():
            code, _, message = failure_file.read_text(encoding="utf-8").partition("\n")
            raise StillhouseError(code, message) if code else RuntimeError(message)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(run_folder, ignore_errors=True)


_WORKER_VARIABLES = (
    MULTIPROCESS_VARIABLE,
    CONFIG_VARIABLE,
    TOKEN_ENVIRONMENT_VARIABLE,
    *THREAD_VARIABLES,
)


def app_from_environment() -> Any:
    """The app of one worker process, from ``$STILLHOUSE_SERVE`` (uvicorn calls this factory in
    each worker)."""
    from stillhouse.serve.app import create_app
    from stillhouse.task import load_task

    configure_logging()
    config = json.loads(os.environ[CONFIG_VARIABLE])
    task = load_task(config["task"])
    settings = ServeSettings.from_json(
        config["settings"], token=os.environ.get(TOKEN_ENVIRONMENT_VARIABLE)
    )
    supervisor = int(config["supervisor"])
    failure_file = Path(config["failure_file"])
    ready_folder = Path(config["ready_folder"])
    lock = threading.Lock()

    def mark_ready() -> None:
        (ready_folder / str(os.getpid())).touch()

    def workers_ready() -> tuple[int, int]:
        # a worker the supervisor replaced left its file behind: count live processes only
        ready = sum(1 for marker in ready_folder.iterdir() if _alive(int(marker.name)))
        return ready, settings.workers

    def stop_all(error: BaseException) -> None:
        with lock:
            code = error.code if isinstance(error, StillhouseError) else ""
            message = error.message if isinstance(error, StillhouseError) else str(error)
            failure_file.write_text(f"{code}\n{message}", encoding="utf-8")
        os.kill(supervisor, signal.SIGUSR1)

    return create_app(
        task,
        config["systems"],
        settings,
        reload_on_sighup=True,
        supervisor=supervisor,
        on_failure=stop_all,
        on_ready=mark_ready,
        workers_ready=workers_ready,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (a reused pid)
        return True
    return True


def describe_start(
    task: Task,
    systems: Mapping[str, str],
    settings: ServeSettings,
    url: str,
    plan: ThreadPlan,
) -> list[str]:
    """The lines printed when the server starts."""
    names = ", ".join(f"{name} ({spec})" for name, spec in systems.items())
    default = next(iter(systems))
    token = "a bearer token is required" if settings.token else "no token (open)"
    if not settings.token and not is_loopback(settings.host):
        token = "NO TOKEN on an open address (--insecure): anyone who reaches it may call every endpoint"
    policy = settings.log_predictions + (" with texts" if settings.log_texts else "")
    runtime = _runtimes()
    return [
        f"serving task {task.name}: {names}; default {default}",
        f"listening on {url} ({token}); {runtime}",
        plan.describe(),
        f"batches of at most {settings.max_batch} texts, waiting at most "
        f"{settings.max_wait_ms:g} ms for requests already arriving; timeout {settings.timeout_s:g} s",
        f"prediction log: {policy} → {task.store_path} (abstained texts → review queue "
        "`abstained`)",
        "GET /readyz answers 200 once every system is loaded and warm; Ctrl-C stops",
    ]


def _runtimes() -> str:
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn with {loop} and {http}"
