"""`stillhouse predict` reads only texts and ids: whatever an input row's label field holds (an
unknown label, a malformed one) never stops it, while texts and ids are checked as everywhere.
A real `linear` model on 60 NusaX rows."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from train_data import NUSAX_TASK, nusax_test, nusax_train, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train
from stillhouse.train.predict import predict_file

CLI = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("predict")
    task = load_task(write_task(folder / "task", NUSAX_TASK))
    write_jsonl(folder / "train.jsonl", nusax_train(60))
    settings = TrainSettings(recipe="linear", latency_texts=5, throughput_texts=20)
    train(task, folder / "model", settings, data=folder / "train.jsonl")
    return folder / "model"


def rows_with_odd_labels() -> list[dict[str, object]]:
    """Four test texts whose label fields predict must ignore: unknown, malformed, absent, gold."""
    texts = nusax_test(4)
    labels: list[object] = ["no-such-label", {"not": "a label"}, None, texts[3]["label"]]
    return [
        {"id": row["id"], "text": row["text"], **({"label": label} if label else {})}
        for row, label in zip(texts, labels, strict=True)
    ]


def test_predict_file_ignores_every_label_in_the_input(model: Path, tmp_path: Path) -> None:
    rows = rows_with_odd_labels()
    write_jsonl(tmp_path / "texts.jsonl", rows)

    summary = predict_file(model, tmp_path / "texts.jsonl", tmp_path / "preds.jsonl")

    written = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert summary.written == 4 and [row["id"] for row in written] == [row["id"] for row in rows]


def test_predict_still_refuses_rows_without_a_usable_text(model: Path, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "texts.jsonl", [*rows_with_odd_labels(), {"id": "x", "text": ""}])

    with pytest.raises(StillhouseError) as raised:
        predict_file(model, tmp_path / "texts.jsonl", tmp_path / "preds.jsonl")

    assert raised.value.code == "E105"
    assert "texts.jsonl:5: text field `text` is empty" in raised.value.message
    assert "--skip-invalid" in raised.value.message  # predict has the option
    assert not (tmp_path / "preds.jsonl").exists()


def test_the_cli_predicts_rows_whose_label_is_unknown(
    model: Path, tmp_path: Path, run_cli: CLI
) -> None:
    write_jsonl(tmp_path / "texts.jsonl", rows_with_odd_labels())

    result = run_cli(
        tmp_path, "predict", "--model", str(model), "--input", "texts.jsonl", "--out", "p.jsonl"
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 4
