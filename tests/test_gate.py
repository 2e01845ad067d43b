"""The gate: each [gate] rule against real results.json content; unmeasured rules fail, a
significant drop against a baseline fails, an equal one passes, bad input is a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from classify_data import gold_rows, prediction_rows, write_jsonl, write_task

from stillhouse.errors import StillhouseError
from stillhouse.evaluate.results import Results, read_results, write_results
from stillhouse.evaluate.run import evaluate
from stillhouse.gate import NOT_MEASURED, GateReport, gate
from stillhouse.predictors import PredictionsFile
from stillhouse.task import Task, load_task

COVERAGE = "min_coverage_at_precision = { precision = 0.99, coverage = 0.30 }"


class Runs:
    """One test set; results of a strong (0.9), a weak (0.75) and a no-probabilities system."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.task = load_task(write_task(folder / "task"))
        rows = gold_rows(200)
        self.test = write_jsonl(folder / "test.jsonl", rows)
        self.files = {
            "strong": write_jsonl(folder / "strong.jsonl", prediction_rows(rows, 0.9, seed=1)),
            "weak": write_jsonl(folder / "weak.jsonl", prediction_rows(rows, 0.75, seed=2)),
            "plain": write_jsonl(
                folder / "plain.jsonl", prediction_rows(rows, 0.9, seed=3, probs=False)
            ),
        }

    def results(self, test: Path | None = None, **systems: str) -> Results:
        """Evaluate ``name=file key`` systems; written and read back as the CLI would."""
        predictors = {
            name: PredictionsFile(self.files[key], self.task) for name, key in systems.items()
        }
        results = evaluate(
            self.task, test or self.test, predictors, n_resamples=200, slices=["lang"]
        )
        path = self.folder / f"{'-'.join(systems)}-{'-'.join(systems.values())}" / "results.json"
        return read_results(write_results(results, path))

    def task_with(self, gate_lines: str, name: str = "gated") -> Task:
        return load_task(write_task(self.folder / name, gate_lines))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("gate"))


@pytest.fixture(scope="module")
def current(runs: Runs) -> Results:
    return runs.results(model="strong", plain="plain")


def rows_by_rule(report: GateReport) -> dict[str, Any]:
    return {row.rule: row for row in report.rows}


def test_a_system_that_meets_every_rule_passes(runs: Runs, current: Results) -> None:
    task = runs.task_with(
        f"min_accuracy = 0.85\nmin_macro_f1 = 0.85\n{COVERAGE}\nmax_ece = 0.2\n"
        "min_worst_slice_accuracy = 0.7"
    )
    report = gate(task, current)

    assert report.system == "model" and report.passed
    rows = rows_by_rule(report)
    assert list(rows) == [
        "min_accuracy",
        "min_macro_f1",
        "min_coverage_at_precision",
        "max_ece",
        "min_worst_slice_accuracy",
    ]
    model = current.systems["model"]
    assert rows["min_accuracy"].measured == 0.9 and rows["min_accuracy"].threshold == 0.85
    assert "accuracy 0.900 (95% CI" in rows["min_accuracy"].reason
    coverage = model["selective"]["coverage_at_precision"]["coverage"]["estimate"]
    assert rows["min_coverage_at_precision"].measured == coverage
    assert rows["max_ece"].measured == model["calibration"]["ece_10_equal_mass"]
    assert rows["min_worst_slice_accuracy"].measured == model["slices"]["lang"]["worst_accuracy"]
    assert "worst slice lang=" in rows["min_worst_slice_accuracy"].reason


def test_thresholds_not_met_fail_with_the_measured_value(runs: Runs, current: Results) -> None:
    task = runs.task_with(
        "min_accuracy = 0.95\nmin_macro_f1 = 0.5\nmax_ece = 0.01\nmin_worst_slice_accuracy = 0.99"
    )
    report = gate(task, current)

    assert not report.passed
    assert [row.rule for row in report.failed] == [
        "min_accuracy",
        "max_ece",
        "min_worst_slice_accuracy",
    ]
    assert rows_by_rule(report)["min_accuracy"].reason.endswith("< 0.950")


def test_rules_without_a_measurement_fail_and_say_so(runs: Runs, current: Results) -> None:
    task = runs.task_with(
        f"max_p95_latency_ms = 50\nmax_flip_rate = 0.02\nmax_ece = 0.5\n{COVERAGE}"
    )
    latency_and_flips = gate(task, current)  # the model has probabilities
    plain = gate(task, current, system="plain")  # no probabilities: no ECE, no coverage
    for report, failing in (
        (latency_and_flips, {"max_p95_latency_ms", "max_flip_rate"}),
        (plain, {"max_p95_latency_ms", "max_flip_rate", "max_ece", "min_coverage_at_precision"}),
    ):
        assert {row.rule for row in report.failed} == failing
        for row in report.failed:
            assert row.measured is None and row.reason.startswith(NOT_MEASURED)
    no_slices = evaluate(
        runs.task,
        runs.test,
        {"m": PredictionsFile(runs.files["strong"], runs.task)},
        n_resamples=20,
    )
    row = gate(runs.task_with("min_worst_slice_accuracy = 0.5"), no_slices).rows[0]
    assert not row.passed and NOT_MEASURED in row.reason and "--slice" in row.reason


def test_coverage_at_another_precision_is_not_measured(runs: Runs, current: Results) -> None:
    task = runs.task_with("min_coverage_at_precision = { precision = 0.95, coverage = 0.1 }")
    row = gate(task, current).rows[0]
    assert not row.passed and NOT_MEASURED in row.reason and "--target-precision 0.95" in row.reason


def test_a_clearly_worse_system_is_a_significant_regression(runs: Runs) -> None:
    task = runs.task_with("no_significant_regression = true")
    baseline = runs.results(model="strong")
    worse = runs.results(model="weak")

    report = gate(task, worse, baseline)

    row = report.rows[0]
    assert not report.passed and row.rule == "no_significant_regression"
    assert row.measured == pytest.approx(0.75 - 0.9)
    assert "-15.0 points" in row.reason and "a significant regression" in row.reason


def test_the_same_system_is_no_regression(runs: Runs) -> None:
    task = runs.task_with("no_significant_regression = true")
    baseline = runs.results(model="strong")
    report = gate(task, runs.results(model="strong"), baseline)
    assert report.passed and "no significant regression" in report.rows[0].reason
    # better than the baseline is never a regression, however significant
    assert gate(task, baseline, runs.results(model="weak")).passed


def test_the_regression_rule_needs_a_usable_baseline(runs: Runs, current: Results) -> None:
    task = runs.task_with("no_significant_regression = true")
    row = gate(task, current).rows[0]
    assert not row.passed and "--baseline" in row.reason
    other = runs.results(other="strong")
    row = gate(task, current, other).rows[0]
    assert not row.passed and "no system `model`" in row.reason
    # a baseline on other test data cannot be compared item by item
    rows = gold_rows(200)[:150]
    shorter = write_jsonl(runs.folder / "shorter.jsonl", rows)
    runs.files["short"] = write_jsonl(runs.folder / "short.jsonl", prediction_rows(rows, 0.9, 1))
    elsewhere = runs.results(test=shorter, model="short")
    with pytest.raises(StillhouseError) as caught:
        gate(task, current, elsewhere)
    assert caught.value.code == "E532"


def test_disabled_regression_rule_is_left_out(runs: Runs, current: Results) -> None:
    task = runs.task_with("min_accuracy = 0.5\nno_significant_regression = false")
    assert [row.rule for row in gate(task, current).rows] == ["min_accuracy"]


def error_of(call: Any) -> StillhouseError:
    with pytest.raises(StillhouseError) as caught:
        call()
    return caught.value


def test_unknown_rules_are_refused_when_the_task_is_loaded(runs: Runs) -> None:
    error = error_of(lambda: runs.task_with("min_acuracy = 0.9", name="typo"))
    assert error.code == "E003" and "gate.min_acuracy" in error.message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("min_accuracy = 90", "not a percentage"),
        ('min_accuracy = "high"', "share between 0 and 1"),
        ("min_coverage_at_precision = 0.99", "precision = 0.99, coverage = 0.60"),
        ("min_coverage_at_precision = { precision = 0, coverage = 0.5 }", "precision"),
        ("max_p95_latency_ms = -1", "milliseconds"),
        ('no_significant_regression = "yes"', "true or false"),
    ],
)
def test_bad_rule_values_name_the_key(
    runs: Runs, current: Results, line: str, fragment: str
) -> None:
    task = runs.task_with(line, name="bad-value")
    error = error_of(lambda: gate(task, current))
    rule = line.split(" =")[0]
    assert error.code == "E004" and f"`gate.{rule}`" in error.message and fragment in error.message


def test_other_bad_input(runs: Runs, current: Results) -> None:
    assert error_of(lambda: gate(runs.task, current)).code == "E530"  # no [gate] rules
    task = runs.task_with("min_accuracy = 0.5")
    error = error_of(lambda: gate(task, current, system="nope"))
    assert error.code == "E531" and "model, plain" in error.message
    spans = load_task(write_task(runs.folder / "spans", "min_accuracy = 0.5", kind="spans"))
    error = error_of(lambda: gate(spans, current))
    assert error.code == "E538" and "`classify` task" in error.message
    other_labels = Results(**{**current.__dict__, "task": {**current.task, "labels": ["a", "b"]}})
    assert error_of(lambda: gate(task, other_labels)).code == "E533"


@pytest.mark.parametrize("kind", ["missing", "folder", "device"])
def test_a_results_path_that_is_not_a_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    path = {"missing": tmp_path / "nothing.json", "folder": tmp_path, "device": Path("/dev/null")}

    error = error_of(lambda: read_results(path[kind]))

    if kind == "missing":
        assert error.code == "E520" and "does not exist" in error.message
        return
    what = "a folder" if kind == "folder" else "a device file"
    assert error.code == "E523"
    assert f"Results file {path[kind]} is {what}, not a regular file" in error.message
    assert "does not exist" not in error.message


@pytest.mark.parametrize("option", ["--results", "--baseline"])
def test_gate_names_what_a_wrong_results_path_is(
    runs: Runs, current: Results, tmp_path: Path, run_cli, option: str
) -> None:
    assert current.path is not None
    task = write_task(tmp_path / "task", "min_accuracy = 0.5")
    wrong, what = {
        "--results": (current.path.parent, "a folder"),  # the folder evaluate --out wrote
        "--baseline": (Path("/dev/null"), "a device file"),
    }[option]
    given = {"--results": current.path, "--baseline": current.path, option: wrong}
    paths = [str(part) for pair in given.items() for part in pair]

    result = run_cli(tmp_path, "gate", "--task", str(task), *paths)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "[E523]" in result.stderr
    assert f"Results file {wrong} is {what}, not a regular file" in result.stderr
