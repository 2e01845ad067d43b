"""What every check returns: a summary card (how many, how bad, what to do) and its findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warning", "problem", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome.

    ``count`` is the number of findings (groups, pairs, rows…, as ``summary`` says), ``metrics``
    holds the check's numbers, ``findings`` its items (frozen dataclasses, most severe first).
    """

    name: str
    title: str
    status: Status
    count: int
    summary: str
    advice: str
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: Sequence[Any] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "count": self.count,
            "summary": self.summary,
            "advice": self.advice,
            "metrics": self.metrics,
            "findings": [dataclasses.asdict(item) for item in self.findings],
        }


def skipped(name: str, title: str, reason: str) -> CheckResult:
    """A check that could not run on this data; ``reason`` says why."""
    return CheckResult(name, title, "skipped", 0, reason, "")


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
