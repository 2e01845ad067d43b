"""What a server runs with: :class:`ServeSettings` (address, workers and threads, the token,
batching, request limits, the prediction log), read from task.toml's ``[serve]`` section with the
command line's overrides, and checked before anything starts (E802–E808, E830).

The thread plan keeps ``workers × threads ≤ cores``: every runtime that runs its own thread pool
(ONNX Runtime sessions, llama.cpp, BLAS under NumPy/SciPy, torch) gets the same per-worker
budget, so N workers never start N × cores threads that fight over the cores. By default one
core per worker is left to its event loop (HTTP, JSON, batching): ONNX Runtime's pool threads
spin while they wait, and on 2 cores an `encoder` server with 2 intra-op threads answered 71
requests/s at 8 connections against 150 with 1 (bench/serve.py).
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stillhouse.errors import Errors, fail
from stillhouse.paths import require_file
from stillhouse.task import Task

TOKEN_ENVIRONMENT_VARIABLE = "STILLHOUSE_TOKEN"
# The [serve] keys that ServeSettings takes over as they are (systems are opened elsewhere).
_FROM_TASK = (
    "max_batch",
    "max_wait_ms",
    "max_texts",
    "max_text_chars",
    "max_body_bytes",
    "timeout_s",
    "top_k",
    "log_predictions",
    "log_texts",
    "cors_origins",
)


@dataclass(frozen=True)
class ServeSettings:
    """How one server runs. ``threads``: intra-op threads per worker (None: cores // workers);
    ``token``: the bearer token every endpoint but /healthz and /readyz requires (None: open);
    ``max_wait_ms``: how long a batch may wait for requests already arriving (never for a lone
    request); limits are per request; ``log_predictions``: ``all``, ``none`` or ``sample:P``."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None
    token: str | None = field(default=None, repr=False)
    insecure: bool = False
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_texts: int = 256
    max_text_chars: int = 10_000
    max_body_bytes: int = 1 << 20
    timeout_s: float = 30.0
    top_k: int = 5
    log_predictions: str = "all"
    log_texts: bool = False
    cors_origins: tuple[str, ...] = ()
    access_log: bool = False

    @classmethod
    def from_task(cls, task: Task, **overrides: Any) -> ServeSettings:
        """The task's ``[serve]`` values, then every override that is not None."""
        values: dict[str, Any] = {key: getattr(task.serve, key) for key in _FROM_TASK}
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def with_values(self, **changes: Any) -> ServeSettings:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """Every setting but the token (workers get that from the environment)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "token"}

    @classmethod
    def from_json(cls, values: dict[str, Any], token: str | None) -> ServeSettings:
        values = {**values, "cors_origins": tuple(values.get("cors_origins", ()))}
        return cls(**values, token=token)

    def check(self) -> ServeSettings:
        """Raise E807 for a value out of range, E830 for an unknown log policy, E802 for a
        non-loopback host without a token (unless ``insecure``); return self."""
        from stillhouse.serve.prediction_log import parse_policy

        ranges: list[tuple[str, Any, bool, str]] = [
            ("--port", self.port, 0 <= self.port <= 65535, "a port from 0 (any free one) to 65535"),
            ("--workers", self.workers, self.workers >= 1, "at least 1"),
            ("--max-batch", self.max_batch, 1 <= self.max_batch <= 4096, "from 1 to 4096"),
            (
                "--max-wait-ms",
                self.max_wait_ms,
                math.isfinite(self.max_wait_ms) and 0 <= self.max_wait_ms <= 1000,
                "from 0 to 1000",
            ),
            ("[serve].max_texts", self.max_texts, self.max_texts >= 1, "at least 1"),
            ("[serve].max_text_chars", self.max_text_chars, self.max_text_chars >= 1, "at least 1"),
            (
                "[serve].max_body_bytes",
                self.max_body_bytes,
                self.max_body_bytes >= 1024,
                "at least 1024",
            ),
            (
                "[serve].timeout_s",
                self.timeout_s,
                math.isfinite(self.timeout_s) and self.timeout_s > 0,
                "above 0",
            ),
            ("[serve].top_k", self.top_k, self.top_k >= 1, "at least 1"),
        ]
        if self.threads is not None:
            ranges.append(("--threads", self.threads, self.threads >= 1, "at least 1"))
        for what, value, good, expected in ranges:
            if not good:
                raise fail(Errors.E807, what=what, expected=expected, value=value)
        parse_policy(self.log_predictions)
        if not self.token and not self.insecure and not is_loopback(self.host):
            raise fail(Errors.E802, host=self.host)
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:  # a host name: loopback only when every address it resolves to is
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def read_token(token_file: Path | None, environ: dict[str, str] | None = None) -> str | None:
    """The bearer token: the first line of ``token_file`` (E803 missing, E804 not a file,
    E805 empty), else ``$STILLHOUSE_TOKEN`` (E805 when set but empty), else None. Surrounding
    whitespace is not part of it; characters a header cannot carry are E808."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    if token_file is not None:
        path = require_file(Path(token_file), Errors.E803, Errors.E804)
        token = path.read_text(encoding="utf-8", errors="replace").strip()
        source = f"Token file {path}"
    elif TOKEN_ENVIRONMENT_VARIABLE in environ:  # type: ignore[operator]
        token = environ[TOKEN_ENVIRONMENT_VARIABLE].strip()  # type: ignore[index]
        source = f"${TOKEN_ENVIRONMENT_VARIABLE}"
    else:
        return None
    if not token:
        raise fail(Errors.E805, source=source)
    bad = [c for c in token if not (32 < ord(c) < 127)]
    if bad:
        what = "spaces or line breaks" if all(c.isspace() for c in bad) else f"{bad[0]!r}"
        raise fail(Errors.E808, path=token_file or f"${TOKEN_ENVIRONMENT_VARIABLE}", what=what)
    return token


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    """``threads`` intra-op threads for each of ``workers`` processes on ``cores`` cores."""

    cores: int
    workers: int
    threads: int

    @property
    def lanes(self) -> int:
        """Batch lanes of each `model:` system: as many batches in flight as a worker's cores
        hold of ``threads`` each (2 on 2 cores with the default plan: the int8 encoder then
        answered 272 / 318 req/s at 8 / 32 connections against 141 / 176 with one lane, and
        `linear` the same within the noise). Cascades and LLMs keep one (llama.cpp and a
        cascade's counts are not for two threads at once)."""
        return max(1, (self.cores // self.workers) // self.threads)

    def describe(self) -> str:
        worker = "worker" if self.workers == 1 else "workers"
        thread = "thread" if self.threads == 1 else "threads"
        line = (
            f"{self.cores} cores: {self.workers} {worker} × {self.threads} intra-op {thread} "
            "each (ONNX Runtime, llama.cpp, BLAS, torch)"
        )
        spare = self.cores - self.workers * self.threads
        if spare > 0:
            line += f", {spare} left for the event {'loop' if self.workers == 1 else 'loops'}"
        if self.workers * self.threads > self.cores:
            line += f"; more workers than cores: {self.workers * self.threads} threads compete"
        if self.lanes > 1:
            line += f"; `model:` systems run {self.lanes} batches at once"
        return line


def plan_threads(workers: int, threads: int | None, cores: int | None = None) -> ThreadPlan:
    """Threads per worker so that workers × threads ≤ cores: by default ``cores // workers``
    less one core for the worker's event loop (at least 1); an explicit ``threads`` may take
    that core too, beyond it is E807."""
    cores = cores or available_cores()
    if threads is None:
        return ThreadPlan(cores, workers, max(1, cores // workers - 1))
    if workers * threads > cores:
        most = max(1, cores // workers)
        raise fail(
            Errors.E807,
            what="--threads",
            expected=f"at most {most} with --workers {workers} on {cores} cores "
            "(workers × threads ≤ cores, or the threads fight over the cores)",
            value=threads,
        )
    return ThreadPlan(cores, workers, threads)


# Environment variables the BLAS and OpenMP runtimes read when they load (workers start fresh).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_threads(threads: int) -> dict[str, Any]:
    """Hold this process's thread pools to ``threads``: the environment (for runtimes loaded
    later), BLAS/OpenMP already loaded (threadpoolctl) and torch if it is loaded. Returns what
    was set, for the start-up line."""
    import sys

    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    limited: dict[str, Any] = {"blas": threads}
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        limited["torch"] = threads
    return limited
