"""A monitor run: the window's predictions against the baseline, as the monitor.json document
(:mod:`stillhouse.monitor.report` documents it), and the files it writes.

```python
from stillhouse.monitor.run import run_monitor, write_monitor_outputs

document = run_monitor(task, since="2026-12-01", baselines=["test.jsonl", "preds.jsonl"])
document["label_shift"]["psi"], document["estimated_accuracy"]["estimate"]
write_monitor_outputs(document, "reports/monitor1")   # monitor.json + monitor.html
```
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.data.io import write_text
from stillhouse.data.store import PredictionRecord
from stillhouse.monitor import drift, rates
from stillhouse.monitor.accuracy import estimated_accuracy
from stillhouse.monitor.baseline import Baseline, answer_labels, read_baseline
from stillhouse.monitor.html import HTML_FILE_NAME, render_html
from stillhouse.monitor.report import MONITOR_FILE_NAME, SCHEMA, SCHEMA_VERSION, write_monitor
from stillhouse.monitor.window import Window, iso, read_window
from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
from stillhouse.provenance import package_versions
from stillhouse.task import Task

NO_BASELINE = "no --baseline given"
NO_LINGUA = (
    "lingua is not installed (the language detector of the `audit` extra): "
    "pip install 'stillhouse[audit]'"
)
NO_TEXTS = (
    "the server logged no texts (only their hashes); set `log_texts = true` under [serve] in "
    "task.toml to measure text length and language mix"
)


def check_monitor_outputs(task: Task, baselines: Sequence[Path], out_dir: Path) -> None:
    """Before any work: OUT, OUT/monitor.json and OUT/monitor.html may not land on the task
    file, the store or a baseline, and must be writable (E120–E126)."""
    out_dir = Path(out_dir)
    check_outputs(
        [
            Output("--out", out_dir, folder=True),
            Output("--out", out_dir / MONITOR_FILE_NAME),
            Output("--out", out_dir / HTML_FILE_NAME),
        ],
        [
            *task_inputs(task.path, task.store_path),
            *(Input("the baseline", Path(path)) for path in baselines),
        ],
    )


def write_monitor_outputs(document: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """OUT/monitor.json and OUT/monitor.html, each written atomically (the page is rendered
    first, so a document it cannot show leaves no file behind)."""
    out_dir = Path(out_dir)
    page = render_html(document)
    json_path = write_monitor(document, out_dir / MONITOR_FILE_NAME)
    html_path = out_dir / HTML_FILE_NAME
    write_text(html_path, page)
    return json_path, html_path


def run_monitor(
    task: Task,
    *,
    since: str | None = None,
    until: str | None = None,
    system: str | None = None,
    baselines: Sequence[str | Path] = (),
    first_stage: str | None = None,
) -> dict[str, Any]:
    """The monitor.json document for ``system``'s predictions logged in [since, until) against
    the ``baselines`` (see :mod:`stillhouse.monitor.baseline`). Bad input raises: the window's
    E831–E835, the baseline's E836–E839 (and the readers' own), E840 for ``first_stage``."""
    window = read_window(task, since=since, until=until, system=system)
    baseline = read_baseline(task, [Path(path) for path in baselines], window.system)
    records = window.records
    not_measured: dict[str, str] = {}
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_versions": package_versions(),
        "task": {
            "name": task.name,
            "kind": task.kind,
            "labels": task.label_names,
            "fingerprint": task.fingerprint(),
        },
        "settings": {
            "since": since,
            "until": until,
            "system": system,
            "first_stage": first_stage,
            "baselines": [str(path) for path in baselines],
        },
        "window": _window_section(window),
        "baseline": _baseline_section(baseline) if baseline.given else None,
    }
    document["label_shift"] = _label_shift(task, records, baseline, not_measured)
    confidences, why = _confidences(task, records)
    document["confidence_shift"] = _confidence_shift(confidences, records, baseline, why)
    if document["confidence_shift"] is None:
        not_measured["confidence_shift"] = _why_no_confidence_shift(why, baseline)
    if confidences is None:
        document["estimated_accuracy"] = None
        not_measured["estimated_accuracy"] = why or ""
    else:
        abstained = np.array([record.abstained for record in records])
        document["estimated_accuracy"] = estimated_accuracy(confidences, abstained)
    document["abstention"] = {
        **rates.abstention(records),
        "baseline_rate": baseline.abstention_rate,
    }
    first = rates.first_stage(records, first_stage)
    document["fallback"] = rates.fallback(records, first) if first is not None else None
    if first is None:
        not_measured["fallback"] = "no logged prediction names a cascade stage (a single model)"
    document["latency_ms"] = rates.latency(records)
    document["text"] = _text(task, records, baseline, not_measured)
    if document["text"] is None:
        not_measured["text"] = NO_TEXTS
    document["over_time"] = rates.over_time(records, first, confidences=confidences is not None)
    document["alarms"] = _alarms(document)
    document["not_measured"] = not_measured
    return document


# --- sections ---------------------------------------------------------------------------------


def _window_section(window: Window) -> dict[str, Any]:
    records = window.records
    return {
        "store": window.store,
        "system": window.system,
        "since": iso(window.since),
        "until": iso(window.until),
        "first": iso(records[0].time),
        "last": iso(records[-1].time),
        "predictions": len(records),
        "versions": rates.versions(records),
        "texts_logged": sum(record.text is not None for record in records),
    }


def _baseline_section(baseline: Baseline) -> dict[str, Any]:
    return {
        "sources": [vars(source) for source in baseline.sources],
        "system": baseline.system,
        "label_source": baseline.label_source,
        "label_items": baseline.label_items,
        "accuracy": baseline.accuracy,
        "accuracy_from": baseline.accuracy_from,
        "estimated_accuracy": baseline.estimated_accuracy,
        "abstention_rate": baseline.abstention_rate,
        "confidences": None if baseline.confidences is None else int(baseline.confidences.size),
        "texts": None if baseline.texts is None else len(baseline.texts),
    }


def _label_shift(
    task: Task,
    records: list[PredictionRecord],
    baseline: Baseline,
    not_measured: dict[str, str],
) -> dict[str, Any] | None:
    if baseline.label_counts is None:
        not_measured["label_shift"] = (
            NO_BASELINE if not baseline.given else "the baseline gives no label distribution"
        )
        return None
    counts = dict.fromkeys(task.label_names, 0)
    for record in records:
        for label in answer_labels(record.answer):
            if label in counts:
                counts[label] += 1
    if not sum(counts.values()):
        not_measured["label_shift"] = "no prediction in the window has a label (all abstained)"
        return None
    found = drift.label_shift(task.label_names, baseline.label_counts, counts)
    return {"baseline_label_source": baseline.label_source, **found}


def _confidences(task: Task, records: list[PredictionRecord]) -> tuple[np.ndarray | None, str]:
    """Each prediction's confidence (abstentions keep theirs, unused) or None and why not."""
    if task.kind != "classify":
        why = (
            f"calibrated confidences of whole answers exist for classification only; this task "
            f"is `{task.kind}`"
        )
        return None, why
    missing = sum(1 for r in records if r.confidence is None and not r.abstained)
    if missing:
        return None, (
            f"{missing} of the {len(records)} logged answers have no confidence (the system "
            "gives no probabilities)"
        )
    values = np.array([0.0 if r.confidence is None else r.confidence for r in records])
    return values, ""


def _confidence_shift(
    confidences: np.ndarray | None,
    records: list[PredictionRecord],
    baseline: Baseline,
    why: str,
) -> dict[str, Any] | None:
    if confidences is None or baseline.confidences is None:
        return None
    answered = ~np.array([record.abstained for record in records])
    if not answered.any():
        return None
    return drift.confidence_shift(baseline.confidences, confidences[answered])


def _why_no_confidence_shift(why: str, baseline: Baseline) -> str:
    if why:
        return why
    if not baseline.given:
        return NO_BASELINE
    if baseline.confidences is None:
        return (
            "the baseline has no per-item confidences: pass the model's predictions on the test "
            "set (`stillhouse predict`) as --baseline"
        )
    return "no prediction in the window was answered (all abstained)"


def _text(
    task: Task,
    records: list[PredictionRecord],
    baseline: Baseline,
    not_measured: dict[str, str],
) -> dict[str, Any] | None:
    texts = [record.text for record in records if record.text is not None]
    if not texts:
        return None
    lengths = np.array([len(text) for text in texts], dtype=float)
    base_lengths = (
        None if baseline.texts is None else np.array([len(t) for t in baseline.texts], dtype=float)
    )
    language = drift.language_mix(texts, baseline.texts, task.languages)
    if language is None:
        not_measured["language"] = NO_LINGUA
    return {
        "texts": len(texts),
        "length": drift.length_shift(base_lengths, lengths),
        "language": language,
    }


def _alarms(document: dict[str, Any]) -> list[dict[str, str]]:
    """What moved, in sentences: a moderate or major label PSI that the chi-square test finds
    significant (p < 0.01), a significant (p < 0.01) confidence or length shift with a KS
    statistic ≥ 0.1, an estimated accuracy whose interval lies below the baseline's estimate, an
    abstention rate whose interval lies above the baseline's, 5 points more texts outside the
    task's languages."""
    alarms = []
    shift = document["label_shift"]
    # PSI grows with sampling noise alone ((k − 1)(1/n + 1/m): 0.2 for 77 labels and 500
    # answers): a moderate PSI raises the alarm only when the chi-square test, which accounts
    # for the sample sizes, says the difference is real
    chi = shift["chi_square"]["p_value"] if shift is not None else 1.0
    if shift is not None and shift["level"] != "none" and chi < drift.ALPHA:
        alarms.append(
            {
                "what": "label_shift",
                "sentence": (
                    f"The label distribution shifted: PSI {shift['psi']:.3f} ({shift['level']}; "
                    f"about {shift['expected_without_shift']:.3f} is sampling noise alone), "
                    f"chi-square p {_p(chi)}; most changed: {shift['top'][0]['label']} "
                    f"({shift['top'][0]['baseline_share']:.1%} → "
                    f"{shift['top'][0]['window_share']:.1%})."
                ),
            }
        )
    confidence = document["confidence_shift"]
    if confidence is not None:
        ks = confidence["ks"]
        if ks["p_value"] < drift.ALPHA and ks["statistic"] >= 0.1:
            alarms.append(
                {
                    "what": "confidence_shift",
                    "sentence": (
                        f"Confidences shifted: mean {confidence['baseline']['mean']:.3f} → "
                        f"{confidence['window']['mean']:.3f} (KS {ks['statistic']:.3f}, "
                        f"p {_p(ks['p_value'])})."
                    ),
                }
            )
    estimate, baseline = document["estimated_accuracy"], document["baseline"]
    if estimate is not None and baseline and baseline["estimated_accuracy"] is not None:
        before = baseline["estimated_accuracy"]
        if estimate["high"] < before:
            alarms.append(
                {
                    "what": "estimated_accuracy",
                    "sentence": (
                        f"Estimated accuracy dropped: {estimate['estimate']:.3f} (95% "
                        f"{estimate['low']:.3f}–{estimate['high']:.3f}) vs {before:.3f} "
                        "estimated the same way on the baseline."
                    ),
                }
            )
    abstention = document["abstention"]
    rate, before = abstention["rate"], abstention["baseline_rate"]
    if before is not None and rate["low"] > before:
        alarms.append(
            {
                "what": "abstention",
                "sentence": (
                    f"More abstentions: {rate['estimate']:.1%} (95% {rate['low']:.1%}–"
                    f"{rate['high']:.1%}) vs {before:.1%} on the baseline."
                ),
            }
        )
    text = document["text"]
    length = (text or {}).get("length", {})
    if (
        "ks" in length
        and length["ks"]["p_value"] < drift.ALPHA
        and length["ks"]["statistic"] >= 0.1
    ):
        alarms.append(
            {
                "what": "text_length",
                "sentence": (
                    f"Text lengths shifted: median {length['baseline']['quantiles']['0.5']:.0f} → "
                    f"{length['window']['quantiles']['0.5']:.0f} characters (KS "
                    f"{length['ks']['statistic']:.3f})."
                ),
            }
        )
    language = (text or {}).get("language") or {}
    if "baseline" in language:
        now, then = language["outside_task_languages"], language["baseline_outside_task_languages"]
        if now > then + 0.05:
            alarms.append(
                {
                    "what": "language",
                    "sentence": (
                        f"More texts outside the task's languages: {now:.1%} vs {then:.1%} on "
                        "the baseline."
                    ),
                }
            )
    return alarms


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
