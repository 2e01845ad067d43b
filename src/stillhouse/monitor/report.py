"""monitor.json: what `stillhouse monitor` measured, in a versioned schema that `gate` reads.

Schema version 1 (a JSON object; rates and accuracies are shares in [0, 1]; times are ISO 8601
in UTC; an *interval* is ``{"estimate", "low", "high"}`` at 95%):

- ``schema``: ``"stillhouse.monitor"``; ``schema_version``: 1; ``created_at``;
  ``package_versions``.
- ``task``: ``name``, ``kind``, ``labels``, ``fingerprint``.
- ``settings``: ``since``, ``until``, ``system``, ``first_stage`` (as given, or null),
  ``baselines`` (the paths given).
- ``window``: ``store`` (path), ``system`` (the one monitored), ``since`` / ``until`` (the
  window asked for, null when open), ``first`` / ``last`` (the first and last prediction in
  it), ``predictions`` (count), ``versions`` (version → predictions), ``texts_logged``
  (predictions whose text was logged).
- ``baseline``: null without ``--baseline``, else ``sources`` (``path``, ``kind``: ``test
  set`` | ``predictions`` | ``results``, ``sha256``, ``items``), ``system`` (the results.json
  system read, or null), ``label_source`` (``predicted`` | ``gold`` | null), ``label_items``,
  ``accuracy`` (true accuracy on the baseline, or null) with ``accuracy_from``,
  ``estimated_accuracy`` (the mean confidence there, abstentions as errors, or null: compare
  it with ``accuracy`` to see how well the confidences were calibrated there),
  ``abstention_rate``, ``confidences`` and ``texts`` (how many, or null).
- ``label_shift`` (null without a baseline label distribution): ``psi``, ``level`` (``none``
  < 0.1 ≤ ``moderate`` < 0.25 ≤ ``major``), ``epsilon`` (the share that replaces 0),
  ``expected_without_shift`` (≈ PSI from sampling noise alone), ``chi_square`` (``statistic``,
  ``dof``, ``p_value``), ``window_answers`` / ``baseline_answers``, ``window_counts`` /
  ``baseline_counts`` (label → answers; abstentions have no label) and ``top`` (the 10 labels
  with the largest PSI terms: ``label``, ``baseline_share``, ``window_share``, ``psi_term``).
- ``confidence_shift`` (null unless both sides have confidences): ``ks`` (``statistic``,
  ``p_value``), ``window`` / ``baseline`` (``n``, ``mean``, ``quantiles``) and ``histogram``
  (``edges``, ``window``, ``baseline``: shares per bin). The window side is its answered
  predictions.
- ``estimated_accuracy`` (null for systems without confidences and for non-classify tasks): an
  interval (exact Poisson-binomial up to 5,000 predictions, else normal) with ``n``,
  ``answered``, ``estimate_answered`` (the mean confidence of the answers) and ``interval``
  (the method); see :mod:`stillhouse.monitor.accuracy`.
- ``abstention``: ``count``, ``rate`` (an interval, Wilson), ``baseline_rate``.
- ``fallback`` (null unless predictions name cascade stages): ``first_stage``,
  ``first_stage_from``, ``stages`` (stage → predictions), ``rate`` (an interval).
- ``latency_ms``: ``p50``, ``p95``, ``p99``, ``mean``.
- ``text`` (null unless texts were logged): ``length`` (characters: ``window`` and, with a
  test set as baseline, ``baseline`` summaries and ``ks``) and ``language`` (``detected``,
  ``window`` shares per ISO 639-1 code, ``outside_task_languages``, and with a test set
  ``baseline``, ``baseline_outside_task_languages`` and ``psi``; null when lingua is not
  installed, ``not_measured.language`` says so).
- ``over_time``: ``bucket_seconds`` and ``buckets`` (``start``, ``n``, ``abstention_rate``,
  ``fallback_rate``, ``estimated_accuracy``, ``mean_confidence``, ``p95_latency_ms``).
- ``alarms``: what moved, each ``what`` (``label_shift``, ``confidence_shift``,
  ``estimated_accuracy``, ``abstention``, ``text_length``, ``language``) and ``sentence``; see
  :func:`stillhouse.monitor.run._alarms` for when each fires.
- ``not_measured``: section → why it is null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stillhouse.data.io import write_json
from stillhouse.errors import Errors, fail
from stillhouse.paths import require_file

SCHEMA = "stillhouse.monitor"
SCHEMA_VERSION = 1
MONITOR_FILE_NAME = "monitor.json"
_SECTIONS = (
    "task",
    "window",
    "baseline",
    "label_shift",
    "confidence_shift",
    "estimated_accuracy",
    "abstention",
    "fallback",
    "latency_ms",
    "text",
    "over_time",
    "alarms",
    "not_measured",
)


@dataclass(frozen=True)
class Monitor:
    """A monitor.json as read: the document and where it came from."""

    document: dict[str, Any]
    path: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "the monitor report"

    @property
    def system(self) -> str:
        return str(self.document["window"]["system"])

    def section(self, name: str) -> Any:
        return self.document.get(name)

    def why_not_measured(self, name: str, default: str) -> str:
        return (self.document.get("not_measured") or {}).get(name, default)


def write_monitor(document: dict[str, Any], path: str | Path) -> Path:
    """Write ``document`` to ``path`` atomically; return the path."""
    path = Path(path)
    write_json(path, document)
    return path


def read_monitor(path: str | Path) -> Monitor:
    """Read a monitor.json: E841 if missing, E842 if a folder or device, E843 if not a monitor
    file, E844 for another schema version."""
    path = require_file(Path(path), Errors.E841, Errors.E842)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise fail(Errors.E843, path=path, detail=f"not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise fail(Errors.E843, path=path, detail=f'no `"schema": "{SCHEMA}"` at the top level')
    if document.get("schema_version") != SCHEMA_VERSION:
        found = document.get("schema_version")
        raise fail(Errors.E844, path=path, found=found, expected=SCHEMA_VERSION)
    problem = _schema_problem(document)
    if problem is not None:
        raise fail(Errors.E843, path=path, detail=problem)
    return Monitor(document, path)


def _schema_problem(document: dict[str, Any]) -> str | None:
    """What is missing or malformed in a version-1 document (what gate reads), or None."""
    missing = [section for section in _SECTIONS if section not in document]
    if missing:
        return f"`{missing[0]}` is missing"
    task = document["task"]
    if not isinstance(task, dict) or not isinstance(task.get("labels"), list):
        return "`task` has no `labels` list"
    window = document["window"]
    if not isinstance(window, dict) or not isinstance(window.get("system"), str):
        return "`window` has no `system`"
    abstention = document["abstention"]
    if not isinstance(abstention, dict) or not _is_interval(abstention.get("rate")):
        return "`abstention.rate` is not an interval"
    if document["estimated_accuracy"] is not None and not _is_interval(
        document["estimated_accuracy"]
    ):
        return "`estimated_accuracy` is not an interval"
    shift = document["label_shift"]
    if shift is not None and not (isinstance(shift, dict) and _is_number(shift.get("psi"))):
        return "`label_shift.psi` is not a number"
    if not isinstance(document["not_measured"], dict):
        return "`not_measured` is not an object"
    return None


def _is_interval(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _is_number(value.get(key)) for key in ("estimate", "low", "high")
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
