"""audit.json: what the audit found, in a versioned schema.

Schema version 1 (a JSON object; shares are in [0, 1]):

- ``schema``: ``"stillhouse.audit"``; ``schema_version``: 1.
- ``created_at`` (ISO 8601, UTC), ``package_versions`` (name → version).
- ``task``: ``name``, ``kind``, ``labels``, ``languages``, ``fingerprint``.
- ``data``: ``path``, ``rows`` (rows audited), ``fingerprint``, ``labelled_rows``,
  ``label_source`` (``gold (FILE)`` or annotator ids), ``empty_rows``, ``skipped_rows``
  (messages), ``test`` (``path``, ``rows``, ``fingerprint``, or null), ``llm`` (the LLM
  annotator(s) found in the store, or null), ``reference`` (what the LLM is compared with).
- ``settings``: the :class:`~stillhouse.audit.run.AuditSettings` used.
- ``warnings``: sentences about degenerate but usable data.
- ``checks``: check name → ``title``, ``status`` (``ok`` | ``warning`` | ``problem`` |
  ``skipped``), ``count`` (findings), ``summary`` and ``advice`` (sentences), ``metrics``
  (the check's numbers), ``findings`` (objects, most severe first; their fields are the check
  module's finding dataclass: ``DuplicateGroup``, ``NearDuplicateGroup``, ``LeakedPair``,
  ``LabelIssue``, ``Disagreement``, ``Outlier``, ``LabelCount``, ``OffLanguageText``, ``PiiHit``,
  ``TextProblem``).
- ``review_queue``: ``queue`` (its name in the store), ``store`` (path or null), ``items``
  (count) and ``top`` (the first 100: ``example_id``, ``rank``, ``priority``, ``reasons``,
  ``suggested``).
- ``fix``: null, or what ``--fix`` wrote (``path``, ``log``, ``rows_in``, ``rows_out``,
  ``dropped``, ``redacted``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stillhouse.audit.review_queue import QUEUE
from stillhouse.audit.run import AuditReport
from stillhouse.data.io import write_json
from stillhouse.provenance import package_versions

SCHEMA = "stillhouse.audit"
SCHEMA_VERSION = 1
AUDIT_FILE_NAME = "audit.json"
QUEUE_SHOWN = 100


def audit_json(report: AuditReport, fix: dict[str, Any] | None = None) -> dict[str, Any]:
    task = report.task
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_versions": package_versions(),
        "task": {
            "name": task.name,
            "kind": task.kind,
            "labels": task.label_names,
            "languages": list(task.languages),
            "fingerprint": task.fingerprint(),
        },
        "data": report.describe_data(),
        "settings": report.settings_json(),
        "warnings": report.warnings,
        "checks": {name: result.to_json() for name, result in report.checks.items()},
        "review_queue": {
            "queue": QUEUE,
            "store": None if report.queue_store is None else str(report.queue_store),
            "items": len(report.review_queue),
            "top": [dataclasses.asdict(item) for item in report.review_queue[:QUEUE_SHOWN]],
        },
        "fix": fix,
    }


def write_audit_json(document: dict[str, Any], folder: str | Path) -> Path:
    """Write ``document`` to ``folder/audit.json`` atomically; NaN becomes null."""
    path = Path(folder) / AUDIT_FILE_NAME
    write_json(
        path, json.loads(json.dumps(document, default=_plain), parse_constant=lambda _: None)
    )
    return path


def _plain(value: Any) -> Any:
    """numpy scalars and paths in findings as JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
