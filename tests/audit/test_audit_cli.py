"""`stillhouse audit` as a user runs it: audit.json, audit.html, the terminal summary, --fix,
exit 0 with findings, exit 2 with one clear message on bad input (nothing written)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_data import NUSAX_TASK, copy_task, nusax_rows, write_jsonl

CLI = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NusaX English train/test with planted duplicates, a conflict, a leak, markup and PII."""
    folder = tmp_path_factory.mktemp("audit-cli")
    copy_task(NUSAX_TASK, folder / "task")
    train = nusax_rows("english", "train", 150)
    test = nusax_rows("english", "test", 60)
    train.append({**train[3], "id": "dup-same"})
    train.append(
        {
            **train[4],
            "id": "dup-conflict",
            "label": "negative" if train[4]["label"] != "negative" else "positive",
        }
    )
    train.append({"id": "leak", "text": test[0]["text"], "label": test[0]["label"]})
    train.append(
        {"id": "html", "text": "<div>Great &amp; cheap food here</div>", "label": "positive"}
    )
    train.append(
        {
            "id": "pii",
            "text": "Email me at budi.santoso@example.com, the hotel was lovely.",
            "label": "positive",
        }
    )
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    return folder


def assert_clean_error(result: subprocess.CompletedProcess[str], code: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"[{code}]" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_full_audit_with_fix_writes_reports_and_a_cleaned_copy(
    workspace: Path, run_cli: CLI
) -> None:
    data = workspace / "train.jsonl"
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    result = run_cli(
        workspace,
        "audit", "--task", "task/task.toml", "--data", "train.jsonl", "--test", "test.jsonl",
        "--out", "reports/a1", "--fix", "cleaned.jsonl", "--redact-pii",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Exact duplicates" in result.stdout and "wrote" in result.stdout

    document = json.loads((workspace / "reports/a1/audit.json").read_text())
    assert document["schema"] == "stillhouse.audit" and document["schema_version"] == 1
    checks = document["checks"]
    assert list(checks) == [
        "duplicates", "near_duplicates", "leakage", "label_issues", "disagreement",
        "outliers", "balance", "language", "pii", "text",
    ]  # fmt: skip
    assert checks["duplicates"]["metrics"]["conflicting_groups"] == 1
    assert checks["leakage"]["metrics"]["test_rows_leaked"] == 1
    assert checks["disagreement"]["status"] == "skipped"
    assert checks["label_issues"]["metrics"]["labelled_rows"] == 155
    assert any(f["problem"] == "markup" and f["id"] == "html" for f in checks["text"]["findings"])
    assert any(
        f["entity"] == "EMAIL_ADDRESS" and f["id"] == "pii" for f in checks["pii"]["findings"]
    )
    assert document["data"]["fingerprint"] and document["data"]["test"]["rows"] == 60

    page = (workspace / "reports/a1/audit.html").read_text()
    assert "<table class='sortable'>" in page and "addEventListener('click'" in page
    assert not re.search(r"(src|href)=['\"]https?:", page)  # self-contained, works offline
    assert "Likely label errors" in page

    cleaned = [json.loads(line) for line in (workspace / "cleaned.jsonl").read_text().splitlines()]
    log = [
        json.loads(line)
        for line in (workspace / "reports/a1/fix-log.jsonl").read_text().splitlines()
    ]
    dropped = {c["id"] for c in log if c["action"] == "dropped"}
    assert {"dup-same", "dup-conflict", "leak"} <= dropped
    assert len(cleaned) == 155 - len(dropped) == document["fix"]["rows_out"]
    redacted = next(row for row in cleaned if row["id"] == "pii")
    assert (
        "budi.santoso@example.com" not in redacted["text"] and "<EMAIL_ADDRESS>" in redacted["text"]
    )
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before  # input untouched


def test_degenerate_data_warns_and_exits_zero(workspace: Path, run_cli: CLI) -> None:
    rows = nusax_rows("english", "train", 30)
    write_jsonl(workspace / "one-label.jsonl", [{**r, "label": "neutral"} for r in rows])
    write_jsonl(
        workspace / "same.jsonl",
        [{"id": str(i), "text": "Same text", "label": "neutral"} for i in range(12)],
    )
    write_jsonl(
        workspace / "test-extra.jsonl", [{**r, "id": f"t{i}"} for i, r in enumerate(rows[:10])]
    )
    one = run_cli(
        workspace, "audit", "-t", "task/task.toml", "-d", "one-label.jsonl", "--test", "test-extra.jsonl",
        "--checks", "duplicates,balance,label_issues,leakage", "-o", "reports/one",
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    warnings = json.loads((workspace / "reports/one/audit.json").read_text())["warnings"]
    assert any("Every labelled row has the label 'neutral'" in w for w in warnings)
    assert any("label(s) the training data lacks" in w for w in warnings)
    assert "warning:" in one.stdout
    same = run_cli(
        workspace,
        "audit",
        "-t",
        "task/task.toml",
        "-d",
        "same.jsonl",
        "--checks",
        "duplicates,near_duplicates,text",
        "-o",
        "reports/same",
    )
    assert same.returncode == 0, same.stderr
    document = json.loads((workspace / "reports/same/audit.json").read_text())
    assert any("All 12 texts are the same" in w for w in document["warnings"])
    assert document["checks"]["duplicates"]["findings"][0]["size"] == 12


def test_rows_without_ids_that_repeat_a_text_are_duplicates_not_errors(
    workspace: Path, run_cli: CLI
) -> None:
    rows = [{"text": r["text"], "label": r["label"]} for r in nusax_rows("english", "train", 20)]
    write_jsonl(workspace / "no-ids.jsonl", rows + rows[:3])
    result = run_cli(
        workspace,
        "audit",
        "-t",
        "task/task.toml",
        "-d",
        "no-ids.jsonl",
        "--checks",
        "duplicates",
        "-o",
        "reports/ids",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((workspace / "reports/ids/audit.json").read_text())
    assert document["checks"]["duplicates"]["metrics"]["redundant_rows"] == 3


@pytest.mark.parametrize(
    ("name", "rows", "args", "code"),
    [
        ("empty", [], [], "E104"),
        ("non-text", [{"id": "1", "text": "fine", "label": "neutral"}, {"id": "2", "text": 42, "label": "neutral"}], [], "E105"),
        ("unknown-check", None, ["--checks", "duplicates,spelling"], "E601"),
        ("fix-is-input", None, ["--fix", "DATA"], "E602"),
        ("test-is-data", None, ["--test", "DATA"], "E603"),
        ("threshold", None, ["--near-threshold", "1.5"], "E605"),
        ("redact-without-fix", None, ["--redact-pii"], "E605"),
        ("unknown-annotator", None, ["--annotator", "human"], "E604"),
    ],
)  # fmt: skip
def test_bad_input_is_one_message_and_exit_2(
    workspace: Path, run_cli: CLI, name: str, rows: list | None, args: list[str], code: str
) -> None:
    data = workspace / f"{name}.jsonl"
    write_jsonl(data, rows if rows is not None else nusax_rows("english", "train", 20))
    args = [str(data) if arg == "DATA" else arg for arg in args]
    out = workspace / "reports" / f"bad-{name}"
    result = run_cli(
        workspace, "audit", "-t", "task/task.toml", "-d", str(data), "-o", str(out), *args
    )
    assert_clean_error(result, code)
    assert not out.exists()
    if name == "non-text":
        assert f"{data}:2" in result.stderr and "must be a string" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--fix", "fixed.jsonl", "--drop-label-issues-below", "5"],
            "--drop-label-issues-below must be a label quality score in [0, 1]; got 5.0.",
        ),
        (
            ["--drop-label-issues-below", "0.5"],
            "--drop-label-issues-below must be used with --fix and the label_issues check; "
            "got 0.5.",
        ),
    ],
    ids=["out-of-range", "without-fix"],
)
def test_drop_label_issues_below_is_checked_and_shown_as_given(
    workspace: Path, run_cli: CLI, args: list[str], message: str
) -> None:
    data = write_jsonl(workspace / "threshold.jsonl", nusax_rows("english", "train", 20))
    out = workspace / "reports" / "bad-threshold"

    result = run_cli(
        workspace, "audit", "-t", "task/task.toml", "-d", str(data), "-o", str(out), *args
    )

    assert_clean_error(result, "E605")
    assert message in result.stderr
    assert not out.exists() and not (workspace / "fixed.jsonl").exists()


def test_a_data_path_that_is_a_folder_is_named_as_one(workspace: Path, run_cli: CLI) -> None:
    folder = workspace / "folder.jsonl"
    folder.mkdir()

    result = run_cli(workspace, "audit", "-t", "task/task.toml", "-d", str(folder), "-o", "out")

    assert_clean_error(result, "E108")
    assert f"Data file {folder} is a folder, not a regular file" in result.stderr
    assert "does not exist" not in result.stderr
