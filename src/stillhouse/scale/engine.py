"""Which engine runs a command's inference, and the connection to Ray.

``--engine local`` (the default) runs everything in this process. ``--engine ray`` runs the
models in Ray actors: ``--ray-address`` left out starts a local Ray instance for the run (stopped
at its end); ``auto`` joins the cluster this machine belongs to; ``ray://HOST:PORT`` goes
through Ray Client; ``HOST:PORT`` names a head node's GCS port.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stillhouse.errors import Errors, fail

ENGINES = ("local", "ray")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
# Ray's own log noise off the user's terminal (stillhouse prints its own summary).
_QUIET_ENV = {"RAY_DEDUP_LOGS": "1"}


@dataclass(frozen=True)
class Engine:
    """``kind``: local or ray; ``address``: None (start a local instance), ``auto``,
    ``ray://...`` or ``HOST:PORT``; ``workers``: actors to start (None: one per CPU of the
    cluster, as each actor takes ``threads`` CPUs); ``threads``: CPUs (and model threads) per
    actor."""

    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    threads: int = 1

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"


def check_address(value: str) -> str:
    """``value`` if it is a Ray address (see the module docstring), else E950."""
    text = value.strip()
    if text == "auto":
        return text
    rest = text.removeprefix("ray://")
    match = _HOST_PORT.match(rest)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise fail(Errors.E950, value=value)
    return text


def make_engine(
    kind: str,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> Engine:
    """The checked engine of ``--engine``/``--ray-address``/``--ray-workers``: E955 an unknown
    engine, E954 a Ray option with ``local``, E950 a bad address, E951 Ray not installed."""
    if kind not in ENGINES:
        raise fail(Errors.E955, value=kind)
    if kind == "local":
        if address is not None:
            raise fail(Errors.E954, option="--ray-address")
        if workers is not None:
            raise fail(Errors.E954, option="--ray-workers")
        return Engine()
    if address is not None:
        address = check_address(address)
    require_ray()
    return Engine("ray", address, workers, threads or 1)


def require_ray() -> None:
    """E951 unless Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError as error:
        raise fail(Errors.E951, detail=str(error)) from None


@contextmanager
def connected(engine: Engine, *, cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected for the block: an existing connection is used as it is; else
    ``engine.address`` is joined, or a local instance with ``cpus`` CPUs (default: the actors'
    need, at most this machine's cores) is started and stopped again at the end. E952 when the
    cluster cannot be reached."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    os.environ.update({k: v for k, v in _QUIET_ENV.items() if k not in os.environ})
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        "namespace": "stillhouse",
    }
    if engine.address is None:
        need = (engine.workers or os.cpu_count() or 1) * engine.threads
        options["num_cpus"] = cpus or need
    try:
        ray.init(address=engine.address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        raise fail(Errors.E952, address=engine.address or "local", detail=str(error)) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_workers(engine: Engine) -> int:
    """The actors to start: ``engine.workers``, else as many as the cluster's CPUs allow
    (``threads`` CPUs each), at least one."""
    import ray

    if engine.workers is not None:
        return engine.workers
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, cpus // engine.threads)
