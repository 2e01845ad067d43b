"""evaluate() on a realistic 5-label test set, checked against independent references (sklearn,
scipy, brute force), and the results.json it writes: versioned, atomic, refused when foreign."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from classify_data import LABELS, gold_rows, prediction_rows, write_jsonl, write_task
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from stillhouse.data.records import Prediction
from stillhouse.errors import StillhouseError
from stillhouse.evaluate.bootstrap import resample_indices
from stillhouse.evaluate.results import SCHEMA_VERSION, Results, read_results, write_results
from stillhouse.evaluate.run import evaluate
from stillhouse.predictors import PredictionsFile
from stillhouse.task import Task, load_task

N_RESAMPLES = 500


class Fixture:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.task: Task = load_task(write_task(folder / "task"))
        self.rows = gold_rows(200)
        self.test = write_jsonl(folder / "test.jsonl", self.rows)
        self.predictions = {
            "strong": prediction_rows(self.rows, 0.9, seed=1),
            "weak": prediction_rows(self.rows, 0.8, seed=2),
            "plain": prediction_rows(self.rows, 0.8, seed=3, probs=False),
        }
        self.files = {
            name: write_jsonl(folder / f"{name}.jsonl", rows)
            for name, rows in self.predictions.items()
        }

    def systems(self, *names: str) -> dict[str, PredictionsFile]:
        return {name: PredictionsFile(self.files[name], self.task) for name in names or self.files}

    def gold(self) -> list[str]:
        return [row["label"] for row in self.rows]

    def predicted(self, name: str) -> list[str]:
        return [row["label"] for row in self.predictions[name]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="module")
def results(data: Fixture) -> Results:
    return evaluate(
        data.task, data.test, data.systems(), n_resamples=N_RESAMPLES, seed=7, slices=["lang"]
    )


@pytest.mark.parametrize("name", ["strong", "weak", "plain"])
def test_point_metrics_match_sklearn(data: Fixture, results: Results, name: str) -> None:
    gold, predicted = data.gold(), data.predicted(name)
    metrics = results.systems[name]["metrics"]
    assert metrics["accuracy"]["estimate"] == pytest.approx(accuracy_score(gold, predicted))
    for average in ("macro", "micro", "weighted"):
        expected = f1_score(gold, predicted, labels=list(LABELS), average=average)
        assert metrics[f"{average}_f1"]["estimate"] == pytest.approx(expected)
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=list(LABELS), zero_division=0
    )
    per_label = results.systems[name]["per_label"]
    for i, label in enumerate(LABELS):
        assert per_label[label]["precision"] == pytest.approx(precision[i])
        assert per_label[label]["recall"] == pytest.approx(recall[i])
        assert per_label[label]["f1"] == pytest.approx(f1[i])
    assert [per_label[label]["support"] for label in LABELS] == support.tolist()
    assert results.systems[name]["confusion_matrix"] == (
        confusion_matrix(gold, predicted, labels=list(LABELS)).tolist()
    )
    assert results.systems[name]["correct"] == [
        int(g == p) for g, p in zip(gold, predicted, strict=True)
    ]


def test_accuracy_is_the_one_planted(results: Results) -> None:
    assert results.systems["strong"]["metrics"]["accuracy"]["estimate"] == 0.9
    assert results.systems["weak"]["metrics"]["accuracy"]["estimate"] == 0.8


def test_every_interval_holds_its_estimate_and_has_width(results: Results) -> None:
    for system in results.systems.values():
        for interval in system["metrics"].values():
            assert interval["low"] <= interval["estimate"] <= interval["high"]
            assert interval["low"] < interval["high"]
        for group in system["slices"]["lang"]["groups"].values():
            accuracy = group["accuracy"]
            assert accuracy["low"] <= accuracy["estimate"] <= accuracy["high"]


def test_intervals_come_from_one_shared_draw_of_resamples(data: Fixture, results: Results) -> None:
    # Recompute the strong-vs-weak interval from the documented resamples (n, B, seed).
    indices = resample_indices(200, N_RESAMPLES, seed=7)
    strong = np.array(results.systems["strong"]["correct"])
    weak = np.array(results.systems["weak"]["correct"])
    accuracy = strong[indices].mean(axis=1)
    differences = accuracy - weak[indices].mean(axis=1)
    comparison = results.comparisons[0]
    assert (comparison["a"], comparison["b"]) == ("strong", "weak")
    assert comparison["low"] == pytest.approx(np.quantile(differences, 0.025))
    assert comparison["high"] == pytest.approx(np.quantile(differences, 0.975))
    interval = results.systems["strong"]["metrics"]["accuracy"]
    assert interval["low"] == pytest.approx(np.quantile(accuracy, 0.025))
    again = evaluate(data.task, data.test, data.systems("strong"), n_resamples=N_RESAMPLES, seed=7)
    assert again.systems["strong"]["metrics"] == results.systems["strong"]["metrics"]


def test_calibration_matches_independent_references(data: Fixture, results: Results) -> None:
    probs = np.array(
        [[row["probs"][label] for label in LABELS] for row in data.predictions["strong"]]
    )
    gold = data.gold()
    calibration = results.systems["strong"]["calibration"]
    columns = [LABELS.index(label) for label in sorted(LABELS)]  # log_loss sorts the labels
    normalised = probs[:, columns] / probs.sum(axis=1, keepdims=True)  # log_loss insists
    expected_nll = log_loss(gold, normalised, labels=sorted(LABELS))
    assert calibration["nll"] == pytest.approx(expected_nll, rel=1e-5)  # 6-digit rounding
    one_hot = np.array([[label == g for label in LABELS] for g in gold], dtype=float)
    assert calibration["brier"] == pytest.approx(((probs - one_hot) ** 2).sum(axis=1).mean())
    bins = calibration["reliability_bins"]
    assert sum(b["count"] for b in bins) == 200
    weighted_gap = sum(b["count"] / 200 * abs(b["accuracy"] - b["mean_confidence"]) for b in bins)
    assert calibration["ece_10_equal_width"] == pytest.approx(weighted_gap)
    assert 0 <= calibration["ece_10_equal_mass"] <= 1


def test_selective_prediction_by_brute_force(data: Fixture, results: Results) -> None:
    rows = data.predictions["strong"]
    confidence = np.array([row["probs"][row["label"]] for row in rows])
    correct = np.array(results.systems["strong"]["correct"])
    selective = results.systems["strong"]["selective"]
    at_precision = selective["coverage_at_precision"]
    assert at_precision["target"] == 0.99
    answered = confidence >= at_precision["threshold"]
    assert correct[answered].mean() >= 0.99
    assert at_precision["coverage"]["estimate"] == pytest.approx(answered.mean())
    assert at_precision["accuracy"] == pytest.approx(correct[answered].mean())
    # no lower threshold reaches 0.99
    for threshold in confidence[confidence < at_precision["threshold"]]:
        assert correct[confidence >= threshold].mean() < 0.99
    top = np.argsort(-confidence, kind="stable")[:20]
    assert selective["accuracy_at_top_10pct"]["estimate"] == pytest.approx(correct[top].mean())
    # AURC with distinct confidences: mean error rate of the i most confident items, i = 1..n
    assert len(set(confidence.tolist())) == len(confidence)
    errors = 1 - correct[np.argsort(-confidence)]
    mean_risk = (np.cumsum(errors) / np.arange(1, len(errors) + 1)).mean()
    assert selective["aurc"]["estimate"] == pytest.approx(mean_risk)
    assert selective["aurc"]["estimate"] < 0.1  # below the error rate: confidence ranks well


def test_systems_without_probabilities_have_no_calibration(results: Results) -> None:
    plain = results.systems["plain"]
    assert plain["has_probabilities"] is False
    assert plain["calibration"] is None and plain["selective"] is None


def test_slices_report_each_language_and_the_worst(data: Fixture, results: Results) -> None:
    lang = results.systems["weak"]["slices"]["lang"]
    for value in ("en", "id", "fr"):
        members = [i for i, row in enumerate(data.rows) if row["lang"] == value]
        group = lang["groups"][value]
        assert group["n"] == len(members)
        right = [data.predicted("weak")[i] == data.gold()[i] for i in members]
        assert group["accuracy"]["estimate"] == pytest.approx(np.mean(right))
    accuracies = {value: g["accuracy"]["estimate"] for value, g in lang["groups"].items()}
    assert lang["worst"] == min(accuracies, key=accuracies.get)
    assert lang["worst_accuracy"] == min(accuracies.values())
    assert lang["gap"] == pytest.approx(max(accuracies.values()) - min(accuracies.values()))


def test_the_slice_gap_interval_is_the_per_resample_gap_brute_force(
    data: Fixture, results: Results
) -> None:
    lang = results.systems["weak"]["slices"]["lang"]
    right = np.array(data.predicted("weak")) == np.array(data.gold())
    groups = np.array([row["lang"] for row in data.rows])
    gaps = []
    for drawn in resample_indices(len(data.rows), N_RESAMPLES, seed=7):
        best, worst = groups[drawn] == lang["best"], groups[drawn] == lang["worst"]
        if best.any() and worst.any():
            gaps.append(right[drawn][best].mean() - right[drawn][worst].mean())
    interval = lang["gap_interval"]
    assert interval["estimate"] == pytest.approx(lang["gap"])
    assert interval["low"] == pytest.approx(np.quantile(gaps, 0.025))
    assert interval["high"] == pytest.approx(np.quantile(gaps, 0.975))


def test_every_pair_is_compared_with_mcnemar_and_holm(data: Fixture, results: Results) -> None:
    pairs = [(c["a"], c["b"]) for c in results.comparisons]
    assert pairs == [("strong", "weak"), ("strong", "plain"), ("weak", "plain")]
    for comparison in results.comparisons:
        a = np.array(results.systems[comparison["a"]]["correct"], dtype=bool)
        b = np.array(results.systems[comparison["b"]]["correct"], dtype=bool)
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        mcnemar = comparison["mcnemar"]
        assert (mcnemar["only_a"], mcnemar["only_b"]) == (only_a, only_b)
        assert mcnemar["p"] == pytest.approx(binomtest(only_a, only_a + only_b).pvalue)
        assert comparison["p_holm"] >= mcnemar["p"]
        assert comparison["difference"] == pytest.approx(a.mean() - b.mean())
        assert comparison["low"] <= comparison["difference"] <= comparison["high"]
        assert 0 < comparison["p_bootstrap"] <= 1
    first = results.comparisons[0]
    assert first["sentence"].startswith("strong is better than weak by 10.0 points")


def test_a_predictor_object_counts_the_same_as_its_file(data: Fixture) -> None:
    class Lookup:
        """An in-memory predictor: the strong file's answers, found by text."""

        def __init__(self) -> None:
            by_id = {row["id"]: row for row in data.predictions["strong"]}
            self.by_text = {row["text"]: by_id[row["id"]] for row in data.rows}

        def predict(self, texts: Sequence[str]) -> list[Prediction]:
            return [Prediction(self.by_text[t]["label"], self.by_text[t]["probs"]) for t in texts]

        def describe(self) -> dict[str, Any]:
            return {"type": "lookup"}

    from_object = evaluate(data.task, data.test, {"strong": Lookup()}, n_resamples=50)
    from_file = evaluate(data.task, data.test, data.systems("strong"), n_resamples=50)
    for key in ("metrics", "calibration", "selective", "correct"):
        assert from_object.systems["strong"][key] == from_file.systems["strong"][key]


def test_results_round_trip_and_carry_provenance(
    data: Fixture, results: Results, tmp_path: Path
) -> None:
    path = write_results(results, tmp_path / "run" / "results.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert document["task"]["fingerprint"] == data.task.fingerprint()
    assert len(document["data"]["fingerprint"]) == 64
    assert document["data"]["n_items"] == 200 == len(document["data"]["ids"])
    assert document["settings"]["n_resamples"] == N_RESAMPLES and document["settings"]["seed"] == 7
    assert "numpy" in document["provenance"]["package_versions"]
    assert read_results(path) == results
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left


def test_a_failed_write_keeps_the_previous_results(results: Results, tmp_path: Path) -> None:
    path = write_results(results, tmp_path / "results.json")
    before = path.read_bytes()
    broken = Results(**{**results.__dict__, "settings": {"bad": float("nan")}})
    with pytest.raises(ValueError):
        write_results(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        (None, "E520", "does not exist"),
        ("{not json", "E521", "not valid JSON"),
        ('{"systems": {}}', "E521", "schema_version"),
        ('{"schema_version": 2, "systems": {}}', "E522", "schema version 2"),
        ('{"schema_version": 1, "task": {}}', "E521", "`data`"),
    ],
)
def test_foreign_results_files_are_refused(
    tmp_path: Path, content: str | None, code: str, fragment: str
) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(StillhouseError) as caught:
        read_results(path)
    assert caught.value.code == code and fragment in caught.value.message
    assert str(path) in caught.value.message


def error_of(call: Any) -> StillhouseError:
    with pytest.raises(StillhouseError) as caught:
        call()
    return caught.value


def test_bad_evaluation_input_is_a_clear_error(data: Fixture, tmp_path: Path) -> None:
    systems = data.systems("strong")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert error_of(lambda: evaluate(data.task, empty, systems)).code == "E104"
    error = error_of(lambda: evaluate(data.task, data.test, systems, slices=["country"]))
    assert error.code == "E516" and "`country`" in error.message and "`lang`" in error.message
    assert error_of(lambda: evaluate(data.task, data.test, {})).code == "E504"
    assert error_of(lambda: evaluate(data.task, data.test, systems, n_resamples=0)).code == "E515"
    error = error_of(lambda: evaluate(data.task, data.test, systems, target_precision=1.5))
    assert error.code == "E515" and "target_precision" in error.message
    multilabel = load_task(write_task(tmp_path / "ml", kind="multilabel"))
    error = error_of(lambda: PredictionsFile(data.files["strong"], multilabel))
    assert error.code == "E535" and "strong.jsonl:1:" in error.message
    assert '"labels": [label, ...]' in error.message


def test_a_test_set_larger_than_the_predictions_is_refused(data: Fixture, tmp_path: Path) -> None:
    extra = [*data.rows, {"id": "t999", "text": "Where is my parcel?", "label": "delivery"}]
    test = write_jsonl(tmp_path / "bigger.jsonl", extra)
    error = error_of(lambda: evaluate(data.task, test, data.systems("strong")))
    assert error.code == "E512" and "'t999'" in error.message and str(test) in error.message
