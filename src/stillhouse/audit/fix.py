"""--fix: a cleaned copy of the audited data and a log of every change; the input is never touched.

Applied in this order, from what the checks found: drop exact duplicates (the first row of each
group stays), drop training rows that leak into the test set, drop likely label errors whose
quality is below a threshold (optional), redact PII (optional, presidio-anonymizer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stillhouse.audit.duplicates import DuplicateGroup
from stillhouse.audit.label_issues import LabelIssue
from stillhouse.audit.leakage import LeakedPair
from stillhouse.audit.pii import PiiHit, redact
from stillhouse.audit.run import AuditReport
from stillhouse.data.io import write_jsonl
from stillhouse.errors import Errors, fail


@dataclass(frozen=True)
class FixOptions:
    redact_pii: bool = False
    # Drop likely label errors whose label quality score is below this (None: keep them).
    drop_label_issues_below: float | None = None

    def __post_init__(self) -> None:
        threshold = self.drop_label_issues_below
        # A label quality score lies in [0, 1]; a threshold outside it is a typo, not a choice.
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise fail(
                Errors.E605,
                what="--drop-label-issues-below",
                expected="a label quality score in [0, 1]",
                value=threshold,
            )


@dataclass(frozen=True)
class Change:
    id: str
    action: str  # "dropped" or "redacted"
    check: str
    reason: str


@dataclass(frozen=True)
class FixSummary:
    path: str
    log: str
    rows_in: int
    rows_out: int
    dropped: int
    redacted: int


def check_fix_target(report_data_path: Path, test_path: Path | None, out_path: Path) -> None:
    """Refuse to overwrite an input (E602)."""
    inputs = [report_data_path] + ([test_path] if test_path is not None else [])
    for given in inputs:
        if out_path.resolve() == given.resolve():
            raise fail(Errors.E602, path=out_path)


def planned_changes(report: AuditReport, options: FixOptions) -> list[Change]:
    """Every change --fix makes, in the order the rules apply (a row is dropped at most once)."""
    changes: list[Change] = []
    dropped: set[str] = set()

    def drop(example_id: str, check: str, reason: str) -> None:
        if example_id not in dropped:
            dropped.add(example_id)
            changes.append(Change(example_id, "dropped", check, reason))

    group: DuplicateGroup
    for group in report.findings("duplicates"):
        note = (
            f"; labels conflict ({', '.join(str(label) for label in group.labels)}), kept the first"
            if group.conflicting
            else ""
        )
        for example_id in group.ids[1:]:
            drop(example_id, "duplicates", f"exact duplicate of {group.ids[0]}{note}")
    pair: LeakedPair
    for pair in report.findings("leakage"):
        drop(
            pair.train_id,
            "leakage",
            f"{pair.kind} copy of test row {pair.test_id} (similarity {pair.similarity:.2f})",
        )
    threshold = options.drop_label_issues_below
    issue: LabelIssue
    if threshold is not None:
        for issue in report.findings("label_issues"):
            if issue.quality < threshold:
                reason = f"likely label error: given {issue.given}, suggested {issue.suggested} (quality {issue.quality:.3f} < {threshold:g})"
                drop(issue.id, "label_issues", reason)
    if options.redact_pii:
        hits: dict[str, list[PiiHit]] = defaultdict(list)
        for hit in report.findings("pii"):
            hits[hit.id].append(hit)
        for example_id, found in hits.items():
            if example_id not in dropped:
                kinds = ", ".join(sorted({h.entity for h in found}))
                changes.append(
                    Change(example_id, "redacted", "pii", f"{len(found)} span(s): {kinds}")
                )
    return changes


def fix_dataset(
    report: AuditReport, out_path: str | Path, log_path: str | Path, options: FixOptions
) -> FixSummary:
    """Write the cleaned rows (JSONL, the task's field names) and the change log (JSONL)."""
    out_path, log_path = Path(out_path), Path(log_path)
    check_fix_target(report.data.path, report.data.test_path, out_path)
    changes = planned_changes(report, options)
    dropped = {c.id for c in changes if c.action == "dropped"}
    redacted = {c.id for c in changes if c.action == "redacted"}
    hits: dict[str, list[PiiHit]] = defaultdict(list)
    for hit in report.findings("pii") if redacted else ():
        hits[hit.id].append(hit)
    fields = report.task.input
    rows: list[dict[str, Any]] = []
    for example, label in zip(report.data.examples, report.data.labels, strict=True):
        if example.id in dropped:
            continue
        text = redact(example.text, hits[example.id]) if example.id in redacted else example.text
        row: dict[str, Any] = {fields.id: example.id, fields.text: text}
        if label is not None:
            row[fields.label] = label
        row.update(example.meta)
        rows.append(row)
    write_jsonl(out_path, rows)
    write_jsonl(log_path, (asdict(change) for change in changes))
    return FixSummary(
        path=str(out_path),
        log=str(log_path),
        rows_in=len(report.data.examples),
        rows_out=len(rows),
        dropped=len(dropped),
        redacted=len(redacted),
    )
