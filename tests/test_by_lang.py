"""Language routing (``--system NAME=by-lang:...``) with real `linear` models trained per
language on NusaX (examples/nusax-multilingual) and real lingua: each text reaches the model of
its language (detected, or from the `lang` meta field), others the `*` route; evaluate reports
accuracy per routed language; malformed specs are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.evaluate.report import render_report
from stillhouse.evaluate.run import evaluate
from stillhouse.predictors import open_systems
from stillhouse.systems.by_lang import ROUTE_SLICE, RoutedSystem
from stillhouse.task import Task, load_task
from stillhouse.train import TrainSettings, load_model, train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nusax-multilingual"
FAST = dict(threads=1, latency_texts=2, throughput_texts=8)


def rows(split: str, lang: str, n: int) -> list[dict[str, str]]:
    """The first ``n`` rows of ``lang`` in the example's ``split`` file."""
    lines = (EXAMPLE / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    found = [row for row in map(json.loads, lines) if row["lang"] == lang]
    return found[:n]


@pytest.fixture(scope="module")
def task() -> Task:
    return load_task(EXAMPLE / "task.toml")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, task: Task) -> dict[str, Path]:
    """A linear model per language (en, id, jv: 150 rows each) and `all` (su + bug)."""
    root = tmp_path_factory.mktemp("by-lang")
    data = {
        "en": rows("train", "en", 150),
        "id": rows("train", "id", 150),
        "jv": rows("train", "jv", 150),
        "all": rows("train", "su", 75) + rows("train", "bug", 75),
    }
    folders = {}
    for name, examples in data.items():
        write_jsonl(root / f"{name}.jsonl", examples)
        folders[name] = root / name
        train(task, folders[name], TrainSettings(**FAST), data=root / f"{name}.jsonl")
    return folders


def spec(models: dict[str, Path]) -> str:
    return f"en={models['en']},id={models['id']},jv=model:{models['jv']},*={models['all']}"


def open_routed(models: dict[str, Path], task: Task) -> RoutedSystem:
    system = open_systems([f"multi=by-lang:{spec(models)}"], task)["multi"]
    assert isinstance(system, RoutedSystem)
    return system


def direct(models: dict[str, Path], name: str, task: Task, texts: list[str]) -> np.ndarray:
    return load_model(models[name], task=task).probabilities(texts)


def probs_of(predictions: list, labels: list[str]) -> np.ndarray:
    return np.array([[p.probs[label] for label in labels] for p in predictions])


def test_lingua_sends_english_and_indonesian_to_their_models(
    models: dict[str, Path], task: Task
) -> None:
    system = open_routed(models, task)
    english = [row["text"] for row in rows("test", "en", 20)]
    indonesian = [row["text"] for row in rows("test", "id", 20)]
    predictions = system.predict(english + indonesian)
    routes = [p.info["route"] for p in predictions]
    assert all(p.info["lang_from"] == "lingua" for p in predictions)
    assert routes[:20].count("en") >= 18
    assert routes[20:].count("id") >= 14  # short Indonesian texts are sometimes Malay to lingua
    for name in ("en", "id", "*"):
        chosen = [i for i, route in enumerate(routes) if route == name]
        if not chosen:
            continue
        texts = [(english + indonesian)[i] for i in chosen]
        expected = direct(models, "all" if name == "*" else name, task, texts)
        got = probs_of([predictions[i] for i in chosen], task.label_names)
        assert np.allclose(got, expected, atol=1e-9)
    assert system.describe()["texts_routed"]["en"] == routes.count("en")


def test_the_lang_meta_field_routes_languages_lingua_cannot_detect(
    models: dict[str, Path], task: Task
) -> None:
    system = open_routed(models, task)
    javanese = [row["text"] for row in rows("test", "jv", 10)]
    sundanese = [row["text"] for row in rows("test", "su", 5)]
    metas = [{"lang": "jv"}] * 10 + [{"lang": "su"}] * 5
    predictions = system.predict(javanese + sundanese, metas=metas)
    assert [p.info["route"] for p in predictions] == ["jv"] * 10 + ["*"] * 5
    assert all(p.info["lang_from"] == "meta" for p in predictions)
    assert np.allclose(
        probs_of(predictions[:10], task.label_names), direct(models, "jv", task, javanese)
    )
    assert np.allclose(
        probs_of(predictions[10:], task.label_names), direct(models, "all", task, sundanese)
    )
    # without the field, lingua (which knows no Javanese) never picks the jv route
    unrouted = system.predict(javanese)
    assert all(p.info["route"] != "jv" for p in unrouted)


def test_evaluate_reports_accuracy_per_routed_language(
    models: dict[str, Path], task: Task, tmp_path: Path
) -> None:
    test = [row for lang in ("en", "id", "jv") for row in rows("test", lang, 15)]
    write_jsonl(tmp_path / "test.jsonl", test)
    systems = open_systems([f"multi=by-lang:{spec(models)}"], task)
    results = evaluate(task, tmp_path / "test.jsonl", systems, n_resamples=50)
    sliced = results.systems["multi"]["slices"][ROUTE_SLICE]
    assert {name: group["n"] for name, group in sliced["groups"].items()} == {
        "en": 15,
        "id": 15,
        "jv": 15,
    }
    jv_texts = [row["text"] for row in test[30:]]
    jv_gold = np.array([task.label_names.index(row["label"]) for row in test[30:]])
    jv_accuracy = float((direct(models, "jv", task, jv_texts).argmax(axis=1) == jv_gold).mean())
    assert sliced["groups"]["jv"]["accuracy"]["estimate"] == pytest.approx(jv_accuracy)
    # report.html shows the routed slice though no --slice asked for it
    page = render_report(results)
    assert f"<h3>by {ROUTE_SLICE}</h3>" in page and "Accuracy by lang (routed): multi" in page


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        ("en=a,*=b,en=c", "E750", "already has a route"),
        ("english=a,*=b", "E750", "`english` is not a language code"),
        ("en=,*=b", "E750", "LANG=TARGET"),
        ("en=a,jv=b", "E751", "no `*` route"),
    ],
)
def test_malformed_specs_are_refused(value: str, code: str, words: str, task: Task) -> None:
    with pytest.raises(StillhouseError) as raised:
        open_systems([f"multi=by-lang:{value}"], task)
    assert raised.value.code == code and words in raised.value.message


def test_routing_needs_a_classification_task() -> None:
    multilabel = Task(name="t", kind="multilabel", labels={"a": "", "b": ""})
    with pytest.raises(StillhouseError) as raised:
        open_systems(["multi=by-lang:en=a,*=b"], multilabel)
    assert raised.value.code == "E752"
