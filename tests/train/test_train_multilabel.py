"""Multilabel training (one-vs-rest heads) on real text: presidio-research's synthetic PII,
where a text's labels are the PII types its gold spans contain (derivation in
structured_data.py: no hand labels, six types with at least 30 of the first 400 texts).

Train on texts 0–399, test on 1000–1199: the folder and card, calibrated per-label
probabilities, the model as an evaluate system and through `stillhouse predict`, the label
policy on a store, and the refusals."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from structured_data import TYPES, presidio_multilabel, task_text
from train_data import reseal, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.evaluate.accuracy import multilabel_metrics
from stillhouse.evaluate.run import evaluate
from stillhouse.predictors import open_systems
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.answers import from_store
from stillhouse.train.model import MultilabelModel

pytestmark = pytest.mark.slow

CLI = Callable[..., subprocess.CompletedProcess[str]]
FAST = TrainSettings(recipe="linear", latency_texts=20, throughput_texts=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("multilabel")
    write_task(folder / "task", task_text("pii-kinds", "multilabel", "labels", TYPES))
    task = load_task(folder / "task")
    write_jsonl(folder / "train.jsonl", presidio_multilabel(0, 400))
    test_rows = presidio_multilabel(1000, 1200)
    write_jsonl(folder / "test.jsonl", test_rows)
    write_jsonl(folder / "texts.jsonl", [{"id": r["id"], "text": r["text"]} for r in test_rows])
    summary = train(task, folder / "models" / "linear", FAST, data=folder / "train.jsonl")
    return task, folder, summary, test_rows


def error_of(call) -> StillhouseError:
    with pytest.raises(StillhouseError) as error:
        call()
    return error.value


def indicator(label_sets: list[list[str]]) -> np.ndarray:
    return np.array([[label in labels for label in TYPES] for labels in label_sets], dtype=int)


def test_the_card_has_per_label_calibration_and_held_out_metrics(trained) -> None:
    _, folder, summary, _ = trained
    model_dir = folder / "models" / "linear"
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    assert card == summary.card and card["task"]["kind"] == "multilabel"
    assert sorted(card["files"]) == ["vocabulary.json", "weights.safetensors"]
    assert card["labels"] == list(TYPES) and card["refit"] is True
    data = card["training_data"]
    assert data["examples"] == 400 and data["train_rows"] + data["held_out_rows"] == 400
    assert data["label_counts"]["PERSON"] == 181 and data["mix"] == {"gold": 400}
    calibration = card["calibration"]
    assert set(calibration["temperature"]) == set(TYPES)
    assert all(0.01 <= t <= 100 for t in calibration["temperature"].values())
    assert set(calibration["not_fitted"]) <= set(TYPES)
    assert all(calibration["temperature"][label] == 1.0 for label in calibration["not_fitted"])
    assert calibration["threshold"] == 0.5 and calibration["threshold_tuned"] is False
    assert 0 <= calibration["ece_after"] <= 0.2 and 0 <= calibration["ece_before"] <= 1
    held = card["held_out"]
    for metric in ("accuracy", "micro_f1", "macro_f1", "hamming_loss"):
        assert held[metric]["low"] <= held[metric]["estimate"] <= held[metric]["high"]
    assert held["micro_f1"]["estimate"] > 0.6 and set(held["per_label"]) == set(TYPES)
    readme = (model_dir / "README.md").read_text(encoding="utf-8")
    assert "held-out micro-F1" in readme and "threshold 0.5" in readme
    assert card["model_sha256"] in readme and card["speed"]["throughput_per_s"] > 0


def test_predictions_are_label_sets_with_a_calibrated_probability_per_label(trained) -> None:
    task, folder, _, test_rows = trained
    model = load_model(folder / "models" / "linear", task=task)
    assert isinstance(model, MultilabelModel)
    predictions = model.predict([row["text"] for row in test_rows])
    for prediction in predictions:
        assert set(prediction.probs) == set(TYPES)
        assert all(0 <= p <= 1 for p in prediction.probs.values())
        assert prediction.answer == tuple(
            label for label in TYPES if prediction.probs[label] >= 0.5
        )
    gold = indicator([row["labels"] for row in test_rows])
    guess = indicator([list(p.answer) for p in predictions])
    scores = multilabel_metrics(gold, guess)
    # a baseline that gives every text the training set's most common label set (PERSON only)
    baseline = multilabel_metrics(gold, indicator([["PERSON"]] * len(test_rows)))
    assert scores["micro_f1"] > 0.7 and scores["micro_f1"] > baseline["micro_f1"] + 0.2
    assert scores["subset_accuracy"] > baseline["subset_accuracy"] + 0.2


def test_model_system_and_predict_cli_agree(trained, run_cli: CLI) -> None:
    task, folder, _, test_rows = trained
    predicted = run_cli(
        folder,
        *("predict", "--model", "models/linear", "--input", "texts.jsonl"),
        *("--out", "preds.jsonl"),
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in (folder / "preds.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [row["id"] for row in test_rows]
    assert set(rows[0]) == {"id", "labels", "probs"} and set(rows[0]["probs"]) == set(TYPES)
    systems = open_systems(
        ["model=model:" + str(folder / "models" / "linear"), f"file=preds:{folder}/preds.jsonl"],
        task,
    )
    results = evaluate(task, folder / "test.jsonl", systems, n_resamples=200)
    model, file = results.systems["model"]["metrics"], results.systems["file"]["metrics"]
    assert model["micro_f1"]["estimate"] == pytest.approx(file["micro_f1"]["estimate"])
    assert model["micro_f1"]["estimate"] > 0.7


def test_encoder_recipe_and_reproducible_linear_hash(trained) -> None:
    task, folder, summary, test_rows = trained
    again = train(task, folder / "models" / "again", FAST, data=folder / "train.jsonl")
    assert again.card["model_sha256"] == summary.card["model_sha256"]
    encoder = train(
        task,
        folder / "models" / "encoder",
        TrainSettings(recipe="encoder", latency_texts=10, throughput_texts=50),
        data=folder / "train.jsonl",
    )
    card = encoder.card
    assert card["base_model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert card["quantization"] == "int8"
    assert sorted(card["files"]) == ["encoder.onnx", "head.safetensors", "tokenizer.json"]
    assert card["held_out"]["micro_f1"]["estimate"] > 0.6
    model = load_model(folder / "models" / "encoder", task=task)
    assert model.describe()["runtime"] == "onnxruntime"
    predictions = model.predict([row["text"] for row in test_rows[:50]])
    gold = indicator([row["labels"] for row in test_rows[:50]])
    assert (
        multilabel_metrics(gold, indicator([list(p.answer) for p in predictions]))["micro_f1"] > 0.6
    )


def test_label_policy_from_a_store(tmp_path: Path) -> None:
    """Gold > human > LLM; an LLM label set's confidence is its least sure label decision."""
    task = load_task(write_task(tmp_path, task_text("pii", "multilabel", "labels", TYPES)))
    rows = presidio_multilabel(0, 6)
    examples = [
        Example(row["id"], row["text"], gold=tuple(row["labels"]) if i == 0 else None)
        for i, row in enumerate(rows)
    ]

    def llm(example_id: str, yes: dict[str, float]) -> Annotation:
        probs = {label: yes.get(label, 0.05) for label in TYPES}
        answer = tuple(label for label in TYPES if probs[label] >= 0.5)
        return Annotation(example_id, "llm:qwen@abc", answer, probs, created_at=1.0)

    annotations = [
        Annotation(rows[1]["id"], "human:ana", ("GPE",), created_at=2.0),
        llm(rows[1]["id"], {"PERSON": 0.9}),
        llm(rows[2]["id"], {"PERSON": 0.9, "GPE": 0.8}),  # least sure: GPE yes at 0.8
        llm(rows[3]["id"], {"PERSON": 0.6}),  # 0.6: below 0.7, dropped
        llm(rows[4]["id"], {"ORGANIZATION": 0.3}),  # no label; least sure: 1 − 0.3
    ]
    with Store(task.store_path) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
    answers = from_store(task, "best", min_llm_confidence=0.7)
    chosen = dict(zip(answers.ids, zip(answers.answers, answers.weights, strict=True), strict=True))
    assert chosen[rows[0]["id"]] == (tuple(rows[0]["labels"]), 1.0)
    assert chosen[rows[1]["id"]] == (("GPE",), 1.0)
    assert chosen[rows[2]["id"]] == (("PERSON", "GPE"), pytest.approx(0.8))
    assert chosen[rows[4]["id"]] == ((), pytest.approx(0.7))
    assert rows[3]["id"] not in chosen
    assert answers.mix == {
        "gold": 1,
        "human": 1,
        "llm": 2,
        "llm_below_confidence": 1,
        "unlabelled": 1,
    }


def test_bad_input_is_refused_with_the_label_and_count(trained, tmp_path: Path) -> None:
    task, folder, _, _ = trained
    data = folder / "train.jsonl"
    lora = error_of(
        lambda: train(task, tmp_path / "m", TrainSettings(recipe="lora-encoder"), data=data)
    )
    assert lora.code == "E740" and "linear, encoder" in str(lora)
    spacy = error_of(
        lambda: train(task, tmp_path / "m", TrainSettings(recipe="spacy-ner"), data=data)
    )
    assert spacy.code == "E740"
    few = error_of(lambda: train(task, tmp_path / "m", TrainSettings(min_per_label=40), data=data))
    assert few.code == "E741" and "'DATE_TIME' has 31" in str(few) and "CREDIT_CARD" in str(few)
    answers_everywhere = tmp_path / "all.jsonl"
    write_jsonl(
        answers_everywhere,
        [{**row, "labels": [*row["labels"], "GPE"]} for row in presidio_multilabel(0, 40)],
    )
    every = error_of(
        lambda: train(task, tmp_path / "m", TrainSettings(min_per_label=0), data=answers_everywhere)
    )
    assert every.code == "E742" and "'GPE'" in str(every) and "40" in str(every)
    empty = tmp_path / "empty.jsonl"
    write_jsonl(empty, [{**row, "labels": []} for row in presidio_multilabel(0, 40)])
    none = error_of(lambda: train(task, tmp_path / "m", FAST, data=empty))
    assert none.code == "E743" and "labels" in str(none)
    two = tmp_path / "two.jsonl"
    write_jsonl(two, presidio_multilabel(0, 2))  # ORGANIZATION + STREET_ADDRESS, then none
    tiny = error_of(lambda: train(task, tmp_path / "m", TrainSettings(min_per_label=0), data=two))
    assert tiny.code == "E747" and "2 training example(s)" in str(tiny)
    unknown = tmp_path / "unknown.jsonl"
    write_jsonl(unknown, [{"text": "Call Ana at 555-0100", "labels": ["PHONE_NUMBER"]}])
    bad = error_of(lambda: train(task, tmp_path / "m", FAST, data=unknown))
    assert bad.code == "E105" and "PHONE_NUMBER" in str(bad) and "unknown.jsonl:1" in str(bad)
    assert not (tmp_path / "m").exists()


def test_incomplete_folder_and_other_labels_are_refused_on_load(trained, tmp_path: Path) -> None:
    import shutil

    _, folder, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(folder / "models" / "linear", copy)
    other = load_task(
        write_task(tmp_path / "other", task_text("o", "multilabel", "labels", TYPES[:3]))
    )
    assert error_of(lambda: load_model(copy, task=other)).code == "E723"
    card = json.loads((copy / "card.json").read_text(encoding="utf-8"))
    del card["calibration"]["temperature"]["GPE"]
    (copy / "card.json").write_text(json.dumps(card), encoding="utf-8")
    reseal(copy)  # as if train had written it so
    no_temperature = error_of(lambda: load_model(copy))
    assert no_temperature.code == "E721" and "temperature" in str(no_temperature)
    (copy / "weights.safetensors").write_bytes(b"cut short")
    assert error_of(lambda: load_model(copy)).code == "E725"
