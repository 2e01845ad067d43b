"""A real `stillhouse serve` for the tests: the command in a subprocess on a free port of
127.0.0.1 (the port the server chose, read from what it prints), talked to with httpx; and the
small linear models the servers serve, trained on the bundled NusaX rows."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from stillhouse.serve.server import bind, url_of

REPO = Path(__file__).resolve().parents[2]
NUSAX = REPO / "examples" / "nusax-sentiment-en"
LISTENING = re.compile(r"listening on (http://\S+) ")


def nusax_train_rows(count: int) -> list[dict[str, Any]]:
    with (NUSAX / "train.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[:count]


def nusax_test_texts(count: int) -> list[str]:
    with (NUSAX / "test.csv").open(encoding="utf-8", newline="") as handle:
        return [row["text"] for row in list(csv.DictReader(handle))[:count]]


@dataclass
class Server:
    """A `stillhouse serve` process: ``url`` once it listens; its output in files."""

    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path
    token: str | None = None

    def client(self, token: str | None = None, timeout: float = 30) -> httpx.Client:
        """A client of the server, sending ``token`` (default: the server's, if any)."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8") + self.stderr.read_text(encoding="utf-8")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"the server stopped:\n{self.output()}"
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout} s:\n{self.output()}")

    def stop(self) -> int:
        """Ctrl-C's signal (SIGINT) and the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError(f"no stop on SIGINT:\n{self.output()}") from None
        return self.process.returncode


def start_server(
    folder: Path,
    *args: str,
    env: dict[str, str],
    token: str | None = None,
    ready: bool = True,
    timeout: float = 90,
) -> Server:
    """Run ``stillhouse serve --port 0 ARGS`` in ``folder`` and wait until it listens (and, with
    ``ready``, until /readyz answers 200)."""
    stdout, stderr = folder / "serve.out", folder / "serve.err"
    environment = {**env, "PYTHONUNBUFFERED": "1"}
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stillhouse.cli", "serve", "--port", "0", *args],
            cwd=folder,
            env=environment,
            stdout=out,
            stderr=err,
        )
    deadline = time.monotonic() + timeout
    url = None
    while url is None:
        found = LISTENING.search(stdout.read_text(encoding="utf-8"))
        if found:
            url = found.group(1)
        elif process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(
                "the server did not start:\n"
                + stdout.read_text(encoding="utf-8")
                + stderr.read_text(encoding="utf-8")
            )
        else:
            time.sleep(0.05)
    server = Server(process, url, stdout, stderr, token)
    if ready:
        server.wait_ready(timeout)
    return server


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        found_name, _, rest = series.partition("{")
        if found_name != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(value)
    return 0.0


def kill(server: Server) -> None:
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on a real uvicorn server in a thread, on a free port of 127.0.0.1: its URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
