"""Robustness and fairness through evaluate(): a real TF-IDF + logistic-regression system on 300
banking77 test messages, checked against predicting every perturbed text directly with the
model; predictions files are reported as not measured; gate's max_flip_rate reads the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from banking_system import (
    TfidfSystem,
    require_banking,
    sample_test_rows,
    write_banking_task,
    write_rows_jsonl,
)

from stillhouse.evaluate.perturb import perturb
from stillhouse.evaluate.results import Results, read_results, write_results
from stillhouse.evaluate.run import evaluate
from stillhouse.gate import gate
from stillhouse.predictors import PredictionsFile
from stillhouse.task import Task, load_task

pytestmark = pytest.mark.slow  # the gender perturbation loads spaCy's English pipeline

PERTURBATIONS = ("lowercase", "typos", "mild_mix", "punctuation", "gender", "names")
ROBUSTNESS = ("lowercase", "typos", "mild_mix", "punctuation")


class Fixture:
    def __init__(self, folder: Path) -> None:
        require_banking()
        self.folder = folder
        self.task: Task = load_task(write_banking_task(folder / "task"))
        self.rows = sample_test_rows(300, seed=4)
        # names swap needs names: two messages get one (the test set has almost none)
        self.rows[0] = {**self.rows[0], "text": "Can Emily use my card to pay Jack?"}
        self.rows[1] = {**self.rows[1], "text": "My husband Greg cannot top up his card."}
        self.test = write_rows_jsonl(folder / "test.jsonl", self.rows)
        self.texts = [row["text"] for row in self.rows]
        self.system = TfidfSystem(self.task.label_names, folder / "tfidf")
        predictions = self.system.predict(self.texts)
        self.file = write_rows_jsonl(
            folder / "tfidf.jsonl",
            [
                {"id": row["id"], "label": p.answer, "probs": p.probs}
                for row, p in zip(self.rows, predictions, strict=True)
            ],
        )

    def model_answers(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.system.model.predict(texts))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("robustness"))


@pytest.fixture(scope="module")
def results(data: Fixture) -> Results:
    systems = {"tfidf": data.system, "file": PredictionsFile(data.file, data.task)}
    computed = evaluate(
        data.task, data.test, systems, n_resamples=300, seed=0, perturbations=PERTURBATIONS
    )
    return read_results(write_results(computed, data.folder / "out" / "results.json"))


def test_each_perturbation_matches_predicting_every_perturbed_text(
    data: Fixture, results: Results
) -> None:
    gold = np.array([row["category"] for row in data.rows])
    original = data.model_answers(data.texts)
    robustness = results.systems["tfidf"]["robustness"]
    assert list(robustness["perturbations"]) == list(PERTURBATIONS)
    worst = {"robustness": original == gold, "fairness": original == gold}
    for name in PERTURBATIONS:
        perturbed = perturb(data.texts, name, seed=0)
        answers = data.model_answers(perturbed)
        row = robustness["perturbations"][name]
        assert row["accuracy"]["estimate"] == pytest.approx(np.mean(answers == gold))
        assert row["flip_rate"]["estimate"] == pytest.approx(np.mean(answers != original))
        assert row["flipped"] == int(np.sum(answers != original))
        assert row["changed"] == sum(p != t for p, t in zip(perturbed, data.texts, strict=True))
        assert row["flip_rate"]["low"] <= row["flip_rate"]["estimate"] <= row["flip_rate"]["high"]
        worst[row["family"]] &= answers == gold
    assert robustness["worst_case_accuracy"]["estimate"] == pytest.approx(
        worst["robustness"].mean()
    )
    assert robustness["worst_case_accuracy"]["over"] == list(ROBUSTNESS)
    assert robustness["fairness_worst_case_accuracy"]["estimate"] == pytest.approx(
        worst["fairness"].mean()
    )


def test_what_the_numbers_say_about_this_model(results: Results) -> None:
    robustness = results.systems["tfidf"]["robustness"]
    rows = robustness["perturbations"]
    accuracy = results.systems["tfidf"]["metrics"]["accuracy"]["estimate"]
    assert rows["lowercase"]["flip_rate"]["estimate"] == 0.0  # TfidfVectorizer lower-cases
    assert rows["typos"]["accuracy"]["estimate"] < accuracy - 0.05  # words it never saw
    assert rows["names"]["changed"] == 2 and rows["gender"]["changed"] >= 1
    assert robustness["worst_case_accuracy"]["estimate"] <= rows["typos"]["accuracy"]["estimate"]
    highest = max(rows, key=lambda name: rows[name]["flip_rate"]["estimate"])
    assert robustness["max_flip_rate"] == {
        "perturbation": highest,
        "value": rows[highest]["flip_rate"]["estimate"],
    }


def test_a_predictions_file_is_not_measured_and_says_why(results: Results) -> None:
    system = results.systems["file"]
    assert system["robustness"] is None
    assert "predictions file" in system["not_measured"]["robustness"]
    assert results.settings["perturbations"] == list(PERTURBATIONS)


def test_gate_max_flip_rate_reads_the_highest_flip_rate(
    data: Fixture, results: Results, tmp_path: Path
) -> None:
    highest = results.systems["tfidf"]["robustness"]["max_flip_rate"]
    loose = load_task(write_banking_task(tmp_path / "loose", "max_flip_rate = 0.9"))
    strict = load_task(write_banking_task(tmp_path / "strict", "max_flip_rate = 0.01"))
    (passed,) = gate(loose, results).rows
    assert passed.passed and passed.measured == pytest.approx(highest["value"])
    assert f"under {highest['perturbation']}" in passed.reason
    (failed,) = gate(strict, results).rows
    assert not failed.passed and "> 0.010" in failed.reason
    (unmeasured,) = gate(loose, results, system="file").rows
    assert not unmeasured.passed and unmeasured.measured is None
    assert "predictions file" in unmeasured.reason
