"""Span training (spaCy NER fine-tuned from en_core_web_sm) on real data.

- presidio-research synthetic PII (texts 0–399 train, 1000–1149 test; four types: PERSON,
  STREET_ADDRESS, GPE, ORGANIZATION; spans exactly as given): the folder, its card, checked
  loading, predictions by character offsets, and the gain over the untouched base pipeline.
- wnut17 (tweets, CoNLL BIO converted to text + character spans in structured_data.py):
  the conversion, and `stillhouse train`/`predict` as a user runs them with evaluate's
  `model:DIR` next to the predictions file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from structured_data import (
    WNUT17,
    WNUT17_TYPES,
    presidio_spans,
    read_conll,
    task_text,
    wnut17_rows,
)
from train_data import NUSAX_TASK, nusax_train, reseal, write_task

from stillhouse.data.io import read_examples, write_jsonl
from stillhouse.data.records import Annotation, Example, Span
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.evaluate.accuracy import span_metrics
from stillhouse.evaluate.calibration import expected_calibration_error
from stillhouse.evaluate.run import evaluate
from stillhouse.predictors import open_systems
from stillhouse.provenance import file_sha256
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.answers import from_store as span_answers_from_store
from stillhouse.train.recipes.parts.span_confidence import beam_spans
from stillhouse.train.recipes.spacy_ner import SpanModel, base_pipeline

pytestmark = pytest.mark.slow

CLI = Callable[..., subprocess.CompletedProcess[str]]
TYPES = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION")
SETTINGS = TrainSettings(recipe="spacy-ner", epochs=10, latency_texts=20, throughput_texts=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("spans")
    task = load_task(write_task(folder / "task", task_text("pii", "spans", "spans", TYPES)))
    write_jsonl(folder / "train.jsonl", presidio_spans(0, 400, TYPES))
    summary = train(task, folder / "models" / "ner", SETTINGS, data=folder / "train.jsonl")
    return task, folder, summary


def error_of(call) -> StillhouseError:
    with pytest.raises(StillhouseError) as error:
        call()
    return error.value


def triples(spans) -> list[tuple[int, int, str]]:
    return [
        (s["start"], s["end"], s["label"]) if isinstance(s, dict) else (s.start, s.end, s.label)
        for s in spans
    ]


def test_wnut17_bio_becomes_text_and_character_spans(tmp_path: Path) -> None:
    sentences = read_conll(WNUT17)
    rows = wnut17_rows(len(sentences))
    assert len(rows) == len(sentences) == 3394
    begins = sum(tag.startswith("B-") for sentence in sentences for _, tag in sentence)
    assert sum(len(row["spans"]) for row in rows) == begins == 1975
    for sentence, row in zip(sentences, rows, strict=True):
        assert row["text"] == " ".join(token for token, _ in sentence)
        tokens_in_entities = [token for token, tag in sentence if tag != "O"]
        covered = [row["text"][s["start"] : s["end"]].split(" ") for s in row["spans"]]
        assert [token for entity in covered for token in entity] == tokens_in_entities
    # the converted rows are valid span data for a wnut17 task (offsets, labels)
    task = load_task(write_task(tmp_path, task_text("wnut17", "spans", "spans", WNUT17_TYPES)))
    write_jsonl(tmp_path / "wnut.jsonl", rows)
    assert len(read_examples(tmp_path / "wnut.jsonl", task, require_gold=True).examples) == 3394


def test_the_folder_holds_a_hashed_spacy_pipeline_and_the_card(trained) -> None:
    _, folder, summary = trained
    model_dir = folder / "models" / "ner"
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    assert card == summary.card and card["task"]["kind"] == "spans"
    assert card["recipe"] == "spacy-ner" and card["base_model"]["license"] == "MIT"
    assert {"pipeline/config.cfg", "pipeline/ner/model", "pipeline/ner/moves"} <= set(card["files"])
    assert not any(
        name.startswith(("pipeline/parser", "pipeline/tagger")) for name in card["files"]
    )
    for name, entry in card["files"].items():
        assert file_sha256(model_dir / name) == entry["sha256"]
    assert card["size_bytes"] == sum(entry["bytes"] for entry in card["files"].values())
    # the manifest lists every file of the folder, the pipeline's and the card's alike
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))["files"]
    on_disk = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert (
        set(manifest)
        == on_disk - {"manifest.json"}
        == set(card["files"])
        | {
            "card.json",
            "README.md",
        }
    )
    for name, entry in manifest.items():
        assert file_sha256(model_dir / name) == entry["sha256"]
    calibration = card["calibration"]
    assert calibration["method"].startswith("Platt scaling") and card["refit"] is False
    assert 0 < calibration["right"] < calibration["spans"] and calibration["slope"] > 0
    assert calibration["ece_after"] < calibration["ece_before"]
    run = card["training_run"]
    assert 1 <= run["epochs"] <= 10 and run["best_f1"] == max(run["f1_per_epoch"])
    assert run["stopped"] in ("epochs", "early stopping")
    held = card["held_out"]
    assert held["n"] == card["training_data"]["held_out_rows"] >= 50
    for metric in ("micro_f1", "precision", "recall", "partial_f1"):
        assert held[metric]["low"] <= held[metric]["estimate"] <= held[metric]["high"]
    assert held["micro_f1"]["estimate"] == pytest.approx(run["best_f1"])
    assert set(held["per_label"]["PERSON"]) == {"strict", "partial"}
    readme = (model_dir / "README.md").read_text(encoding="utf-8")
    assert "held-out strict F1" in readme and "held-out ECE over predicted spans" in readme


def test_predictions_are_character_spans_better_than_the_base_pipeline(trained) -> None:
    task, folder, _ = trained
    model = load_model(folder / "models" / "ner", task=task)
    assert isinstance(model, SpanModel)
    test = presidio_spans(1000, 1150, TYPES)
    texts = [row["text"] for row in test]
    predictions = model.predict(texts)
    for text, prediction in zip(texts, predictions, strict=True):
        assert prediction.probs is None
        for span in prediction.answer:
            assert span.label in TYPES and text[span.start : span.end] == span.text
            assert 0 < span.score < 1
    gold = [triples(row["spans"]) for row in test]
    # the held-out scaling carries over to unseen texts: calibrated scores beat the raw beam
    # marginals (same spans) on ECE
    raw = beam_spans(model.nlp, texts, set(TYPES))
    assert [triples(a) for a in raw] == [triples(p.answer) for p in predictions]
    right = np.array(
        [
            triple in set(truth)
            for truth, prediction in zip(gold, predictions, strict=True)
            for triple in triples(prediction.answer)
        ]
    )
    scores = [
        np.array([s.score for answer in answers for s in answer])
        for answers in (raw, [p.answer for p in predictions])
    ]
    before, after = (expected_calibration_error(c, right, 10, "mass") for c in scores)
    assert right.size > 100 and after < before - 0.05
    # evaluate measures the same calibration over the model's predicted spans
    write_jsonl(folder / "test.jsonl", test)
    systems = open_systems([f"ner=model:{folder / 'models' / 'ner'}"], task)
    measured = evaluate(task, folder / "test.jsonl", systems, n_resamples=20).systems["ner"]
    calibration = measured["calibration"]
    assert calibration["items"] == right.size
    assert calibration["ece_10_equal_mass"] == pytest.approx(after)
    tuned = span_metrics(gold, [triples(p.answer) for p in predictions])["strict"]
    base = span_metrics(gold, [triples(a) for a in beam_spans(base_pipeline(), texts, set(TYPES))])
    # the base knows PERSON and GPE (OntoNotes) but not STREET_ADDRESS or ORGANIZATION
    assert tuned["f1"] > base["strict"]["f1"] + 0.15 and tuned["f1"] > 0.6
    for label in ("STREET_ADDRESS", "ORGANIZATION"):  # learned from zero
        assert base["strict"]["per_type"][label]["f1"] == 0 and tuned["per_type"][label]["f1"] > 0.2


def test_load_checks_files_in_the_pipeline_folder(trained, tmp_path: Path) -> None:
    _, folder, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(folder / "models" / "ner", copy)
    other = load_task(write_task(tmp_path / "o", task_text("o", "spans", "spans", TYPES[:2])))
    assert error_of(lambda: load_model(copy, task=other)).code == "E723"
    (copy / "pipeline" / "ner" / "moves").unlink()
    missing = error_of(lambda: load_model(copy))
    assert missing.code == "E721" and "pipeline/ner/moves" in str(missing)
    shutil.copy(folder / "models" / "ner" / "pipeline" / "ner" / "moves", copy / "pipeline/ner")
    (copy / "pipeline" / "ner" / "model").write_bytes(b"cut short")
    changed = error_of(lambda: load_model(copy))
    assert changed.code == "E725" and "pipeline/ner/model" in str(changed)
    shutil.copy(folder / "models" / "ner" / "pipeline" / "ner" / "model", copy / "pipeline/ner")
    (copy / "pipeline" / "ner" / "notes.txt").write_text("added later", encoding="utf-8")
    added = error_of(lambda: load_model(copy))
    assert added.code == "E726" and "pipeline/ner/notes.txt" in str(added)
    (copy / "pipeline" / "ner" / "notes.txt").unlink()
    card = json.loads((copy / "card.json").read_text(encoding="utf-8"))
    del card["calibration"]["slope"]  # a folder from before spans had confidences
    (copy / "card.json").write_text(json.dumps(card), encoding="utf-8")
    reseal(copy)  # as if train had written it so
    older = error_of(lambda: load_model(copy))
    assert older.code == "E721" and "span calibration" in str(older)


def test_cli_train_predict_and_evaluate_on_wnut17(tmp_path: Path, run_cli: CLI) -> None:
    write_task(tmp_path / "task", task_text("wnut17", "spans", "spans", WNUT17_TYPES))
    write_jsonl(tmp_path / "train.jsonl", wnut17_rows(200))
    test = [
        {**row, "id": f"d{i}"} for i, row in enumerate(wnut17_rows(60, with_entities_only=True))
    ]
    write_jsonl(tmp_path / "test.jsonl", test)
    write_jsonl(tmp_path / "texts.jsonl", [{"id": r["id"], "text": r["text"]} for r in test])
    args = ("train", "--task", "task", "--data", "train.jsonl", "--recipe", "spacy-ner")
    trained = run_cli(tmp_path, *args, "--epochs", "2", "--max-steps", "12", "--out", "m")
    assert trained.returncode == 0, trained.stderr
    assert "held-out strict F1" in trained.stdout and "wrote m" in trained.stdout
    card = json.loads((tmp_path / "m" / "card.json").read_text(encoding="utf-8"))
    assert card["training_run"]["steps"] == 12 and card["training_run"]["stopped"] == "max steps"
    predicted = run_cli(
        tmp_path, "predict", "--model", "m", "--input", "texts.jsonl", "--out", "preds.jsonl"
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [row["id"] for row in test]
    assert all(set(row) == {"id", "spans"} for row in rows)
    # 12 updates are too few to predict a span: no scaling is fitted, the card says why
    assert not any(row["spans"] for row in rows)
    assert card["calibration"]["method"].startswith("none fitted: 0 of 0 held-out spans")
    task = load_task(tmp_path / "task")
    systems = open_systems(
        [f"model=model:{tmp_path / 'm'}", f"file=preds:{tmp_path}/preds.jsonl"], task
    )
    results = evaluate(task, tmp_path / "test.jsonl", systems, n_resamples=100)
    model, file = results.systems["model"]["metrics"], results.systems["file"]["metrics"]
    assert model["micro_f1"] == file["micro_f1"] and model["recall"] == file["recall"]
    bad = run_cli(tmp_path, *args, "--quantize", "int8", "--out", "m2")
    assert bad.returncode == 2 and "[E709]" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "m2").exists()


def test_bad_span_data_and_recipes_are_refused(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "task", task_text("pii", "spans", "spans", TYPES)))
    rows = presidio_spans(0, 40, TYPES)
    good = tmp_path / "good.jsonl"
    write_jsonl(good, rows)
    ner = TrainSettings(recipe="spacy-ner")

    def refused(settings: TrainSettings, data: Path, on: object = task) -> StillhouseError:
        return error_of(lambda: train(on, tmp_path / "m", settings, data=data))  # type: ignore[arg-type]

    linear = refused(TrainSettings(recipe="linear"), good)
    assert linear.code == "E740" and "spacy-ner" in str(linear)
    assert refused(TrainSettings(recipe="spacy-ner", c=1.0), good).code == "E746"
    assert refused(TrainSettings(recipe="spacy-ner", quantize="int8"), good).code == "E709"
    classify = load_task(write_task(tmp_path / "nusax", NUSAX_TASK))
    write_jsonl(tmp_path / "nusax.jsonl", nusax_train(30))
    assert refused(ner, tmp_path / "nusax.jsonl", classify).code == "E740"
    # overlapping spans: a second span inside the first one of a real text
    at = next(i for i, row in enumerate(rows) if row["spans"])
    first = rows[at]
    inner = dict(first["spans"][0], end=first["spans"][0]["start"] + 2, label="GPE")
    overlapping = tmp_path / "overlap.jsonl"
    changed = dict(first, spans=[*first["spans"], inner])
    write_jsonl(overlapping, [*rows[:at], changed, *rows[at + 1 :]])
    overlap = refused(ner, overlapping)
    assert overlap.code == "E744" and repr(first["id"]) in str(overlap)
    beyond = tmp_path / "beyond.jsonl"
    length = len(rows[0]["text"])
    write_jsonl(beyond, [dict(rows[0], spans=[{"start": 0, "end": length + 5, "label": "GPE"}])])
    out_of_range = refused(ner, beyond)
    assert out_of_range.code == "E105" and "beyond.jsonl:1" in str(out_of_range)
    empty = tmp_path / "empty.jsonl"
    write_jsonl(empty, [dict(row, spans=[]) for row in rows])
    assert refused(ner, empty).code == "E743"
    few = refused(TrainSettings(recipe="spacy-ner", min_per_label=15), good)
    assert few.code == "E741" and "span(s)" in str(few)
    assert not (tmp_path / "m").exists()


def test_same_seed_and_data_give_the_same_pipeline(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "task", task_text("pii", "spans", "spans", TYPES)))
    write_jsonl(tmp_path / "train.jsonl", presidio_spans(0, 60, TYPES))
    short = TrainSettings(
        recipe="spacy-ner",
        epochs=1,
        max_steps=4,
        min_per_label=1,
        latency_texts=5,
        throughput_texts=10,
    )
    hashes = [
        train(task, tmp_path / name, short, data=tmp_path / "train.jsonl").card["model_sha256"]
        for name in ("a", "b")
    ]
    other = train(task, tmp_path / "c", replace(short, seed=1), data=tmp_path / "train.jsonl").card[
        "model_sha256"
    ]
    assert hashes[0] == hashes[1] != other


def test_span_answers_from_a_store(tmp_path: Path) -> None:
    """Gold > human > LLM for span answers; LLM spans carry no probabilities (weight 1)."""
    task = load_task(write_task(tmp_path, task_text("pii", "spans", "spans", TYPES)))
    rows = [row for row in presidio_spans(0, 20, TYPES) if row["spans"]][:3]

    def spans(row: dict, label: str | None = None) -> tuple[Span, ...]:
        return tuple(
            Span(s["start"], s["end"], label or s["label"], row["text"][s["start"] : s["end"]])
            for s in row["spans"]
        )

    examples = [Example(row["id"], row["text"]) for row in rows]
    annotations = [
        Annotation(rows[0]["id"], "human:ana", spans(rows[0]), created_at=2.0),
        Annotation(rows[0]["id"], "llm:qwen@abc", spans(rows[0], "GPE"), created_at=3.0),
        Annotation(rows[1]["id"], "llm:qwen@abc", spans(rows[1]), created_at=1.0),
    ]
    with Store(task.store_path) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
    answers = span_answers_from_store(task, "best", min_llm_confidence=0.9)
    assert answers.ids == [rows[0]["id"], rows[1]["id"]]
    assert answers.answers == [spans(rows[0]), spans(rows[1])]
    assert answers.weights == [1.0, 1.0] and answers.sources == ["human", "llm"]
    assert answers.mix == {"human": 1, "llm": 1, "llm_without_probabilities": 1, "unlabelled": 1}
