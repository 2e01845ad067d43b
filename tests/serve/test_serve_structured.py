"""The other answer shapes through a real server (create_app on uvicorn, 127.0.0.1): a multilabel
`linear` model and a spaCy span model, both trained here on presidio-research's synthetic PII
(MIT; texts 0–199 train, 1000–1011 served), and an `llm:` system served on its own (the small
llama.cpp model), and a by-lang system routing English and Indonesian texts to their own
`linear` models. Each answer must be what the same system says in process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import REPO, nusax_test_texts, serving
from threadpoolctl import threadpool_limits

from stillhouse.data.io import write_jsonl
from stillhouse.data.store import Store
from stillhouse.predictors import open_systems
from stillhouse.serve import ServeSettings, create_app
from stillhouse.serve.prediction_log import PredictionLog
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train

pytestmark = pytest.mark.slow

PRESIDIO = REPO.parent / "shared" / "datasets" / "presidio_pii" / "synth_dataset_v2.json"
TYPES = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION")


def presidio(start: int, stop: int, kind: str) -> list[dict[str, Any]]:
    """Rows of presidio's texts: ``labels`` (the types among TYPES its spans hold) or ``spans``."""
    records = json.loads(PRESIDIO.read_text(encoding="utf-8"))[start:stop]
    rows = []
    for number, record in enumerate(records, start=start):
        spans = sorted(
            (
                {"start": s["start_position"], "end": s["end_position"], "label": s["entity_type"]}
                for s in record["spans"]
                if s["entity_type"] in TYPES
            ),
            key=lambda span: span["start"],
        )
        row: dict[str, Any] = {"id": f"p{number:04d}", "text": record["full_text"]}
        if kind == "multilabel":
            row["labels"] = sorted({span["label"] for span in spans})
        else:
            row["spans"] = spans
        rows.append(row)
    return rows


def task_text(kind: str, field: str) -> str:
    labels = "\n".join(f'{label} = "{label.lower()}"' for label in TYPES)
    return f'name = "pii-{kind}"\nkind = "{kind}"\n[input]\nlabel = "{field}"\n[labels]\n{labels}\n'


def served(
    url: str, texts: list[str], system: str, k: int = 4, lang: str | None = None
) -> list[dict[str, Any]]:
    """The server's answers to ``texts`` (in language ``lang`` when given), once it is ready."""
    with httpx.Client(base_url=url, timeout=120) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.05)
        body: dict[str, Any] = {"texts": texts, "system": system, "k": k}
        if lang is not None:
            body["lang"] = lang
        response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


@pytest.mark.parametrize(
    ("kind", "field", "settings"),
    [
        ("multilabel", "labels", TrainSettings(recipe="linear", latency_texts=5)),
        ("spans", "spans", TrainSettings(recipe="spacy-ner", epochs=3, latency_texts=5)),
    ],
)
def test_multilabel_and_span_answers_are_the_models_own(
    tmp_path: Path, write_task, kind: str, field: str, settings: TrainSettings
) -> None:
    task = load_task(write_task(tmp_path / "task", task_text(kind, field)))
    write_jsonl(tmp_path / "train.jsonl", presidio(0, 200, kind))
    with threadpool_limits(1):
        train(task, tmp_path / "model", settings, data=tmp_path / "train.jsonl")
    texts = [row["text"] for row in presidio(1000, 1012, kind)]
    with PredictionLog(task, policy="all") as log:
        app = create_app(
            task, {"pii": f"model:{tmp_path / 'model'}"}, ServeSettings(), prediction_log=log
        )
        with serving(app) as url:
            answers = served(url, texts, "pii")
    expected = load_model(tmp_path / "model").predict(texts)
    version = load_model(tmp_path / "model").card["model_sha256"][:16]
    assert len(answers) == len(texts)
    for answer, own in zip(answers, expected, strict=True):
        assert answer["version"] == version and answer["abstained"] is False
        if kind == "multilabel":
            assert answer["labels"] == list(own.answer)
            assert set(answer["probs"]) == set(TYPES)  # k = 4: every label's own probability
            for label, probability in answer["probs"].items():
                assert probability == pytest.approx(own.probs[label], abs=1e-9)
            assert answer["confidence"] == pytest.approx(
                min(max(p, 1 - p) for p in own.probs.values())
            )
        else:
            assert answer["probs"] is None
            assert [(s["start"], s["end"], s["label"], s["score"]) for s in answer["spans"]] == [
                (s.start, s.end, s.label, pytest.approx(s.score, abs=1e-9)) for s in own.answer
            ]
            assert all(0 <= s["score"] <= 1 and s["text"] for s in answer["spans"])
    assert any(a["labels"] if kind == "multilabel" else a["spans"] for a in answers)
    with Store.for_task(task, create=False) as store:  # the log was flushed when it closed
        logged = store.logged_predictions(kind, "pii")
    assert len(logged) == len(texts)


def test_an_llm_system_on_its_own_answers_as_in_process(tmp_path: Path, write_task) -> None:
    task = load_task(write_task(tmp_path / "task"))
    texts = nusax_test_texts(3)
    spec = "llm:smollm2-135m"
    with PredictionLog(task, policy="none") as log:
        app = create_app(task, {"llm": spec}, ServeSettings(), prediction_log=log)
        with serving(app) as url:
            answers = served(url, texts, "llm", k=3)
    (own,) = open_systems([f"llm={spec}"], task).values()
    expected = own.predict(texts)
    for answer, prediction in zip(answers, expected, strict=True):
        assert answer["stage"] is None or answer["stage"] == spec
        assert answer["label"] == prediction.answer and answer["label"] in task.labels
        assert answer["probs"] == pytest.approx(prediction.probs, abs=1e-6)
        assert sum(answer["probs"].values()) == pytest.approx(1, abs=1e-6)
        assert answer["confidence"] == pytest.approx(max(prediction.probs.values()), abs=1e-6)


def test_a_by_lang_system_routes_each_text_and_says_where(tmp_path: Path) -> None:
    # one served system for two languages: lingua sends each text to its language's model
    # (requests carry no meta field), the answer names the route, and equals the in-process one
    example = REPO / "examples" / "nusax-multilingual"
    task = load_task(example / "task.toml")
    rows = [json.loads(line) for line in (example / "train.jsonl").read_text().splitlines()]
    tests = [json.loads(line) for line in (example / "test.jsonl").read_text().splitlines()]
    folders = {}
    for name, langs in {"en": ("en",), "id": ("id",), "all": ("su", "bug")}.items():
        data = [row for row in rows if row["lang"] in langs][:150]
        write_jsonl(tmp_path / f"{name}.jsonl", data)
        folders[name] = tmp_path / name
        with threadpool_limits(1):
            train(
                task,
                folders[name],
                TrainSettings(recipe="linear", latency_texts=2, throughput_texts=8),
                data=tmp_path / f"{name}.jsonl",
            )
    spec = f"by-lang:en={folders['en']},id={folders['id']},*={folders['all']}"
    texts = [row["text"] for row in tests if row["lang"] == "en"][:4]
    texts += [row["text"] for row in tests if row["lang"] == "id"][:4]
    with PredictionLog(task, policy="none") as log:
        app = create_app(task, {"multi": spec}, ServeSettings(), prediction_log=log)
        with serving(app) as url:
            answers = served(url, texts, "multi", k=3)
            # told the language, the system routes by it: English texts called Indonesian
            told = served(url, texts[:4], "multi", k=3, lang="id")
    (own,) = open_systems([f"multi={spec}"], task).values()
    expected = own.predict(texts)
    as_told = own.predict(texts[:4], metas=[{"lang": "id"}] * 4)
    assert [a["route"] for a in told] == [{"route": "id", "lang": "id"}] * 4
    assert [a["probs"] for a in told] == [pytest.approx(p.probs, abs=1e-9) for p in as_told]
    assert [a["route"]["route"] for a in answers] == [p.info["route"] for p in expected]
    assert {"en", "id"} <= {a["route"]["route"] for a in answers}  # both models answered
    for answer, prediction in zip(answers, expected, strict=True):
        assert answer["route"]["lang"] == prediction.info["lang"]
        assert answer["label"] == prediction.answer and answer["abstained"] is False
        assert answer["probs"] == pytest.approx(prediction.probs, abs=1e-9)
