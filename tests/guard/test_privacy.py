"""[privacy]: personal data never reaches a remote OpenAI-compatible server.

The server is a real llama_cpp.server (SmolLM2-135M) behind a recording proxy on 127.0.0.1 that
keeps every request body it forwards; the entity finding is the real (tuned) Presidio analyzer.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from llama_server import run_llama_server

from stillhouse.annotate import annotate, backend_settings
from stillhouse.cascade import Cascade, Stage
from stillhouse.cli.annotate import print_annotate_summary
from stillhouse.data.records import Example
from stillhouse.data.store import PRIVACY_QUEUE, ReviewItem, Store
from stillhouse.errors import StillhouseError
from stillhouse.guard.privacy import (
    PrivacySettings,
    find_entities,
    is_loopback,
    protect,
    resolve_mode,
)
from stillhouse.llm.answer import locate_spans
from stillhouse.llm.backend import BackendSettings
from stillhouse.llm.backends.openai import OpenAIBackend
from stillhouse.llm.predictor import LLMPredictor
from stillhouse.llm.prompts import ChatPrompt, span_schema
from stillhouse.task import load_task

# Each text's personal data, as the sentence writes it.
TEXTS = {
    "t1": (
        "Maria Gonzalez here: the refund never came. Email maria.gonzalez@example.com or call "
        "+44 20 7946 0958.",
        ["Maria Gonzalez", "maria.gonzalez@example.com", "+44 20 7946 0958"],
    ),
    "t2": (
        "My card 4111 1111 1111 1111 was charged twice, I am furious. John Smith",
        ["4111 1111 1111 1111", "John Smith"],
    ),
    "t3": (
        "Please send the money to IBAN DE89 3704 0044 0532 0130 00, thanks, Peter Novak "
        "(peter.novak@mail.example.org)",
        ["DE89 3704 0044 0532 0130 00", "Peter Novak", "peter.novak@mail.example.org"],
    ),
    "t4": (
        "Call me at (212) 555-0187, this is Anna Schmidt, the new phone is great!",
        ["(212) 555-0187", "Anna Schmidt"],
    ),
    "clean": ("The delivery was fast and the product works well.", []),
}


def leaks(payload: str, values: list[str]) -> list[str]:
    """The values (or a name's single words, or a number's digits without its spaces and
    dashes) that appear in ``payload``."""
    squeezed = re.sub(r"[\s().+-]", "", payload)
    found = []
    for value in values:
        digits = re.sub(r"[\s().+-]", "", value)
        if value in payload or (digits.isalnum() and any(c.isdigit() for c in digits) and digits in squeezed):  # fmt: skip
            found.append(value)
        elif " " in value and "@" not in value and not any(c.isdigit() for c in value):
            found += [word for word in value.split() if re.search(rf"\b{word}\b", payload)]
    return found


def user_message(body: str) -> str:
    """The text of a request's user message after the task's fixed part (the data part)."""
    return json.loads(body)["messages"][-1]["content"].rpartition("Text: ")[2]


class RecordingProxy:
    """An HTTP server on 127.0.0.1 that forwards each POST to ``target`` and keeps its body
    (``bodies``) and the server's reply content (``replies``)."""

    def __init__(self, target: str) -> None:
        self.bodies: list[str] = []
        self.replies: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.bodies.append(body.decode("utf-8"))
                answer = httpx.post(
                    target + self.path.removeprefix("/v1"),
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                if answer.status_code == 200:
                    proxy.replies.append(answer.json()["choices"][0]["message"]["content"])
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from run_llama_server(tmp_path_factory)


@pytest.fixture
def proxy(llama_server: str) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(llama_server)
    yield recording
    recording.close()


def write_workspace(folder: Path, privacy: str, write_task, write_rows) -> tuple[Path, Path]:
    task = write_task(folder)
    task.write_text(task.read_text(encoding="utf-8") + f"\n[privacy]\n{privacy}\n", "utf-8")
    rows = [{"id": key, "text": text} for key, (text, _) in TEXTS.items()]
    return task, write_rows(folder / "texts.jsonl", rows)


ALL_VALUES = [value for _, values in TEXTS.values() for value in values]


# -- what reaches the server -----------------------------------------------------------------


@pytest.mark.slow
def test_pseudonymize_sends_no_personal_data_and_records_counts_only(
    proxy: RecordingProxy, tmp_path: Path, write_task, write_rows
) -> None:
    task_path, data = write_workspace(tmp_path, 'remote = "pseudonymize"', write_task, write_rows)
    task = load_task(task_path)

    summary = annotate(task, data, model=f"openai:{proxy.url}#smollm2", use_cache=False)

    # every text was asked about (a refused response format is asked again: same text)
    assert len({user_message(body) for body in proxy.bodies}) == len(TEXTS)
    for body in proxy.bodies:
        assert leaks(body, ALL_VALUES) == [], body
    sent = "\n".join(user_message(body) for body in proxy.bodies)
    for placeholder in ("<PERSON_1>", "<EMAIL_ADDRESS_1>", "<PHONE_NUMBER_1>", "<CREDIT_CARD_1>"):
        assert placeholder in sent
    assert "<IBAN_CODE_1>" in sent and TEXTS["clean"][0] in sent  # a clean text goes as written
    assert summary.annotated == len(TEXTS)
    with Store.for_task(task, create=False) as store:
        run = store.runs()[-1]
    privacy = run.stats["privacy"]
    assert privacy["mode"] == "pseudonymize" and privacy["texts_with_pii"] == 4
    assert privacy["mentions"]["PERSON"] == 4 and privacy["mentions"]["EMAIL_ADDRESS"] == 2
    assert privacy["mentions"]["CREDIT_CARD"] == 1 and privacy["mentions"]["IBAN_CODE"] == 1
    assert leaks(json.dumps(run.stats), ALL_VALUES) == []  # counts, never values


@pytest.mark.slow
def test_on_loopback_the_default_sends_texts_as_written(
    proxy: RecordingProxy, tmp_path: Path, write_task, write_rows
) -> None:
    """The control for the test above: the proxy does see personal data when nothing hides it."""
    task_path, _ = write_workspace(tmp_path, "", write_task, write_rows)
    task = load_task(task_path)
    predictor = LLMPredictor(task, f"openai:{proxy.url}#smollm2")
    try:
        predictor.predict([TEXTS["t1"][0]])
    finally:
        predictor.close()
    assert leaks(proxy.bodies[0], TEXTS["t1"][1]) == TEXTS["t1"][1]
    assert predictor.describe()["privacy"]["mode"] == "allow"


@pytest.mark.slow
def test_block_sends_nothing_with_personal_data_and_queues_it_for_review(
    proxy: RecordingProxy, tmp_path: Path, write_task, write_rows, capsys
) -> None:
    task_path, data = write_workspace(tmp_path, 'remote = "block"', write_task, write_rows)
    task = load_task(task_path)

    summary = annotate(task, data, model=f"openai:{proxy.url}#smollm2", use_cache=False)

    assert {user_message(body) for body in proxy.bodies} == {TEXTS["clean"][0]}
    assert summary.privacy_blocked == 4 and summary.annotated == 1
    with Store.for_task(task, create=False) as store:
        queued = store.review_queue(PRIVACY_QUEUE)
        annotated = {a.example_id for a in store.annotations(task.kind) if a.annotator != "gold"}
        stats = store.runs()[-1].stats
    assert [item.example_id for item in queued] == ["t1", "t2", "t3", "t4"]
    assert all(item.reasons[0].startswith("privacy_blocked: ") for item in queued)
    assert "EMAIL_ADDRESS 1" in queued[0].reasons[0] and "Maria" not in queued[0].reasons[0]
    assert annotated == {"clean"}
    assert stats["privacy"]["texts_blocked"] == 4 and stats["privacy_blocked"] == 4
    print_annotate_summary(summary)
    shown = " ".join(capsys.readouterr().out.split())
    assert "block: 4 of 5 texts held personal data (" in shown
    assert "4 not sent, in the review queue `privacy`" in shown

    # evaluate's LLM systems: a blocked text is an abstention (answer "")
    predictor = LLMPredictor(task, f"openai:{proxy.url}#smollm2", backend_settings(task))
    cascade = Cascade([Stage("llm", predictor, None)])  # ... and a cascade's LLM stage
    try:
        prediction = predictor.predict([TEXTS["t2"][0]])[0]
        through_cascade = cascade.predict([TEXTS["t4"][0]])[0]
    finally:
        predictor.close()
    assert prediction.answer == "" and prediction.info["abstained"] is True
    assert prediction.info["pii"] == {"CREDIT_CARD": 1, "PERSON": 1}
    assert through_cascade.answer == "" and through_cascade.info["abstained"] is True
    assert cascade.shares()["abstained"] == 1.0
    assert {user_message(body) for body in proxy.bodies} == {TEXTS["clean"][0]}  # no other


@pytest.mark.slow
def test_a_placeholder_in_the_servers_reply_comes_back_as_the_original(
    proxy: RecordingProxy,
) -> None:
    """The round trip through a real server: the reply is held by a schema to name the
    placeholder (SmolLM2-135M does not copy placeholders on its own), and the span lands on
    the original text."""
    text = "Maria Gonzalez called. Maria Gonzalez wants a refund."
    entity = {"type": "string", "enum": ["<PERSON_1>"]}
    schema = span_schema(["PER"])
    schema["properties"]["entities"].update(minItems=1, maxItems=1)
    schema["properties"]["entities"]["items"]["properties"]["text"] = entity
    settings = BackendSettings(max_new_tokens=40, privacy=PrivacySettings("pseudonymize"))
    prompt = ChatPrompt("List the people.", "Labels: PER\n\n", f"Text: {text}")
    with OpenAIBackend(proxy.url, "smollm2", settings) as backend:
        generation = backend.generate(prompt, json_schema=schema)

    assert "Maria" not in proxy.bodies[-1] and "<PERSON_1>" in proxy.replies[-1]
    entities = json.loads(generation.text)["entities"]
    assert entities == [{"text": "Maria Gonzalez", "label": "PER"}]
    spans, _ = locate_spans(text, entities, ["PER"])
    assert [(s.start, s.end) for s in spans] == [(0, 14), (23, 37)]


# -- placeholders and offsets ----------------------------------------------------------------


def test_every_mention_of_a_value_gets_the_same_placeholder() -> None:
    text = "Anna Schmidt wrote twice. Anna Schmidt says: call 212-555-0187, not Peter Novak."
    protected = protect(text, find_entities([text])[0], "pseudonymize")
    assert protected.text == (
        "<PERSON_1> wrote twice. <PERSON_1> says: call <PHONE_NUMBER_1>, not <PERSON_2>."
    )
    assert protected.counts == {"PERSON": 3, "PHONE_NUMBER": 1}
    assert protected.restore("<PERSON_2> and PERSON_1") == "Peter Novak and Anna Schmidt"


def test_a_span_answer_over_placeholders_lands_on_the_original_offsets() -> None:
    text = "Email from Maria Gonzalez (maria.gonzalez@example.com): Maria Gonzalez moved to Berlin."
    protected = protect(text, find_entities([text])[0], "pseudonymize")
    assert "Maria" not in protected.text and "Berlin" in protected.text
    # what a model answers about the text it was sent: placeholders, and words it kept
    reply = json.dumps(
        {"entities": [{"text": "<PERSON_1>", "label": "PER"}, {"text": "Berlin", "label": "LOC"}]}
    )
    entities = json.loads(protected.restore_json(reply))["entities"]
    spans, dropped = locate_spans(text, entities, ["PER", "LOC"])
    name = text.index("Maria Gonzalez")
    second = text.index("Maria Gonzalez", name + 1)
    assert dropped == 0
    assert [(s.start, s.end, s.label) for s in spans] == [
        (name, name + 14, "PER"),
        (second, second + 14, "PER"),
        (text.index("Berlin"), text.index("Berlin") + 6, "LOC"),
    ]
    # offsets over the sent text map back: a placeholder to its entity, other text shifted
    at = protected.text.index("<PERSON_1>")
    assert protected.to_original(at, at + len("<PERSON_1>")) == (name, name + 14)
    berlin = protected.text.index("Berlin")
    assert protected.to_original(berlin, berlin + 6) == (
        text.index("Berlin"),
        text.index("Berlin") + 6,
    )
    assert protected.to_original(0, 5) == (0, 5)


def test_a_restored_value_with_quotes_keeps_a_json_reply_valid() -> None:
    text = 'Signed: Maria "Mia" Gonzalez, maria@example.com'
    protected = protect(text, find_entities([text])[0], "pseudonymize")
    reply = json.dumps({"entities": [{"text": "<EMAIL_ADDRESS_1>", "label": "MAIL"}]})
    restored = json.loads(protected.restore_json(reply))
    assert restored["entities"][0]["text"] == "maria@example.com"


def test_redact_keeps_the_type_only_and_block_marks_the_text() -> None:
    text = "Write to jane.doe@example.com, Jane Doe"
    found = find_entities([text])[0]
    redacted = protect(text, found, "redact")
    assert redacted.text == "Write to <EMAIL_ADDRESS>, <PERSON>"
    assert redacted.restore("<PERSON>") == "<PERSON>"  # nothing can be put back
    blocked = protect(text, found, "block")
    assert blocked.blocked and blocked.counts == {"EMAIL_ADDRESS": 1, "PERSON": 1}
    clean = protect("No personal data here.", [], "block")
    assert not clean.blocked and clean.text == "No personal data here."


def test_without_presidio_the_message_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import fails as if absent
    with pytest.raises(StillhouseError) as error:
        find_entities(["Write to jane.doe@example.com"])
    assert error.value.code == "E606" and "presidio-analyzer" in str(error.value)


def test_the_default_mode_depends_on_where_the_server_is() -> None:
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:1/v1", "http://[::1]:8/v1"):
        assert is_loopback(url) and resolve_mode(None, url) == "allow"
    for url in ("https://api.openai.com/v1", "http://10.0.0.5:8000/v1", "http://myhost/v1"):
        assert not is_loopback(url) and resolve_mode(None, url) == "pseudonymize"
    assert resolve_mode("block", "http://127.0.0.1:8000/v1") == "block"


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ('remote = "encrypt"', "`privacy.remote`"),
        ('remote = "redact"\nentities = ["PERSON", "SHOE_SIZE"]', "`privacy.entities`"),
        ("entities = []", "`privacy.entities`"),
        ("score_threshold = 1.5", "`privacy.score_threshold`"),
        ('mode = "redact"', "`privacy.mode`"),
    ],
)
def test_a_bad_privacy_setting_names_its_key(
    tmp_path: Path, write_task, section: str, named: str
) -> None:
    task = write_task(tmp_path)
    task.write_text(task.read_text(encoding="utf-8") + f"\n[privacy]\n{section}\n", "utf-8")
    with pytest.raises(StillhouseError) as error:
        load_task(task)
    assert error.value.code == "E003" and named in str(error.value)
    assert str(task) in str(error.value)


# -- the review queue ------------------------------------------------------------------------


def test_blocked_texts_are_appended_to_the_queue_and_a_repeat_keeps_its_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stillhouse.db"
    with Store(path) as store:
        store.add_examples([Example(f"e{i}", f"text {i}") for i in range(3)], "classify")
        store.add_to_review_queue(PRIVACY_QUEUE, [ReviewItem("e1", 0, 1.0, ["a"])])
        store.add_to_review_queue(
            PRIVACY_QUEUE, [ReviewItem("e2", 0, 1.0, ["b"]), ReviewItem("e1", 0, 1.0, ["c"])]
        )
        store.replace_review_queue("audit", [ReviewItem("e0", 1, 0.5, ["x"])])
    with Store(path) as reopened:
        queued = reopened.review_queue(PRIVACY_QUEUE)
        assert [(q.example_id, q.rank, q.reasons) for q in queued] == [
            ("e1", 1, ["c"]),
            ("e2", 2, ["b"]),
        ]
        assert [q.example_id for q in reopened.review_queue("audit")] == ["e0"]
