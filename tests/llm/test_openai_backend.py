"""The OpenAI-compatible backend against a real llama_cpp.server and tiny misbehaving servers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from llama_server import free_port, run_llama_server

from stillhouse.errors import StillhouseError
from stillhouse.llm.backend import BackendSettings
from stillhouse.llm.backends.openai import OpenAIBackend, parse_openai_spec
from stillhouse.llm.prompts import ChatPrompt, span_schema

pytestmark = pytest.mark.slow

FAST_RETRIES = {"retry_base_s": 0.01}
SENTIMENT = ("positive", "negative", "neutral")


def prompt(text: str) -> ChatPrompt:
    return ChatPrompt(
        system="You are a careful data annotator. Reply with exactly one label name from the list.",
        fixed="Labels:\n- positive\n- negative\n- neutral\n\n",
        variable=f"Text: {text}",
    )


# -- a real llama.cpp server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT/v1``) of llama_cpp.server running SmolLM2-135M."""
    yield from run_llama_server(tmp_path_factory)


@pytest.fixture(scope="module")
def backend(llama_server: str) -> Iterator[OpenAIBackend]:
    settings = BackendSettings(n_ctx=2048, max_new_tokens=24, concurrency=3, timeout_s=60)
    with OpenAIBackend(llama_server, "smollm2", settings) as opened:
        yield opened


def test_constrained_generation_answers_one_of_the_choices(backend: OpenAIBackend) -> None:
    texts = ["I love this phone!", "Terrible service, never again.", "The parcel came on Tuesday."]
    for text in texts:
        generation = backend.generate(prompt(text), choices=SENTIMENT)
        assert generation.text in SENTIMENT
        assert generation.tokens_in > 0 and generation.tokens_out > 0
    # llama_cpp.server 0.3.36 refuses the standard json_schema format; json_object + schema works.
    assert backend.json_format == "json_object"


def test_json_schema_generation_returns_json_with_the_schema_key(backend: OpenAIBackend) -> None:
    schema = span_schema(["PER", "LOC"])
    schema["properties"]["entities"]["maxItems"] = 2  # SmolLM2 would go on until max_tokens
    schema["properties"]["entities"]["items"]["properties"]["text"]["maxLength"] = 20
    extract = ChatPrompt(
        system="Reply with JSON listing every entity in the text.",
        fixed="Labels: PER, LOC\n\n",
        variable="Text: John lives in Paris.",
    )
    generation = backend.generate(extract, json_schema=schema, max_tokens=80)
    answer = json.loads(generation.text)
    assert isinstance(answer["entities"], list)


def test_free_generation_reports_text_tokens_and_logprob(backend: OpenAIBackend) -> None:
    generation = backend.generate(prompt("I love this phone!"))
    assert generation.text.strip()
    assert generation.tokens_in > 0 and generation.tokens_out > 0
    assert generation.logprob is not None and generation.logprob <= 0


def test_generate_many_keeps_order_and_matches_one_by_one(backend: OpenAIBackend) -> None:
    prompts = [prompt(text) for text in ("Great!", "Awful.", "It is a chair.", "Superb.")]
    together = backend.generate_many(prompts, choices=SENTIMENT)
    one_by_one = [backend.generate(p, choices=SENTIMENT) for p in prompts]
    assert [g.text for g in together] == [g.text for g in one_by_one]


def test_describe_and_identity(backend: OpenAIBackend, llama_server: str) -> None:
    assert backend.describe() == {
        "runtime": "openai",
        "url": llama_server,
        "model": "smollm2",
        # a loopback server: [privacy] sends the texts as written unless told otherwise
        "privacy": {
            "mode": "allow",
            "texts_checked": 0,
            "texts_with_pii": 0,
            "texts_blocked": 0,
            "mentions": {},
        },
    }
    assert backend.model_name == f"openai:{llama_server}#smollm2"
    assert backend.model_sha256.startswith("remote:") and len(backend.model_sha256) == 23


# -- tiny servers that misbehave ---------------------------------------------------------------

Reply = tuple[int, str]


class FakeServer:
    """An HTTP server on 127.0.0.1 that answers every POST with ``reply(request_body)`` and keeps
    each request (headers and JSON body)."""

    def __init__(self, reply: Callable[[dict[str, Any]], Reply], delay_s: float = 0.0) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append((dict(self.headers), body))
                time.sleep(delay_s)
                status, text = reply(body)
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    started: list[FakeServer] = []

    def start(reply: Callable[[dict[str, Any]], Reply], delay_s: float = 0.0) -> FakeServer:
        started.append(FakeServer(reply, delay_s))
        return started[-1]

    yield start
    for server in started:
        server.close()


def completion(content: str) -> str:
    return json.dumps(
        {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        }
    )


def fast_backend(url: str, **settings: Any) -> OpenAIBackend:
    settings.setdefault("extra", FAST_RETRIES)
    return OpenAIBackend(url, "m", BackendSettings(**settings))


def test_unreachable_server_fails_fast_with_e307_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with fast_backend(url, timeout_s=1) as backend, pytest.raises(StillhouseError) as raised:
        backend.generate(prompt("hello"))
    assert time.monotonic() - started < 5
    assert raised.value.code == "E307"
    assert url in str(raised.value)
    assert "could not connect (connection refused) after 5 attempts" in str(raised.value)


@pytest.mark.parametrize("body", ["not json", '{"foo": 1}'])
def test_garbage_answer_is_e307_not_a_chat_completion(fake_server, body: str) -> None:
    server = fake_server(lambda request: (200, body))
    with fast_backend(server.url) as backend, pytest.raises(StillhouseError) as raised:
        backend.generate(prompt("hello"))
    assert raised.value.code == "E307"
    assert "not an OpenAI chat completion after 2 attempts" in str(raised.value)
    assert len(server.requests) == 2  # retried once, not more


def test_http_500_is_retried_then_e307_with_the_status(fake_server) -> None:
    server = fake_server(lambda request: (500, "model exploded"))
    with fast_backend(server.url) as backend, pytest.raises(StillhouseError) as raised:
        backend.generate(prompt("hello"))
    assert raised.value.code == "E307"
    assert "answered HTTP 500 after 5 attempts: model exploded" in str(raised.value)
    assert len(server.requests) == 5  # one try and 4 retries


def test_a_slow_server_times_out(fake_server) -> None:
    server = fake_server(lambda request: (200, completion("late")), delay_s=1.0)
    extra = {**FAST_RETRIES, "max_retries": 1}
    with (
        fast_backend(server.url, timeout_s=0.2, extra=extra) as backend,
        pytest.raises(StillhouseError, match=r"timed out after 0\.2 s after 2 attempts"),
    ):
        backend.generate(prompt("hello"))


def test_401_without_an_api_key_is_e308(fake_server, monkeypatch) -> None:
    monkeypatch.delenv("STILLHOUSE_TEST_KEY", raising=False)
    server = fake_server(lambda request: (401, '{"error": "no key"}'))
    backend = fast_backend(server.url, api_key_env="STILLHOUSE_TEST_KEY")
    with backend, pytest.raises(StillhouseError) as raised:
        backend.generate(prompt("hello"))
    assert raised.value.code == "E308"
    assert "STILLHOUSE_TEST_KEY" in str(raised.value)
    assert "Authorization" not in server.requests[0][0]


def test_a_rejected_api_key_is_e307(fake_server, monkeypatch) -> None:
    monkeypatch.setenv("STILLHOUSE_TEST_KEY", "sk-wrong")
    server = fake_server(lambda request: (401, '{"error": "bad key"}'))
    backend = fast_backend(server.url, api_key_env="STILLHOUSE_TEST_KEY")
    with backend, pytest.raises(StillhouseError, match="rejected the API key") as raised:
        backend.generate(prompt("hello"))
    assert raised.value.code == "E307"
    assert server.requests[0][0]["Authorization"] == "Bearer sk-wrong"


def test_a_refused_json_schema_format_falls_back_to_json_object_once(fake_server) -> None:
    def reply(request: dict[str, Any]) -> Reply:
        if request["response_format"]["type"] == "json_schema":
            return 422, '{"detail": "response_format: unsupported type json_schema"}'
        return 200, completion('{"label": "negative"}')

    server = fake_server(reply)
    with fast_backend(server.url) as backend:
        assert backend.generate(prompt("bad"), choices=SENTIMENT).text == "negative"
        assert backend.generate(prompt("worse"), choices=SENTIMENT).text == "negative"
    formats = [body["response_format"]["type"] for _, body in server.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert server.requests[1][1]["response_format"]["schema"]["properties"]["label"]["enum"] == [
        *SENTIMENT
    ]


def test_other_client_errors_are_e307_without_retry(fake_server) -> None:
    server = fake_server(lambda request: (404, "no such route"))
    with fast_backend(server.url) as backend, pytest.raises(StillhouseError) as raised:
        backend.generate(prompt("hello"))
    assert "HTTP 404 (the URL normally ends with /v1): no such route" in str(raised.value)
    assert len(server.requests) == 1


# -- no server needed --------------------------------------------------------------------------


def test_label_scoring_is_not_available() -> None:
    with fast_backend("http://127.0.0.1:9/v1") as backend:
        assert backend.can_score is False
        for score in (backend.score_labels, backend.score_yes_no):
            with pytest.raises(StillhouseError, match="constrained") as raised:
                score(prompt("hello"), SENTIMENT)
            assert raised.value.code == "E310"


def test_truncate_approximates_four_characters_per_token() -> None:
    with fast_backend("http://127.0.0.1:9/v1") as backend:
        assert backend.truncate("a" * 40, 5) == ("a" * 20, 10)
        assert backend.truncate("short", 100) == ("short", 2)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:http://127.0.0.1:8000/v1#qwen", ("http://127.0.0.1:8000/v1", "qwen")),
        ("openai:http://127.0.0.1:8000/v1/#qwen", ("http://127.0.0.1:8000/v1", "qwen")),
        (
            "openai:https://api.openai.com/v1#gpt-4o-mini",
            ("https://api.openai.com/v1", "gpt-4o-mini"),
        ),
        (
            "openai:http://localhost:11434/v1#llama3.2:1b",
            ("http://localhost:11434/v1", "llama3.2:1b"),
        ),
    ],
)
def test_parse_openai_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_openai_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "openai:http://127.0.0.1:8000/v1",
        "openai:http://127.0.0.1:8000/v1#",
        "openai:127.0.0.1:8000/v1#qwen",
        "openai:ftp://host/v1#qwen",
        "openai:#qwen",
        "http://127.0.0.1:8000/v1#qwen",
    ],
)
def test_parse_openai_spec_rejects_incomplete_specs(spec: str) -> None:
    with pytest.raises(StillhouseError) as raised:
        parse_openai_spec(spec)
    assert raised.value.code == "E311"
    assert "openai:URL#MODEL" in str(raised.value)
