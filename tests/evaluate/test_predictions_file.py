"""Predictions files as Predictors: valid files line up with the test set, every bad row is one
clear error naming file:line, the id and the label; --system specs that are not files yet say so."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from classify_data import LABELS, gold_rows, prediction_rows, write_jsonl, write_task

from stillhouse.data.io import read_examples
from stillhouse.data.records import Prediction
from stillhouse.errors import StillhouseError
from stillhouse.predictors import PredictionsFile, Predictor, open_systems
from stillhouse.task import Task, load_task


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Task, Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("predictions")
    task = load_task(write_task(folder / "task"))
    rows = gold_rows(200)
    return task, write_jsonl(folder / "test.jsonl", rows), rows


def error_of(call: Any) -> StillhouseError:
    with pytest.raises(StillhouseError) as caught:
        call()
    return caught.value


def test_a_valid_file_gives_predictions_in_test_order(setup, tmp_path: Path) -> None:
    task, test, rows = setup
    predictions = prediction_rows(rows, 0.9, seed=1)
    path = write_jsonl(tmp_path / "preds.jsonl", list(reversed(predictions)))  # any row order
    examples = read_examples(test, task).examples

    aligned = PredictionsFile(path, task).for_examples(examples)

    assert [p.answer for p in aligned] == [row["label"] for row in predictions]
    assert aligned[3].probs == pytest.approx(predictions[3]["probs"])
    assert list(aligned[3].probs) == list(LABELS)
    description = PredictionsFile(path, task).describe()
    assert description["rows"] == 200 and description["probabilities"] is True
    assert len(description["sha256"]) == 64


def test_probabilities_are_optional(setup, tmp_path: Path) -> None:
    task, test, rows = setup
    path = write_jsonl(tmp_path / "p.jsonl", prediction_rows(rows, 0.8, seed=2, probs=False))
    file = PredictionsFile(path, task)
    assert not file.has_probabilities
    assert all(p.probs is None for p in file.for_examples(read_examples(test, task).examples))


def _bad(rows: list[dict[str, Any]], line: int, change: dict[str, Any]) -> list[Any]:
    predictions: list[Any] = prediction_rows(rows[:5], 1.0, seed=3)
    predictions[line - 1] = {**predictions[line - 1], **change}
    return predictions


def _probs(**values: float) -> dict[str, float]:
    return {"billing": 0.2, "delivery": 0.2, "refund": 0.2, "account": 0.2, "other": 0.2, **values}


@pytest.mark.parametrize(
    ("line", "change", "code", "fragments"),
    [
        (2, {"label": "shipping"}, "E508", ["'t001'", "'shipping'", "billing, delivery"]),
        (3, {"probs": _probs(billing=math.nan)}, "E509", ["'t002'", "'billing'", "nan", "0.001"]),
        (4, {"probs": _probs(refund=-0.1, other=0.5)}, "E509", ["'t003'", "negative", "-0.1"]),
        (
            2,
            {"probs": {"billing": 0.5, "delivery": 0.5}},
            "E509",
            ["'t001'", "miss", "'refund'", "'account'"],
        ),
        (5, {"probs": _probs(billing=0.1)}, "E509", ["'t004'", "sum to 0.9", "within 0.001"]),
        (2, {"probs": _probs(spam=0.0)}, "E509", ["'t001'", "'spam'"]),
        (3, {"id": None}, "E506", ["`id`", "null"]),
        (3, {"probs": None}, "E510", ["'t002'", "no `probs`", ":1 has `probs`"]),
    ],
)
def test_each_bad_row_is_one_error_naming_file_line_id_and_label(
    setup, tmp_path: Path, line: int, change: dict[str, Any], code: str, fragments: list[str]
) -> None:
    task, _, rows = setup
    path = write_jsonl(tmp_path / "bad.jsonl", _bad(rows, line, change))

    error = error_of(lambda: PredictionsFile(path, task))

    assert error.code == code
    assert f"{path}:{line}:" in error.message
    for fragment in fragments:
        assert fragment in error.message


def test_nan_written_as_a_json_literal_is_refused(setup, tmp_path: Path) -> None:
    task, _, _ = setup
    line = json.dumps({"id": "t000", "label": "billing", "probs": _probs()}).replace(
        "0.2", "NaN", 1
    )
    path = tmp_path / "nan.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    error = error_of(lambda: PredictionsFile(path, task))
    assert error.code == "E509" and f"{path}:1:" in error.message and "nan" in error.message


def test_duplicate_ids_name_both_lines(setup, tmp_path: Path) -> None:
    task, _, rows = setup
    predictions = prediction_rows(rows[:4], 1.0, seed=4)
    path = write_jsonl(tmp_path / "dup.jsonl", [*predictions, predictions[1]])
    error = error_of(lambda: PredictionsFile(path, task))
    assert error.code == "E507"
    assert f"{path}:5:" in error.message and f"first at {path}:2" in error.message


def test_ids_must_match_the_test_set_both_ways(setup, tmp_path: Path) -> None:
    task, test, rows = setup
    examples = read_examples(test, task).examples
    predictions = prediction_rows(rows, 0.9, seed=5)

    extra = write_jsonl(
        tmp_path / "extra.jsonl", [*predictions, {"id": "zz9", "label": "other", "probs": _probs()}]
    )
    error = error_of(lambda: PredictionsFile(extra, task).for_examples(examples))
    assert error.code == "E511" and "'zz9'" in error.message and f"{extra}:201" in error.message

    short = write_jsonl(tmp_path / "short.jsonl", predictions[:-3])
    error = error_of(lambda: PredictionsFile(short, task).for_examples(examples))
    assert error.code == "E512"
    assert "3 of the 200" in error.message and "'t197'" in error.message


def test_a_file_that_is_not_json_lines_is_refused(setup, tmp_path: Path) -> None:
    task, _, _ = setup
    path = tmp_path / "preds.csv"
    path.write_text("id,label\nt000,billing\n", encoding="utf-8")
    assert error_of(lambda: PredictionsFile(path, task)).code == "E505"
    assert error_of(lambda: PredictionsFile(tmp_path / "none.jsonl", task)).code == "E101"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "t000", "label": "billing"}\n{"id": "t001", "label"\n', "utf-8")
    error = error_of(lambda: PredictionsFile(broken, task))
    assert (
        error.code == "E103"
        and f"{broken}:2:" in error.message
        and "not valid JSON" in error.message
    )


@pytest.mark.parametrize(
    ("specs", "code", "fragment"),
    [
        ([], "E504", "at least one system"),
        (["distilled=model:models/linear"], "E720", "Model folder models/linear does not exist"),
        (["both=cascade:small,llm"], "E539", "stage 1 `small`: a stage is SOURCE:VALUE"),
        (["preds.jsonl"], "E502", "NAME="),
        (["x=preds"], "E502", "SOURCE:VALUE"),
        (["x=rules:foo"], "E502", "unknown source `rules:`"),
        (["a=preds:a.jsonl", "a=preds:b.jsonl"], "E517", "`a`"),
    ],
)
def test_system_specs(setup, specs: list[str], code: str, fragment: str) -> None:
    task, _, _ = setup
    error = error_of(lambda: open_systems(specs, task))
    assert error.code == code and fragment in error.message


def test_open_systems_keeps_the_order_given(setup, tmp_path: Path) -> None:
    task, _, rows = setup
    a = write_jsonl(tmp_path / "a.jsonl", prediction_rows(rows, 0.9, seed=6))
    b = write_jsonl(tmp_path / "b.jsonl", prediction_rows(rows, 0.8, seed=7))
    systems = open_systems([f"zeta=preds:{a}", f"alpha=preds:{b}"], task)
    assert list(systems) == ["zeta", "alpha"]
    assert all(isinstance(system, Predictor) for system in systems.values())


def test_predict_finds_rows_by_text_hash(setup, tmp_path: Path) -> None:
    task, _, _ = setup
    from stillhouse.data.records import text_id

    path = write_jsonl(tmp_path / "by-hash.jsonl", [{"id": text_id("hello"), "label": "other"}])
    file = PredictionsFile(path, task)
    assert file.predict(["hello"]) == [Prediction(answer="other")]
    assert error_of(lambda: file.predict(["unseen"])).code == "E514"
