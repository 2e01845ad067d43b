"""`stillhouse train` and `stillhouse predict` as a user runs them, and a trained model as an
evaluate system (`model:DIR`) next to its own predictions file: the same numbers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from train_data import NUSAX_TASK, nusax_test, nusax_train, write_task

from stillhouse.data.io import write_jsonl

CLI = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-train")
    write_task(folder / "task", NUSAX_TASK)
    write_jsonl(folder / "train.jsonl", nusax_train(200))
    write_jsonl(folder / "test.jsonl", nusax_test(100))
    write_jsonl(
        folder / "texts.jsonl", [{"id": row["id"], "text": row["text"]} for row in nusax_test(100)]
    )
    return folder


def assert_clean_error(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"[{code}]" in result.stderr and "Traceback" not in result.stdout + result.stderr


def test_train_predict_and_evaluate_a_model_system(workspace: Path, run_cli: CLI) -> None:
    trained = run_cli(
        workspace,
        "train",
        "--task",
        "task",
        "--data",
        "train.jsonl",
        "--recipe",
        "linear",
        "--out",
        "models/linear",
    )
    assert trained.returncode == 0, trained.stderr
    assert "held-out accuracy" in trained.stdout and "wrote models/linear" in trained.stdout
    predicted = run_cli(
        workspace,
        "predict",
        "--model",
        "models/linear",
        "--input",
        "texts.jsonl",
        "--out",
        "preds.jsonl",
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = [
        json.loads(line)
        for line in (workspace / "preds.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [row["id"] for row in rows] == [row["id"] for row in nusax_test(100)]
    assert set(rows[0]["probs"]) == {"positive", "neutral", "negative"}
    evaluated = run_cli(
        workspace,
        *("evaluate", "--task", "task", "--test", "test.jsonl", "--bootstrap", "200"),
        *(
            "--system",
            "model=model:models/linear",
            "--system",
            "file=preds:preds.jsonl",
            "--out",
            "report",
        ),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    systems = json.loads((workspace / "report" / "results.json").read_text(encoding="utf-8"))[
        "systems"
    ]
    assert systems["model"]["metrics"]["accuracy"] == systems["file"]["metrics"]["accuracy"]
    assert systems["model"]["metrics"]["accuracy"]["estimate"] > 0.55


def test_bad_train_input_is_one_message_and_writes_nothing(workspace: Path, run_cli: CLI) -> None:
    base = ("train", "--task", "task", "--data", "train.jsonl", "--out", "models/bad")
    assert_clean_error(run_cli(workspace, *base, "--recipe", "svm"), "E701")
    few = run_cli(workspace, *base, "--min-per-label", "60")
    assert_clean_error(few, "E704")
    assert "'neutral' has 48" in few.stderr
    ngrams = run_cli(workspace, *base, "--char-ngrams", "2-x")
    assert_clean_error(ngrams, "E708")
    assert "--char-ngrams must be LOW-HIGH" in ngrams.stderr and "'2-x'" in ngrams.stderr
    store = run_cli(workspace, "train", "--task", "task", "--from-store", "--out", "models/bad")
    assert_clean_error(store, "E706")
    assert not (workspace / "models" / "bad").exists()
    missing = run_cli(
        workspace, "predict", "--model", "models/none", "--input", "texts.jsonl", "--out", "p.jsonl"
    )
    assert_clean_error(missing, "E720")
    assert not (workspace / "p.jsonl").exists()


def test_words_only_linear_from_the_command_line(workspace: Path, run_cli: CLI) -> None:
    trained = run_cli(
        workspace,
        *("train", "--task", "task", "--data", "train.jsonl", "--out", "models/words"),
        *("--word-ngrams", "1", "--char-ngrams", "none", "--json"),
    )
    assert trained.returncode == 0, trained.stderr
    card = json.loads(trained.stdout)
    assert card["hyper_parameters"]["word_ngrams"] == [1, 1]
    assert card["hyper_parameters"]["char_ngrams"] is None
