"""Everything an audit writes into its folder: audit.json, audit.html and, with --fix, the
cleaned data with its change log (fix-log.jsonl)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stillhouse.audit.fix import FixOptions, FixSummary, check_fix_target, fix_dataset
from stillhouse.audit.html import HTML_FILE_NAME, write_html
from stillhouse.audit.report import AUDIT_FILE_NAME, audit_json, write_audit_json
from stillhouse.audit.run import AuditReport
from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
from stillhouse.task import Task

FIX_LOG_FILE_NAME = "fix-log.jsonl"


@dataclass(frozen=True)
class AuditOutputs:
    json_path: Path
    html_path: Path
    document: dict[str, Any]
    fix: FixSummary | None


def check_audit_outputs(
    task: Task,
    data_path: str | Path,
    test_path: str | Path | None,
    out_dir: str | Path,
    fix_path: str | Path | None,
) -> None:
    """Before the audit runs: nothing it writes (audit.json, audit.html, the cleaned copy and
    its log) may land on what it reads (the data, the test split, the task file, the store) or
    on each other, and each must be writable (E602 for --fix on the audited data, else the
    output guard's E120–E126)."""
    data_path, out_dir = Path(data_path), Path(out_dir)
    test = Path(test_path) if test_path is not None else None
    outputs = [
        Output("--out", out_dir, folder=True),
        Output("--out", out_dir / AUDIT_FILE_NAME),
        Output("--out", out_dir / HTML_FILE_NAME),
    ]
    if fix_path is not None:
        check_fix_target(data_path, test, Path(fix_path))
        outputs += [Output("--fix", Path(fix_path)), Output("--out", out_dir / FIX_LOG_FILE_NAME)]
    inputs = [*task_inputs(task.path, task.store_path), Input("the data under audit", data_path)]
    if test is not None:
        inputs.append(Input("the test split", test))
    check_outputs(outputs, inputs)


def write_outputs(
    report: AuditReport,
    out_dir: str | Path,
    *,
    fix_path: str | Path | None = None,
    fix_options: FixOptions | None = None,
) -> AuditOutputs:
    out_dir = Path(out_dir)
    fixed = None
    if fix_path is not None:
        log = out_dir / FIX_LOG_FILE_NAME
        fixed = fix_dataset(report, fix_path, log, fix_options or FixOptions())
    document = audit_json(report, fix=None if fixed is None else asdict(fixed))
    json_path = write_audit_json(document, out_dir)
    html_path = write_html(document, out_dir)
    return AuditOutputs(json_path, html_path, document, fixed)
