"""The `stillhouse` command as a user runs it: exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MINIMAL = 'name = "reviews"\n[labels]\npositive = "Pleased."\nnegative = "Unhappy."\n'


def stillhouse(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STILLHOUSE_HOME": str(cwd / ".stillhouse-home"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    return subprocess.run(
        [sys.executable, "-m", "stillhouse.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_init_writes_a_task_file(tmp_path: Path) -> None:
    result = stillhouse(tmp_path, "init", "my-task")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "my-task" / "task.toml").is_file()
    assert 'name = "my-task"' in (tmp_path / "my-task" / "task.toml").read_text()
    assert "task.toml" in result.stdout


def test_init_twice_is_a_clean_error_that_keeps_the_file(tmp_path: Path) -> None:
    stillhouse(tmp_path, "init", "my-task")
    (tmp_path / "my-task" / "task.toml").write_text(MINIMAL)

    result = stillhouse(tmp_path, "init", "my-task")

    assert_clean_error(result)
    assert "[E005]" in result.stderr
    assert (tmp_path / "my-task" / "task.toml").read_text() == MINIMAL


def test_models_json_lists_both_embedded_models(tmp_path: Path) -> None:
    result = stillhouse(tmp_path, "models", "--json")

    assert result.returncode == 0, result.stderr
    models = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(models) == {"qwen2.5-0.5b", "smollm2-135m"}
    assert models["smollm2-135m"]["status"] == "verified"
    assert models["smollm2-135m"]["path"].endswith(".gguf")
    assert {entry["license"] for entry in models.values()} == {"Apache-2.0"}


def test_annotate_with_a_missing_task_file_says_so_without_a_traceback(tmp_path: Path) -> None:
    result = stillhouse(tmp_path, "annotate", "--task", "missing/task.toml", "--input", "x.jsonl")

    assert_clean_error(result)
    assert "Task file missing/task.toml does not exist" in result.stderr
    assert "[E001]" in result.stderr


def test_a_task_file_with_an_unknown_key_names_that_key(tmp_path: Path) -> None:
    (tmp_path / "task.toml").write_text(MINIMAL + '[llm]\nmodle = "qwen2.5-0.5b"\n')

    result = stillhouse(tmp_path, "annotate", "--task", "task.toml", "--input", "x.jsonl")

    assert_clean_error(result)
    assert "`llm.modle`" in result.stderr
    assert "unknown key" in result.stderr


@pytest.mark.parametrize("label", ["[/b]", "[red]"])
def test_an_error_quoting_bracketed_text_prints_it_verbatim(tmp_path: Path, label: str) -> None:
    # The message is user data, not terminal markup: "[/b]" once crashed the error printer.
    (tmp_path / "task.toml").write_text(
        MINIMAL + f'[[examples]]\ntext = "Fine."\nlabel = "{label}"\n'
    )

    result = stillhouse(tmp_path, "annotate", "--task", "task.toml", "--input", "x.jsonl")

    assert_clean_error(result)
    assert f"label '{label}' is not one of the task's labels" in result.stderr


def test_annotate_help_lists_its_main_options(tmp_path: Path) -> None:
    result = stillhouse(tmp_path, "annotate", "--help")

    assert result.returncode == 0, result.stderr
    for option in ("--model", "--limit", "--shots", "--no-cache"):
        assert option in result.stdout
