"""A real llama_cpp.server (OpenAI-compatible) running SmolLM2-135M on 127.0.0.1, for the tests
of the openai backend and of what it sends (tests/llm, tests/guard)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stillhouse.llm.models import resolve_embedded


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the server, yield its base URL (``http://127.0.0.1:PORT/v1``), stop it: the body
    of a fixture (``yield from run_llama_server(tmp_path_factory)``)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    model = str(resolve_embedded("smollm2-135m"))
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "2048"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(server, base_url, log_path)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(server: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    log_tail = log_path.read_text(errors="replace")[-4000:]
    print(log_tail)
    pytest.fail(f"llama_cpp.server did not come up (exit code {server.poll()}):\n{log_tail}")
