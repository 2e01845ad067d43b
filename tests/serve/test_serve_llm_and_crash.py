"""A real server with a cascade that falls back to the real small LLM (llama.cpp, SmolLM2) and
abstains below it: the stages that answered, the LLM fallback rate, the abstained texts in the
review queue; then the same server killed with SIGKILL while it logs predictions: the store
stays readable and loses at most the batch it had not yet written."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest
from serve_support import Server, kill, metric_value, nusax_test_texts, start_server

from stillhouse.data.store import Store
from stillhouse.serve.prediction_log import PredictionLog
from stillhouse.task import load_task

pytestmark = pytest.mark.slow

SERVE_TOML = """
[serve.systems]
lin = "model:models/big"
fallback = "cascade:model:models/big@0.8,llm:smollm2-135m@0.99"
"""


@pytest.fixture(scope="module")
def server(serve_folder, cli_env: dict[str, str]):
    folder = serve_folder("llm", SERVE_TOML)
    running = start_server(folder, "--task", "task.toml", "--log-texts", env=cli_env)
    yield running
    kill(running)


def test_the_llm_stage_answers_what_the_model_passes_on_and_abstentions_reach_review(
    server: Server,
) -> None:
    folder = server.stdout.parent
    texts = nusax_test_texts(6)
    with server.client(timeout=120) as client:
        body = client.post("/v1/predict", json={"texts": texts, "system": "fallback"}).json()
        answers = body["predictions"]
        metrics = client.get("/metrics").text
        systems = {s["name"]: s for s in client.get("/v1/systems").json()["systems"]}
    model_stage = f"model:{folder / 'models' / 'big'}"
    for answer in answers:
        if answer["stage"] == model_stage:  # sure enough: the model answered
            assert not answer["abstained"] and answer["confidence"] >= 0.8
        else:  # passed on to the LLM, which abstains below 0.99
            assert answer["stage"] == "llm:smollm2-135m"
            assert answer["abstained"] == (answer["confidence"] < 0.99)
    reached = [a for a in answers if a["stage"] == "llm:smollm2-135m"]
    assert reached, "the 200-row model should pass some texts on at 0.8"
    fallback = metric_value(metrics, "stillhouse_llm_fallback_rate", system="fallback")
    assert fallback == pytest.approx(len(reached) / len(texts))
    abstained = [t for t, a in zip(texts, answers, strict=True) if a["abstained"]]
    rate = metric_value(metrics, "stillhouse_abstention_rate", system="fallback")
    assert rate == pytest.approx(len(abstained) / len(texts))
    stages = {stage["name"]: stage for stage in systems["fallback"]["stages"]}
    assert stages["llm:smollm2-135m"]["kind"] == "llm"
    assert stages[model_stage]["answered"] == len(texts) - len(reached)
    task = load_task(folder / "task.toml")
    deadline = time.monotonic() + 10
    while True:
        with Store.for_task(task, create=False) as store:
            items = store.queued_predictions()
            texts_by_id = {e.id: e.text for e in store.examples(task.kind)}
        if len(items) >= len(abstained) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(texts_by_id[item.example_id] for item in items) == sorted(abstained)
    for item in items:
        assert item.info["stage"] == "llm:smollm2-135m" and item.reasons == ["abstained"]
        assert item.probs is not None and abs(sum(item.probs.values()) - 1) < 1e-6


def logged(task) -> int:
    with Store.for_task(task, create=False) as store:
        return len(store.logged_predictions(task.kind, "lin"))


def test_kill_9_while_logging_leaves_a_readable_store_missing_at_most_the_last_batch(
    server: Server,
) -> None:
    folder = server.stdout.parent
    task = load_task(folder / "task.toml")
    texts = nusax_test_texts(64)
    with server.client() as client:
        before = metric_value(
            client.get("/metrics").text, "stillhouse_prediction_log", state="written"
        )
        for start in range(0, 64, 16):  # 64 predictions, then wait until they are written
            assert client.post("/v1/predict", json={"texts": texts[start : start + 16]}).is_success
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            written = metric_value(
                client.get("/metrics").text, "stillhouse_prediction_log", state="written"
            )
            if written >= before + 64:
                break
            time.sleep(0.05)
    assert written == before + 64 and logged(task) == 64
    with Store.for_task(task, create=False) as store:  # --log-texts: the texts themselves
        assert [r.text for r in store.logged_predictions(task.kind, "lin")] == texts

    answered = [0]
    stop = threading.Event()

    def loop() -> None:  # requests keep coming while the server dies
        with server.client() as own:
            while not stop.is_set():
                try:
                    response = own.post("/v1/predict", json={"texts": texts[:16]})
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    answered[0] += 16

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while answered[0] < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert answered[0] >= 200, "the request loops stopped before the kill"
        kill(server)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    db = sqlite3.connect(task.store_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    rows = logged(task)
    # all that was written before stays; at most the unflushed batch (and the requests whose
    # answers the kill cut off, 3 × 16 texts) is missing or unconfirmed
    assert 64 <= rows <= 64 + answered[0] + 3 * 16
    # the store takes new predictions after the crash
    with PredictionLog(task) as log:
        log.record([])
    assert logged(task) == rows
