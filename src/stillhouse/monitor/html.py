"""monitor.html: one self-contained page from a monitor.json document, readable offline.

Inline CSS and inline SVG charts (the line charts of :mod:`stillhouse.evaluate.charts`, and
paired bars drawn here), no scripts, nothing fetched. Sections (each ``<section id=...>``,
always present, saying "not measured" and why where the document has no numbers):
``summary``, ``labels``, ``confidence``, ``time``, ``text``, ``sources``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any

from stillhouse.data.io import write_text
from stillhouse.evaluate.charts import PALETTE, Series, line_chart

HTML_FILE_NAME = "monitor.html"
SECTIONS = (
    ("summary", "Summary"),
    ("labels", "Label shift"),
    ("confidence", "Confidence and estimated accuracy"),
    ("time", "Over time"),
    ("text", "Text length and language"),
    ("sources", "Window and baseline"),
)
_BASELINE, _WINDOW = "#999999", PALETTE[0]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
header{background:#23344d;color:#fff;padding:14px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}nav{padding:6px 28px;background:#e9edf3;font-size:13px}
nav a{margin-right:14px;color:#23344d}main{padding:0 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;margin:18px 0;padding:6px 18px 14px}
h2{font-size:18px;margin:12px 0 8px}table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e6e6e6;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#777}.grid{display:flex;flex-wrap:wrap;gap:14px}.grid figure{margin:0}
figcaption{font-size:12px;color:#555;text-align:center}svg{max-width:100%;height:auto}
.alarm{background:#fdecea;border-left:5px solid #d23c3c;padding:6px 10px;margin:6px 0}
.calm{background:#eaf6ec;border-left:5px solid #2e9d4a;padding:6px 10px;margin:6px 0}
"""


def render_html(document: dict[str, Any]) -> str:
    """The whole page as one string."""
    builders = {
        "summary": _summary,
        "labels": _labels,
        "confidence": _confidence,
        "time": _time,
        "text": _text,
        "sources": _sources,
    }
    sections = "".join(
        f'<section id="{key}"><h2>{escape(title)}</h2>{builders[key](document)}</section>'
        for key, title in SECTIONS
    )
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS)
    window, task = document["window"], document["task"]
    subtitle = (
        f"system {window['system']} · {window['predictions']} predictions from "
        f"{window['first']} to {window['last']} · store {window['store']}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>stillhouse monitor · {escape(task['name'])}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>monitor · {escape(task['name'])}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{sections}</main></body></html>\n"
    )


def write_html(document: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`render_html` to ``path`` atomically; return the path."""
    path = Path(path)
    write_text(path, render_html(document))
    return path


# --- sections ---------------------------------------------------------------------------------


def _summary(document: dict[str, Any]) -> str:
    alarms = document["alarms"]
    parts = [f'<p class="alarm">{escape(alarm["sentence"])}</p>' for alarm in alarms]
    if not alarms:
        parts.append('<p class="calm">Nothing moved beyond what the baseline allows.</p>')
    shift, estimate = document["label_shift"], document["estimated_accuracy"]
    confidence, abstention = document["confidence_shift"], document["abstention"]
    fallback, baseline = document["fallback"], document["baseline"] or {}
    rows = [
        (
            "label PSI",
            _or_missing(shift and f"{shift['psi']:.3f} ({shift['level']})"),
            escape(f"chi-square p {shift['chi_square']['p_value']:.3g}") if shift else "",
        ),
        (
            "estimated accuracy",
            _or_missing(estimate and _interval(estimate)),
            escape(_baseline_accuracy(baseline)),
        ),
        (
            "confidence shift (KS)",
            _or_missing(confidence and f"{confidence['ks']['statistic']:.3f}"),
            escape(f"p {confidence['ks']['p_value']:.3g}") if confidence else "",
        ),
        (
            "abstention rate",
            _interval(abstention["rate"]),
            escape(_number_or_dash(abstention["baseline_rate"], "baseline ")),
        ),
        (
            "fallback rate",
            _or_missing(fallback and _interval(fallback["rate"])),
            escape(f"first stage {fallback['first_stage']}") if fallback else "",
        ),
        (
            "p95 latency",
            f"{document['latency_ms']['p95']:.2f} ms",
            escape(f"p50 {document['latency_ms']['p50']:.2f} ms"),
        ),
    ]
    parts.append(_table(("measure", "window", "baseline / note"), rows))
    return "".join(parts)


def _labels(document: dict[str, Any]) -> str:
    shift = document["label_shift"]
    if shift is None:
        return _not_measured(document, "label_shift")
    top = shift["top"]
    note = (
        f"PSI {shift['psi']:.3f} over {len(shift['window_counts'])} labels (ε = "
        f"{shift['epsilon']:g} for empty shares; about {shift['expected_without_shift']:.3f} is "
        f"sampling noise alone); chi-square {shift['chi_square']['statistic']:.1f} on "
        f"{shift['chi_square']['dof']} degrees of freedom, p {shift['chi_square']['p_value']:.3g}; "
        f"{shift['window_answers']} answers in the window vs {shift['baseline_answers']} "
        f"{shift['baseline_label_source']} labels in the baseline."
    )
    rows = [
        (
            escape(item["label"]),
            f"{item['baseline_share']:.1%}",
            f"{item['window_share']:.1%}",
            f"{item['psi_term']:.4f}",
        )
        for item in top
    ]
    return (
        f"<p>{escape(note)}</p>"
        + _paired_bars(
            [(item["label"], item["baseline_share"], item["window_share"]) for item in top],
            title="label shares, the labels that moved most",
        )
        + _table(("label", "baseline", "window", "PSI term"), rows)
    )


def _confidence(document: dict[str, Any]) -> str:
    parts = []
    estimate = document["estimated_accuracy"]
    if estimate is None:
        parts.append(_not_measured(document, "estimated_accuracy"))
    else:
        parts.append(
            f"<p>Estimated accuracy {_interval(estimate)} over {estimate['n']} predictions "
            f"({estimate['answered']} answered; abstentions count as errors; "
            f"{escape(estimate['interval'])} interval). It is the mean calibrated confidence: as "
            "good as the calibration on this traffic, which a shift can spoil.</p>"
        )
    shift = document["confidence_shift"]
    if shift is None:
        parts.append(_not_measured(document, "confidence_shift"))
        return "".join(parts)
    edges = shift["histogram"]["edges"]
    centres = [(a + b) / 2 for a, b in pairwise(edges)]
    top = max(max(shift["histogram"]["window"]), max(shift["histogram"]["baseline"]), 0.01)
    chart = line_chart(
        [
            Series("baseline", centres, shift["histogram"]["baseline"], _BASELINE),
            Series("window", centres, shift["histogram"]["window"], _WINDOW),
        ],
        title="confidence of the answers",
        x_label="confidence",
        y_label="share of answers",
        y_range=(0.0, round(top * 1.1, 3)),
    )
    ks = shift["ks"]
    caption = f"KS {ks['statistic']:.3f}, p {ks['p_value']:.3g}"
    parts.append(f'<div class="grid">{_figure(chart, caption)}</div>')
    return "".join(parts)


def _time(document: dict[str, Any]) -> str:
    over = document["over_time"]
    buckets = over["buckets"]
    if len(buckets) < 2:
        return "<p class=muted>One time bucket only: nothing to draw over time.</p>" + _time_table(
            over
        )
    hours = [(b["start"] - buckets[0]["start"]) / 3600 for b in buckets]
    span = (0.0, max(hours) or 1.0)
    lines = [Series("abstention", hours, [b["abstention_rate"] for b in buckets], PALETTE[1])]
    if buckets[0]["fallback_rate"] is not None:
        lines.append(Series("fallback", hours, [b["fallback_rate"] for b in buckets], PALETTE[4]))
    if buckets[0]["estimated_accuracy"] is not None:
        estimated = [b["estimated_accuracy"] for b in buckets]
        lines.append(Series("estimated accuracy", hours, estimated, PALETTE[2]))
    chart = line_chart(
        lines,
        title="rates over time",
        x_label=(
            f"hours since {datetime.fromtimestamp(buckets[0]['start'], UTC):%Y-%m-%d %H:%M} UTC "
            f"(buckets of {over['bucket_seconds']} s)"
        ),
        y_label="share",
        x_range=span,
    )
    return f'<div class="grid">{_figure(chart, "per time bucket")}</div>' + _time_table(over)


def _time_table(over: dict[str, Any]) -> str:
    rows = [
        (
            escape(datetime.fromtimestamp(b["start"], UTC).isoformat(timespec="minutes")),
            str(b["n"]),
            f"{b['abstention_rate']:.3f}",
            _number_or_dash(b["fallback_rate"]),
            _number_or_dash(b["estimated_accuracy"]),
            f"{b['p95_latency_ms']:.2f}",
        )
        for b in over["buckets"]
    ]
    header = ("bucket (UTC)", "n", "abstention", "fallback", "est. accuracy", "p95 ms")
    return _table(header, rows)


def _text(document: dict[str, Any]) -> str:
    text = document["text"]
    if text is None:
        return _not_measured(document, "text")
    length, language = text["length"], text["language"]
    rows = [("window", length["window"])]
    if "baseline" in length:
        rows.insert(0, ("baseline", length["baseline"]))
    table = _table(
        ("texts", "n", "mean", "median", "p95"),
        [
            (
                name,
                str(summary["n"]),
                f"{summary['mean']:.1f}",
                f"{summary['quantiles']['0.5']:.0f}",
                f"{summary['quantiles']['0.95']:.0f}",
            )
            for name, summary in rows
        ],
    )
    note = f"<p>{text['texts']} logged texts; lengths in characters"
    if "ks" in length:
        note += f"; KS {length['ks']['statistic']:.3f}, p {length['ks']['p_value']:.3g}"
    note += ".</p>"
    if language is None:
        return note + table + _not_measured(document, "language")
    codes = list(language["window"])[:12]
    baseline = language.get("baseline", {})
    languages = _table(
        ("language", "baseline", "window"),
        [
            (
                escape(code),
                f"{baseline[code]:.1%}" if code in baseline else "–",
                f"{language['window'][code]:.1%}",
            )
            for code in codes
        ],
    )
    outside = f"{language['outside_task_languages']:.1%} of the window outside the task's languages"
    if "psi" in language:
        outside += f"; PSI of the language mix {language['psi']:.3f}"
    return note + table + f"<p>{escape(outside)} (lingua).</p>" + languages


def _sources(document: dict[str, Any]) -> str:
    window = document["window"]
    rows = [
        ("store", escape(window["store"])),
        ("system", escape(window["system"])),
        ("asked", escape(f"since {window['since'] or '–'} until {window['until'] or '–'}")),
        ("predictions", escape(f"{window['predictions']} ({window['first']} to {window['last']})")),
        ("versions", escape(", ".join(f"{k}: {v}" for k, v in window["versions"].items()))),
        ("texts logged", str(window["texts_logged"])),
    ]
    baseline = document["baseline"]
    if baseline is None:
        rows.append(("baseline", "<span class=muted>none given</span>"))
    else:
        for source in baseline["sources"]:
            rows.append(
                (
                    f"baseline ({escape(source['kind'])})",
                    escape(
                        f"{source['path']}: {source['items']} items, sha256 {source['sha256'][:12]}…"
                    ),
                )
            )
        rows.append(("baseline accuracy", escape(_baseline_accuracy(baseline))))
    missing = document["not_measured"]
    for section, why in missing.items():
        rows.append((f"not measured: {escape(section)}", escape(why)))
    return _table(("", ""), rows)


# --- small pieces -----------------------------------------------------------------------------


def _paired_bars(items: Sequence[tuple[str, float, float]], *, title: str) -> str:
    """Two horizontal bars per label (baseline grey, window blue), shares on a common scale."""
    left, width, row = 170, 560, 26
    height = 30 + row * len(items)
    top = max([max(b, w) for _, b, w in items] + [0.01])
    scale = (width - left - 20) / top
    body = []
    for i, (label, base, window) in enumerate(items):
        y = 10 + row * i
        tip = f"{label}: baseline {base:.1%}, window {window:.1%}"
        body.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="11" fill="#333">'
            f"{escape(label[:26])}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{base * scale:.1f}" height="9" fill="{_BASELINE}">'
            f"<title>{escape(tip)}</title></rect>"
            f'<rect x="{left}" y="{y + 12}" width="{window * scale:.1f}" height="9" fill="{_WINDOW}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    body.append(
        f'<text x="{left}" y="{height - 4}" font-size="11" fill="#333">grey: baseline, blue: '
        f"window (longest bar {top:.1%})</text>"
    )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"" if i == 0 else "n"}">{cell}</td>' for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _interval(value: dict[str, float]) -> str:
    return (
        f"{value['estimate']:.3f} <span class=muted>[{value['low']:.3f}–{value['high']:.3f}]</span>"
    )


def _number_or_dash(value: float | None, prefix: str = "") -> str:
    return "–" if value is None else f"{prefix}{value:.3f}"


def _baseline_accuracy(baseline: dict[str, Any]) -> str:
    if not baseline:
        return "no baseline"
    parts = []
    if baseline.get("accuracy") is not None:
        parts.append(f"true {baseline['accuracy']:.3f}")
    if baseline.get("estimated_accuracy") is not None:
        parts.append(f"estimated {baseline['estimated_accuracy']:.3f}")
    return "baseline " + ", ".join(parts) if parts else "baseline: not known"


def _or_missing(value: str | None) -> str:
    if value:
        return value
    return "<span class=muted>not measured</span>"


def _not_measured(document: dict[str, Any], section: str) -> str:
    why = document["not_measured"].get(section, "")
    return f"<p class=muted>Not measured: {escape(why)}.</p>"
