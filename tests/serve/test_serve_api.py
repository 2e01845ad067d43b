"""`stillhouse serve` as a client sees it: a real server process on a free port of 127.0.0.1 with
a token, a linear model and a model-only cascade that abstains; every endpoint, the token, each
request limit, the review queue, the metrics, reloads under a request loop, and schemathesis
against /openapi.json."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from serve_support import Server, metric_value, nusax_test_texts, start_server

from stillhouse.data.records import text_id
from stillhouse.data.store import Store
from stillhouse.task import load_task
from stillhouse.train import load_model

TOKEN = "s3cret-token-for-tests"
SERVE_TOML = """
[serve]
top_k = 2
max_texts = 8
max_text_chars = 500

[serve.systems]
lin = "model:models/big"
cascade = "cascade:model:models/big@0.9,model:models/small@0.97"
"""


@pytest.fixture(scope="module")
def server(serve_folder, cli_env: dict[str, str]):
    folder = serve_folder("api", SERVE_TOML)
    (folder / "token.txt").write_text(TOKEN + "\n", encoding="utf-8")
    running = start_server(folder, "--task", "task.toml", "--token-file", "token.txt", env=cli_env)
    running.token = TOKEN
    yield running
    assert running.stop() == 130, running.output()  # as Ctrl-C: 130
    assert "Traceback" not in running.output()


@pytest.fixture(scope="module")
def client(server: Server):
    with server.client() as opened:
        yield opened


def folder_of(server: Server) -> Path:
    return server.stdout.parent


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert "Traceback" not in response.text
    return body["error"]


def test_the_start_lines_give_the_address_and_the_thread_plan(server: Server) -> None:
    printed = server.stdout.read_text(encoding="utf-8")
    assert f"listening on {server.url} (a bearer token is required)" in printed
    plan = re.search(r"(\d+) cores: (\d+) worker × (\d+) intra-op", printed)
    assert plan, printed
    cores, workers, threads = map(int, plan.groups())
    assert workers == 1 and 1 <= workers * threads <= cores


def test_health_and_readiness_answer_without_the_token(server: Server, client) -> None:
    with server.client(token="") as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "alive"}
        ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    versions = {s["name"]: s["version"] for s in client.get("/v1/systems").json()["systems"]}
    assert ready.json() == {"ready": True, "systems": versions}


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/v1/predict"),
        ("GET", "/v1/systems"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/admin/reload"),
        ("GET", "/no/such/page"),
    ],
)
@pytest.mark.parametrize("token", ["", "wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_every_other_endpoint_needs_the_token(
    server: Server, method: str, path: str, token: str
) -> None:
    with server.client(token=token) as other:
        response = other.request(method, path, json={"text": "good food"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "E810"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_token_opens_the_endpoints(client) -> None:
    assert client.post("/v1/predict", json={"text": "good food"}).status_code == 200
    assert client.get("/metrics").status_code == 200
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.") and "/v1/predict" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # no page that loads Swagger UI or ReDoc from a CDN
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


def test_answers_are_the_models_own_with_the_top_k_probabilities(server: Server, client) -> None:
    texts = nusax_test_texts(8)
    model = load_model(folder_of(server) / "models" / "big")
    expected = model.predict(texts)
    batch = client.post("/v1/predict", json={"texts": texts, "system": "lin", "k": 3})
    assert batch.status_code == 200
    body = batch.json()
    assert body["system"] == "lin" and len(body["predictions"]) == len(texts)
    version = model.card["model_sha256"][:16]
    for answer, prediction in zip(body["predictions"], expected, strict=True):
        assert answer["label"] == prediction.answer
        assert list(answer["probs"]) == sorted(prediction.probs, key=lambda k: -prediction.probs[k])
        for label, probability in answer["probs"].items():
            assert probability == pytest.approx(prediction.probs[label], abs=1e-9)
        assert answer["confidence"] == pytest.approx(max(prediction.probs.values()))
        assert answer["abstained"] is False and answer["stage"] is None
        assert answer["version"] == version and answer["latency_ms"] > 0
    one = client.post("/v1/predict", json={"text": texts[0]}).json()
    assert one["system"] == "lin"  # the first system is the default
    assert len(one["predictions"]) == 1 and len(one["predictions"][0]["probs"]) == 2  # top_k


THIRTY_MB = 30 * 1024 * 1024


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        (b'{"text": "unfinished', 400, "E812", None),
        (b"not json at all", 400, "E812", None),
        (b'{"text": "caf\xe9 au lait"}', 400, "E813", None),
        (b"\xff\xfe{}", 400, "E813", None),
        (b"", 400, "E812", None),
        (b"[1, 2]", 422, "E814", "body"),
        (b'{"text": 5}', 422, "E814", "text"),
        (b'{"text": null}', 422, "E814", "text"),
        (b'{"texts": "one text"}', 422, "E814", "texts"),
        (b'{"texts": ["fine", 3]}', 422, "E814", "texts[1]"),
        (b'{"text": ""}', 422, "E815", "text"),
        (b'{"text": "\\ufeff\\u0085\\u3000"}', 422, "E815", "text"),
        (b'{"texts": ["fine", "fine", "  \\n "]}', 422, "E815", "texts[2]"),
        (b'{"texts": []}', 422, "E822", "texts"),
        (json.dumps({"texts": ["a text"] * 9}).encode(), 422, "E817", "texts"),
        (json.dumps({"texts": ["ok", "x" * 501]}).encode(), 422, "E816", "texts[1]"),
        (b'{"text": "a", "texts": ["b"]}', 422, "E820", "text"),
        (b"{}", 422, "E820", "text"),
        (b'{"text": "a", "labels": 1}', 422, "E821", "labels"),
        (b'{"text": "a", "system": "nope"}', 422, "E818", "system"),
        (b'{"text": "a", "system": 1}', 422, "E814", "system"),
        (b'{"text": "a", "k": 0}', 422, "E819", "k"),
        (b'{"text": "a", "k": 4}', 422, "E819", "k"),
        (b'{"text": "a", "k": true}', 422, "E814", "k"),
        (b'{"text": "a", "k": 1.5}', 422, "E814", "k"),
        (b'{"text": "a", "lang": 7}', 422, "E814", "lang"),
        (b'{"text": "a", "lang": "Javanese"}', 422, "E849", "lang"),
    ],
    ids=lambda value: None if not isinstance(value, bytes) else value[:24].decode("latin-1"),
)
def test_a_bad_request_is_refused_with_the_code_and_the_field(
    client, body: bytes, status: int, code: str, field: str | None
) -> None:
    response = client.post("/v1/predict", content=body, headers={"content-type": "text/plain"})
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error.get("field") == field
    if field is not None and field != "body":
        assert field in error["message"]


def test_a_30_mb_body_is_refused_with_413_before_it_is_read(client) -> None:
    declared = client.post("/v1/predict", content=b"x" * THIRTY_MB)
    assert declared.status_code == 413 and error_of(declared)["code"] == "E811"

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(30):
            yield b"y" * (1024 * 1024)

    streamed = client.post("/v1/predict", content=chunks())
    assert streamed.status_code == 413 and error_of(streamed)["code"] == "E811"
    # the server goes on answering
    assert client.post("/v1/predict", json={"text": "still here"}).status_code == 200


def test_unknown_paths_and_methods_answer_json_errors(client) -> None:
    missing = client.get("/v2/predict")
    assert missing.status_code == 404 and error_of(missing)["code"] == "E825"
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "E826"
    assert "POST" in error_of(wrong)["message"]


def queued(folder: Path, count: int, timeout: float = 10) -> list:
    """The abstained queue of the task's store once it holds ``count`` items."""
    task = load_task(folder / "task.toml")
    deadline = time.monotonic() + timeout
    while True:
        with Store.for_task(task, create=False) as store:
            items = store.queued_predictions()
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def test_an_abstaining_cascade_sends_its_texts_to_the_review_queue(server: Server, client) -> None:
    texts = nusax_test_texts(28)[20:28]
    body = client.post("/v1/predict", json={"texts": texts, "system": "cascade"}).json()
    answers = body["predictions"]
    abstained = [text for text, answer in zip(texts, answers, strict=True) if answer["abstained"]]
    assert abstained, "the cascade's last threshold (0.97) should make it abstain"
    small = str(folder_of(server) / "models" / "small")
    for answer in answers:
        assert answer["stage"] in {
            f"model:{folder_of(server) / 'models' / 'big'}",
            f"model:{small}",
        }
        if answer["abstained"]:
            assert answer["label"] is None and answer["stage"] == f"model:{small}"
            assert answer["confidence"] < 0.97
    items = queued(folder_of(server), len(abstained))
    task = load_task(folder_of(server) / "task.toml")
    with Store.for_task(task, create=False) as store:
        texts_by_id = {e.id: e.text for e in store.examples(task.kind)}
    assert sorted(texts_by_id[item.example_id] for item in items) == sorted(abstained)
    for item in items:
        assert item.reasons == ["abstained"] and item.info["system"] == "cascade"
        assert item.probs is not None and set(item.probs) == {"positive", "neutral", "negative"}
        assert item.suggested == max(item.probs, key=item.probs.get)


def test_the_prediction_log_holds_each_answer_with_the_texts_hash_only(server: Server, client):
    text = "A text sent once, to find it in the prediction log."
    answer = client.post("/v1/predict", json={"text": text}).json()["predictions"][0]
    task = load_task(folder_of(server) / "task.toml")
    deadline = time.monotonic() + 10
    while True:
        with Store.for_task(task, create=False) as store:
            rows = [
                r
                for r in store.logged_predictions(task.kind, "lin")
                if r.text_hash == text_id(text)
            ]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == 1
    row = rows[0]
    assert row.text is None  # texts are stored only with --log-texts
    assert (row.answer, row.version, row.stage) == (answer["label"], answer["version"], None)
    assert row.confidence == pytest.approx(answer["confidence"]) and row.latency_ms > 0


def test_systems_describe_versions_cards_thresholds_and_stage_shares(server: Server, client):
    client.post("/v1/predict", json={"texts": nusax_test_texts(8), "system": "cascade"})
    systems = {s["name"]: s for s in client.get("/v1/systems").json()["systems"]}
    assert list(systems) == ["lin", "cascade"] and systems["lin"]["default"] is True
    card = json.loads((folder_of(server) / "models" / "big" / "card.json").read_text())
    lin = systems["lin"]
    assert lin["labels"] == ["positive", "neutral", "negative"] and lin["recipe"] == "linear"
    assert lin["version"] == card["model_sha256"][:16]
    assert lin["trained_at"] == card["created_at"] and lin["card"]["training_examples"] == 200
    cascade = systems["cascade"]
    assert [stage["threshold"] for stage in cascade["stages"]] == [0.9, 0.97]
    assert cascade["abstain_below"] == 0.97
    total = cascade["texts"]
    assert total >= 8
    answered = sum(stage["answered"] for stage in cascade["stages"])
    assert answered + cascade["abstained"] == total
    for stage in cascade["stages"]:
        assert stage["share"] == pytest.approx(stage["answered"] / total)


def test_metrics_hold_the_named_series_and_their_counts_move(client) -> None:
    before = client.get("/metrics").text
    texts = nusax_test_texts(8)
    for text in texts:
        assert client.post("/v1/predict", json={"text": text, "system": "cascade"}).is_success
    assert client.post("/v1/predict", json={"text": ""}).status_code == 422
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def moved(name: str, **labels: str) -> float:
        return metric_value(text, name, **labels) - metric_value(before, name, **labels)

    ok = {"endpoint": "/v1/predict", "system": "cascade", "status": "200"}
    assert moved("stillhouse_requests_total", **ok) == len(texts)
    assert moved("stillhouse_requests_total", endpoint="/v1/predict", status="422") == 1
    assert moved("stillhouse_request_latency_seconds_count", system="cascade") == len(texts)
    assert moved("stillhouse_batch_size_count", system="cascade") == len(texts)
    assert moved("stillhouse_confidence_count", system="cascade") == len(texts)
    answered = sum(
        moved("stillhouse_texts_answered_total", system="cascade", stage=stage)
        for stage in set(re.findall(r'stillhouse_texts_answered_total\{stage="([^"]+)"', text))
    )
    abstained = moved("stillhouse_texts_abstained_total", system="cascade")
    assert answered + abstained == len(texts)
    assert "stillhouse_requests_in_flight" in text
    for series in ("stillhouse_stage_share", "stillhouse_abstention_rate"):
        assert re.search(rf'^{series}\{{.*system="cascade"', text, re.M), series
    assert metric_value(text, "stillhouse_llm_fallback_rate", system="cascade") == 0.0
    rate = metric_value(text, "stillhouse_abstention_rate", system="cascade")
    assert 0 < rate < 1


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_the_api_keeps_its_openapi_schema(server: Server, mode) -> None:
    """Requests schemathesis generates from /openapi.json (valid ones, then ones that break
    it): never a 5xx, every answer as the schema says (status, content type, body)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/admin/reload":
            continue  # reloads are tested under load below; dozens would only cost time
        if mode == schemathesis.GenerationMode.NEGATIVE and operation.method != "post":
            continue  # nothing to break in a GET without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
        def check(case) -> None:
            response = case.call_and_validate(base_url=server.url, headers=headers)
            assert response.status_code < 500, response.text
            tried.append(response.status_code)

        check()
    assert len(tried) >= 30
    if mode == schemathesis.GenerationMode.POSITIVE:
        assert 200 in tried
    else:
        assert {400, 422} & set(tried)


def swap_model(folder: Path, to: str) -> None:
    """Make ``models/big`` hold the model ``to`` (a copy of models/big or models/small)."""
    target = folder / "models" / "big"
    fresh = folder / "models" / "incoming"
    shutil.copytree(folder / "models" / to, fresh)
    retired = folder / "models" / f"retired-{time.monotonic_ns()}"
    target.rename(retired)
    fresh.rename(target)


def version_of(client: httpx.Client) -> str:
    return client.get("/v1/systems").json()["systems"][0]["version"]


def test_reloads_under_a_request_loop_fail_no_request(server: Server, client) -> None:
    folder = folder_of(server)
    (folder / "models" / "original").mkdir()
    for item in (folder / "models" / "big").iterdir():
        shutil.copy2(item, folder / "models" / "original" / item.name)
    big = version_of(client)
    small = json.loads((folder / "models" / "small" / "card.json").read_text())
    small_version = small["model_sha256"][:16]
    assert big != small_version

    outcomes: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()
    texts = nusax_test_texts(50)

    def loop(system: str) -> None:
        with server.client() as own:
            number = 0
            while not stop.is_set():
                number += 1
                try:
                    response = own.post(
                        "/v1/predict", json={"text": texts[number % 50], "system": system}
                    )
                    outcomes[str(response.status_code)] += 1
                    if response.status_code == 200:
                        versions[response.json()["predictions"][0]["version"]] += 1
                except httpx.HTTPError as error:
                    outcomes[type(error).__name__] += 1

    threads = [threading.Thread(target=loop, args=(s,)) for s in ("lin", "lin", "cascade")]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        swap_model(folder, "small")
        reloaded = client.post("/v1/admin/reload")
        assert reloaded.status_code == 200, reloaded.text
        changes = {r["name"]: (r["before"], r["after"]) for r in reloaded.json()["reloaded"]}
        assert changes["lin"] == (big, small_version)
        assert changes["cascade"][0] != changes["cascade"][1]
        assert version_of(client) == small_version
        time.sleep(0.3)
        swap_model(folder, "original")
        os.kill(server.process.pid, signal.SIGHUP)  # the same, by signal
        deadline = time.monotonic() + 30
        while version_of(client) != big and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version_of(client) == big
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] >= 10 and versions[small_version] > 0 and versions[big] > 0
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "stillhouse_reloads_total", outcome="ok") == 2


def test_a_failed_reload_keeps_the_models_in_service(server: Server, client) -> None:
    folder = folder_of(server)
    before = version_of(client)
    weights = folder / "models" / "big" / "weights.safetensors"
    saved = weights.read_bytes()
    weights.write_bytes(saved[:100])  # a damaged folder on disk
    try:
        failed = client.post("/v1/admin/reload")
    finally:
        weights.write_bytes(saved)
    assert failed.status_code == 500 and error_of(failed)["code"] == "E828"
    assert version_of(client) == before
    assert client.post("/v1/predict", json={"text": "fine"}).status_code == 200


def test_a_language_hint_is_ignored_by_a_system_that_does_not_route_by_language(client) -> None:
    # `lang` is for by-lang systems (tests/serve/test_serve_structured.py); a plain model answers
    # as if it were not there, and says no route
    plain = client.post("/v1/predict", json={"text": "the staff were lovely"})
    hinted = client.post("/v1/predict", json={"text": "the staff were lovely", "lang": "jv"})
    assert plain.status_code == hinted.status_code == 200, hinted.text
    (before,), (after,) = plain.json()["predictions"], hinted.json()["predictions"]
    assert "route" not in after
    assert (after["label"], after["probs"]) == (before["label"], before["probs"])
