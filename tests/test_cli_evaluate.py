"""`stillhouse evaluate` and `stillhouse gate` as a user runs them: results.json, the leaderboard,
exit codes 0 / 1 / 2, one-line errors, nothing written on bad input. Eight subprocess runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from classify_data import gold_rows, prediction_rows, write_jsonl, write_task

CLI = Callable[..., subprocess.CompletedProcess[str]]
Run = subprocess.CompletedProcess[str]

GATE = (
    "min_accuracy = 0.85\nmin_coverage_at_precision = { precision = 0.99, coverage = 0.30 }\n"
    "min_worst_slice_accuracy = 0.7"
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-evaluate")
    write_task(folder / "task", GATE)
    write_task(folder / "strict", f"{GATE}\nmax_p95_latency_ms = 50")
    rows = gold_rows(200)
    write_jsonl(folder / "test.jsonl", rows)
    write_jsonl(folder / "strong.jsonl", prediction_rows(rows, 0.9, seed=1))
    write_jsonl(folder / "weak.jsonl", prediction_rows(rows, 0.8, seed=2))
    bad = prediction_rows(rows, 0.9, seed=1)
    bad[6]["label"] = "shipping"
    write_jsonl(folder / "bad.jsonl", bad)
    return folder


def assert_clean_error(result: Run, code: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and f"[{code}]" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def evaluated(workspace: Path, run_cli: CLI) -> Run:
    return run_cli(
        workspace,
        *("evaluate", "--task", "task/task.toml", "--test", "test.jsonl"),
        *("--system", "strong=preds:strong.jsonl", "--system", "weak=preds:weak.jsonl"),
        *("--bootstrap", "300", "--slice", "lang", "--perturb", "mild_mix,gender"),
        *("--out", "reports/run1"),
    )


def test_evaluate_writes_results_and_prints_the_leaderboard(
    workspace: Path, evaluated: Run
) -> None:
    assert evaluated.returncode == 0, evaluated.stderr
    results = json.loads((workspace / "reports/run1/results.json").read_text(encoding="utf-8"))
    assert results["schema_version"] == 1 and list(results["systems"]) == ["strong", "weak"]
    assert results["settings"]["n_resamples"] == 300
    assert "0.900 [" in evaluated.stdout and "0.800 [" in evaluated.stdout
    assert "strong is better than weak by 10.0 points" in evaluated.stdout
    assert "worst lang" in evaluated.stdout
    assert results["settings"]["perturbations"] == ["mild_mix", "gender"]
    assert "strong · robustness not measured: a predictions file" in evaluated.stdout
    page = (workspace / "reports/run1/report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<section id="leaderboard">' in page
    assert "strong is better than weak by 10.0 points" in page


def test_an_unknown_perturbation_stops_evaluate_and_writes_nothing(
    workspace: Path, run_cli: CLI
) -> None:
    result = run_cli(
        workspace,
        *("evaluate", "--task", "task/task.toml", "--test", "test.jsonl"),
        *("--system", "ok=preds:strong.jsonl", "--perturb", "mild_mix,typo", "--out", "r4"),
    )
    assert_clean_error(result, "E534")
    assert "`typo`" in result.stderr and "typos" in result.stderr
    assert not (workspace / "r4").exists()


def test_gate_passes_with_exit_0_and_fails_with_exit_1(
    workspace: Path, evaluated: Run, run_cli: CLI
) -> None:
    args = ("gate", "--results", "reports/run1/results.json")
    passed = run_cli(workspace, *args, "--task", "task/task.toml")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS" in passed.stdout and "min_coverage_at_precision" in passed.stdout

    failed = run_cli(workspace, *args, "--task", "strict/task.toml", "--system", "weak")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL" in failed.stdout and "gate · weak" in failed.stdout
    assert "not measured in results.json" in failed.stdout


def test_gate_json_gives_each_rule_with_its_measurement(
    workspace: Path, evaluated: Run, run_cli: CLI
) -> None:
    args = ("gate", "--results", "reports/run1/results.json", "--json")
    result = run_cli(workspace, *args, "--task", "strict/task.toml")
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["system"] == "strong" and verdict["passed"] is False
    rules = {row["rule"]: row for row in verdict["rules"]}
    assert list(rules) == [
        "min_accuracy",
        "min_coverage_at_precision",
        "max_p95_latency_ms",
        "min_worst_slice_accuracy",
    ]
    assert rules["min_accuracy"]["passed"] is True
    assert rules["min_accuracy"]["measured"] == pytest.approx(0.9)
    assert rules["max_p95_latency_ms"]["measured"] is None
    assert "predictions file" in rules["max_p95_latency_ms"]["reason"]


def test_a_bad_predictions_file_stops_evaluate_and_writes_nothing(
    workspace: Path, run_cli: CLI
) -> None:
    result = run_cli(
        workspace,
        *("evaluate", "--task", "task/task.toml", "--test", "test.jsonl"),
        *("--system", "ok=preds:strong.jsonl", "--system", "bad=preds:bad.jsonl", "--out", "r2"),
    )
    assert_clean_error(result, "E508")
    assert "bad.jsonl:7:" in result.stderr and "'t006'" in result.stderr
    assert "'shipping'" in result.stderr
    assert not (workspace / "r2").exists()


def test_a_model_system_without_its_folder_says_so(workspace: Path, run_cli: CLI) -> None:
    result = run_cli(
        workspace,
        *("evaluate", "--task", "task/task.toml", "--test", "test.jsonl"),
        *("--system", "linear=model:models/linear", "--out", "r3"),
    )
    assert_clean_error(result, "E720")
    assert "Model folder models/linear does not exist" in result.stderr
    assert not (workspace / "r3").exists()


def test_gate_refuses_results_of_another_schema_version(
    workspace: Path, evaluated: Run, run_cli: CLI
) -> None:
    document = json.loads((workspace / "reports/run1/results.json").read_text(encoding="utf-8"))
    future = workspace / "future.json"
    future.write_text(json.dumps({**document, "schema_version": 2}), encoding="utf-8")
    result = run_cli(workspace, "gate", "--task", "task/task.toml", "--results", str(future))
    assert_clean_error(result, "E522")
    assert "schema version 2" in result.stderr
