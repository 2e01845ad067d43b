"""Everything an audit writes into its folder: audit.json, audit.html and, with --fix, the
cleaned data with its change log (fix-log.jsonl)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stillhouse.audit.fix import FixOptions, FixSummary, fix_dataset
from stillhouse.audit.html import write_html
from stillhouse.audit.report import audit_json, write_audit_json
from stillhouse.audit.run import AuditReport

FIX_LOG_FILE_NAME = "fix-log.jsonl"


@dataclass(frozen=True)
class AuditOutputs:
    json_path: Path
    html_path: Path
    document: dict[str, Any]
    fix: FixSummary | None


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
