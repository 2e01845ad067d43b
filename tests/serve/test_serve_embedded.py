"""`stillhouse.serve.create_app` embedded: the ASGI app on a real uvicorn server (a thread of this
process, a free port of 127.0.0.1), serving a real model through a gate the test opens — so
readiness before and after warm-up, 503 while loading and 504 past the timeout are seen for sure,
not by chance of timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from serve_support import metric_value, serving

from stillhouse.data.records import Prediction
from stillhouse.serve import ServeSettings, create_app
from stillhouse.serve.prediction_log import PredictionLog
from stillhouse.task import load_task
from stillhouse.train import load_model


class Gated:
    """A real model whose predictions wait until ``gate`` is open (the test's hand on it)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.card = model.card
        self.gate = threading.Event()
        self.calls = 0

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls += 1
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return self.model.predict(texts)

    def describe(self) -> dict[str, Any]:
        return self.model.describe()


@pytest.fixture
def embedded(tmp_path, write_task, linear_models):
    """A running app serving ``gated`` (a Gated big model) with a 1 s request timeout; yields
    (url, gated, app)."""
    task = load_task(write_task(tmp_path / "task"))
    gated = Gated(load_model(linear_models["big"]))
    settings = ServeSettings(timeout_s=1.0, max_wait_ms=0)
    with PredictionLog(task, policy="none") as log:
        app = create_app(task, {"gated": gated}, settings, prediction_log=log)
        try:
            with serving(app) as url:
                yield url, gated, app
        finally:
            gated.gate.set()


def test_readiness_waits_for_the_warm_up_prediction(embedded) -> None:
    url, gated, _ = embedded
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "alive"}  # at once
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]["code"] == "E823"
        assert "warming up system `gated`" in not_ready.json()["error"]["message"]
        early = client.post("/v1/predict", json={"text": "too early"})
        assert early.status_code == 503 and early.json()["error"]["code"] == "E823"
        assert client.get("/v1/systems").status_code == 503
        assert gated.calls == 1  # the warm-up is waiting at the gate
        gated.gate.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        version = gated.card["model_sha256"][:16]
        assert ready.json() == {"ready": True, "systems": {"gated": version}}
        answered = client.post("/v1/predict", json={"text": "now it answers"})
        assert answered.status_code == 200
        assert answered.json()["predictions"][0]["version"] == version


def test_a_prediction_past_the_timeout_is_answered_504_and_the_server_goes_on(embedded) -> None:
    url, gated, app = embedded
    gated.gate.set()
    with httpx.Client(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        gated.gate.clear()  # the next prediction hangs
        late = client.post("/v1/predict", json={"texts": ["slow one", "slow two"]})
        assert late.status_code == 504, late.text
        assert late.json()["error"]["code"] == "E824" and "1 s" in late.json()["error"]["message"]
        # (answered at the timeout: the model is still waiting at the gate)
        gated.gate.set()
        assert client.post("/v1/predict", json={"text": "fine again"}).status_code == 200
        metrics = client.get("/metrics").text
    ok = metric_value(
        metrics, "stillhouse_requests_total", endpoint="/v1/predict", system="gated", status="200"
    )
    timed_out = metric_value(
        metrics, "stillhouse_requests_total", endpoint="/v1/predict", system="gated", status="504"
    )
    assert (ok, timed_out) == (1, 1)
    assert app.runtime.ready


@pytest.mark.parametrize("origins", [(), ("http://labels.example",)])
def test_cors_is_off_unless_origins_are_listed(tmp_path, write_task, linear_models, origins):
    task = load_task(write_task(tmp_path / "task"))
    settings = ServeSettings(cors_origins=origins)
    with PredictionLog(task, policy="none") as log:
        app = create_app(
            task, {"lin": f"model:{linear_models['big']}"}, settings, prediction_log=log
        )
        with serving(app) as url, httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            headers = {"Origin": "http://labels.example"}
            answered = client.post("/v1/predict", json={"text": "lovely"}, headers=headers)
            bad = client.post("/v1/predict", json={"text": 1}, headers=headers)
            preflight = client.options(
                "/v1/predict",
                headers={**headers, "Access-Control-Request-Method": "POST"},
            )
    assert answered.status_code == 200 and answered.json()["predictions"][0]["label"]
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "text"
    allowed = answered.headers.get("access-control-allow-origin")
    if origins:  # the FastAPI route answers, with the CORS middleware around it
        assert allowed == "http://labels.example" and preflight.status_code == 200
        assert bad.headers.get("access-control-allow-origin") == "http://labels.example"
    else:
        assert allowed is None and preflight.status_code != 200
        assert "access-control-allow-origin" not in preflight.headers
