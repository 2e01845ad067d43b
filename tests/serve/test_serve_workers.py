"""`stillhouse serve --workers 2`: two real worker processes on one socket, their threads planned
within the cores, the token from $STILLHOUSE_TOKEN in each, /metrics adding up both, and a
reload that reaches both."""

from __future__ import annotations

import re
import time

import pytest
from serve_support import metric_value, nusax_test_texts, start_server

pytestmark = pytest.mark.slow


def test_two_workers_share_the_cores_the_metrics_and_the_reloads(serve_folder, cli_env) -> None:
    folder = serve_folder("workers", '\n[serve.systems]\nlin = "model:models/big"\n')
    server = start_server(
        *(folder, "--task", "task.toml", "--workers", "2", "--log-predictions", "none"),
        env={**cli_env, "STILLHOUSE_TOKEN": "token-from-the-environment"},
        token="token-from-the-environment",
    )
    try:
        printed = server.stdout.read_text(encoding="utf-8")
        plan = re.search(r"(\d+) cores: 2 workers × (\d+) intra-op", printed)
        assert plan, printed
        cores, threads = map(int, plan.groups())
        assert threads == max(1, cores // 2 - 1)
        with server.client(token="wrong") as stranger:  # every worker holds the token
            for _ in range(4):
                assert stranger.post("/v1/predict", json={"text": "hi"}).status_code == 401
        with server.client() as client:
            for text in nusax_test_texts(20):
                assert client.post("/v1/predict", json={"text": text}).status_code == 200
            metrics = client.get("/metrics").text
            ok = {"endpoint": "/v1/predict", "system": "lin", "status": "200"}
            assert metric_value(metrics, "stillhouse_requests_total", **ok) == 20  # both workers
            assert metric_value(metrics, "stillhouse_batch_size_count", system="lin") == 20
            requested = client.post("/v1/admin/reload")
            assert requested.status_code == 202
            assert requested.json() == {"requested": True, "workers": 2}
            deadline = time.monotonic() + 60
            reloads = 0.0
            while reloads < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                metrics = client.get("/metrics").text
                reloads = metric_value(metrics, "stillhouse_reloads_total", outcome="ok")
            assert reloads == 2  # each worker reloaded once
            assert client.post("/v1/predict", json={"text": "after"}).status_code == 200
        pids = set(re.findall(r"ready in [\d.]+ s \(pid (\d+)\)", server.output()))
        assert len(pids) == 2
    finally:
        assert server.stop() == 130, server.output()  # Ctrl-C ends N workers as it ends one
    assert "Traceback" not in server.output() and "stopped: " in server.output()
