"""Exact duplicates after normalisation, and the duplicates whose labels conflict."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.audit.normalize import normalize_text
from stillhouse.audit.result import CheckResult, share
from stillhouse.data.records import Example

NAME, TITLE = "duplicates", "Exact duplicates"


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows whose texts are equal after :func:`normalize_text`, in file order."""

    text: str
    size: int
    ids: list[str]
    labels: list[str | None]
    conflicting: bool


def exact_duplicate_groups(
    examples: Sequence[Example], labels: Sequence[str | None]
) -> list[DuplicateGroup]:
    """Groups of 2+ rows with the same normalised text; conflicting ones first, then larger."""
    rows_by_key: dict[str, list[int]] = defaultdict(list)
    for row, example in enumerate(examples):
        rows_by_key[normalize_text(example.text)].append(row)
    groups = []
    for rows in rows_by_key.values():
        if len(rows) < 2:
            continue
        group_labels = [labels[row] for row in rows]
        known = {label for label in group_labels if label is not None}
        groups.append(
            DuplicateGroup(
                text=examples[rows[0]].text,
                size=len(rows),
                ids=[examples[row].id for row in rows],
                labels=group_labels,
                conflicting=len(known) > 1,
            )
        )
    return sorted(groups, key=lambda group: (not group.conflicting, -group.size))


def check_duplicates(examples: Sequence[Example], labels: Sequence[str | None]) -> CheckResult:
    groups = exact_duplicate_groups(examples, labels)
    extra_rows = sum(group.size - 1 for group in groups)
    conflicting = sum(group.conflicting for group in groups)
    metrics = {
        "groups": len(groups),
        "redundant_rows": extra_rows,
        "redundant_share": share(extra_rows, len(examples)),
        "conflicting_groups": conflicting,
    }
    if not groups:
        return CheckResult(NAME, TITLE, "ok", 0, "No two texts are the same.", "", metrics)
    summary = (
        f"{len(groups)} text(s) occur more than once: {extra_rows} redundant row(s) "
        f"({metrics['redundant_share']:.1%} of the data); {conflicting} group(s) have "
        "conflicting labels."
    )
    advice = "Keep one row per text (--fix does); decide the right label for conflicting groups."
    status = "problem" if conflicting or metrics["redundant_share"] > 0.05 else "warning"
    return CheckResult(NAME, TITLE, status, len(groups), summary, advice, metrics, groups)
