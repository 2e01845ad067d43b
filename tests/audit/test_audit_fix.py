"""--fix: what is dropped or redacted, in which order, with a log line for every change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from audit_data import NUSAX_TASK, copy_task, nusax_rows, write_jsonl

from stillhouse.audit.fix import FixOptions, fix_dataset, planned_changes
from stillhouse.audit.label_issues import LabelIssue
from stillhouse.audit.result import CheckResult
from stillhouse.audit.run import AuditSettings, run_audit
from stillhouse.errors import StillhouseError
from stillhouse.task import load_task


@pytest.fixture()
def report(tmp_path: Path):
    rows = nusax_rows("english", count=40)
    rows.append({**rows[0], "id": "copy"})
    task = load_task(copy_task(NUSAX_TASK, tmp_path / "task"))
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    audited = run_audit(task, data, settings=AuditSettings(checks=("duplicates",)))
    issues = [
        LabelIssue(rows[5]["id"], rows[5]["text"], rows[5]["label"], "neutral", 0.05, 0.9),
        LabelIssue(rows[6]["id"], rows[6]["text"], rows[6]["label"], "neutral", 0.4, 0.6),
        LabelIssue("copy", rows[0]["text"], rows[0]["label"], "neutral", 0.01, 0.9),
    ]
    check = CheckResult("label_issues", "Likely label errors", "problem", 3, "", "", {}, issues)
    return dataclasses.replace(audited, checks={**audited.checks, "label_issues": check})


def test_label_issues_below_the_threshold_are_dropped_once(report) -> None:
    changes = planned_changes(report, FixOptions(drop_label_issues_below=0.1))
    assert [(c.id, c.check) for c in changes] == [
        ("copy", "duplicates"),
        (report.data.examples[5].id, "label_issues"),
    ]
    assert planned_changes(report, FixOptions())[0].reason.startswith("exact duplicate of ")


def test_cleaned_rows_keep_the_task_field_names_and_order(report, tmp_path: Path) -> None:
    summary = fix_dataset(
        report,
        tmp_path / "clean.jsonl",
        tmp_path / "log.jsonl",
        FixOptions(drop_label_issues_below=0.1),
    )
    rows = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert summary.rows_in == 41 and summary.rows_out == len(rows) == 39
    assert set(rows[0]) == {"id", "text", "label"}
    assert [r["id"] for r in rows] == [
        e.id for e in report.data.examples if e.id not in {"copy", report.data.examples[5].id}
    ]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


def test_the_input_is_never_the_output(report) -> None:
    with pytest.raises(StillhouseError) as raised:
        fix_dataset(report, report.data.path, report.data.path.with_suffix(".log"), FixOptions())
    assert raised.value.code == "E602"


@pytest.mark.parametrize("threshold", [-1.0, 1.5, 5.0, float("nan")])
def test_the_label_quality_threshold_must_lie_in_0_to_1(threshold: float) -> None:
    with pytest.raises(StillhouseError) as raised:
        FixOptions(drop_label_issues_below=threshold)

    assert raised.value.code == "E605"
    assert raised.value.message == (
        "Audit setting --drop-label-issues-below must be a label quality score in [0, 1]; "
        f"got {threshold!r}."
    )


def test_the_label_quality_threshold_may_be_0_or_1() -> None:
    assert FixOptions(drop_label_issues_below=0.0).drop_label_issues_below == 0.0
    assert FixOptions(drop_label_issues_below=1.0).drop_label_issues_below == 1.0
