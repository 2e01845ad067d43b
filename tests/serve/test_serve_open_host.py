"""`--insecure` on an open address: the server binds 0.0.0.0 without a token, answers, and says
at start that anyone who reaches it may call every endpoint (without --insecure it is refused:
tests/bad_input/cases.py)."""

from __future__ import annotations

import pytest
from serve_support import kill, start_server

pytestmark = pytest.mark.slow


def test_an_open_address_without_a_token_serves_and_warns(serve_folder, cli_env) -> None:
    folder = serve_folder("open", '\n[serve.systems]\nlin = "model:models/small"\n')
    server = start_server(
        folder, "--task", "task.toml", "--host", "0.0.0.0", "--insecure", env=cli_env
    )
    try:
        assert server.url.startswith("http://0.0.0.0:")
        with server.client() as client:
            answer = client.post("/v1/predict", json={"text": "The food was lovely."})
            assert answer.status_code == 200 and answer.json()["predictions"][0]["label"]
            assert client.get("/metrics").status_code == 200  # no token asked
        said = " ".join(server.output().split())
        assert "NO TOKEN on an open address (--insecure)" in said
    finally:
        kill(server)
