"""report.html: one self-contained page from a results.json, readable offline on a laptop.

Inline CSS and inline SVG charts (:mod:`stillhouse.evaluate.charts`); no scripts, fonts or
stylesheets from anywhere else. Sections (each an ``<section id=...>``, always present, saying
"not measured" and why where results.json lacks the numbers): ``leaderboard``,
``comparisons``, ``calibration``, ``selective``, ``pareto``, ``slices``, ``robustness``,
``redteam``, ``efficiency``, ``confusion``, ``errors``, ``provenance``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from stillhouse.data.io import write_text
from stillhouse.evaluate.charts import (
    Bar,
    Point,
    Series,
    color,
    heat_map,
    interval_bars,
    line_chart,
    reliability_diagram,
    scatter_chart,
)
from stillhouse.evaluate.results import Results

REPORT_FILE_NAME = "report.html"
SECTIONS = (
    ("leaderboard", "Leaderboard"),
    ("comparisons", "Is the difference real?"),
    ("calibration", "Calibration"),
    ("selective", "Selective prediction"),
    ("pareto", "Accuracy vs latency"),
    ("slices", "Slices"),
    ("robustness", "Robustness and fairness"),
    ("redteam", "Red team: prompt injection"),
    ("efficiency", "Efficiency and reproducibility"),
    ("confusion", "Confusion matrices"),
    ("errors", "Most confident errors"),
    ("provenance", "Provenance"),
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
header{background:#23344d;color:#fff;padding:14px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}nav{padding:6px 28px;background:#e9edf3;font-size:13px}
nav a{margin-right:14px;color:#23344d}main{padding:0 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;margin:18px 0;padding:6px 18px 14px}
h2{font-size:18px;margin:12px 0 8px}h3{font-size:15px;margin:12px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e6e6e6;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ci{color:#777;font-size:12px}.muted{color:#777}.grid{display:flex;flex-wrap:wrap;gap:14px}
.grid figure{margin:0}figcaption{font-size:12px;color:#555;text-align:center}
svg{max-width:100%;height:auto}.swatch{display:inline-block;width:10px;height:10px;margin-right:5px}
td.text{max-width:560px}.sentence{margin:4px 0}
"""


def render_report(results: Results) -> str:
    """The whole page as one string."""
    names = list(results.systems)
    colors = {name: color(i) for i, name in enumerate(names)}
    builders: dict[str, Callable[[Results, dict[str, str]], str]] = {
        "leaderboard": _leaderboard,
        "comparisons": _comparisons,
        "calibration": _calibration,
        "selective": _selective,
        "pareto": _pareto,
        "slices": _slices,
        "robustness": _robustness,
        "redteam": _redteam,
        "efficiency": _efficiency,
        "confusion": _confusion,
        "errors": _errors,
        "provenance": _provenance,
    }
    sections = "".join(
        f'<section id="{key}"><h2>{escape(heading)}</h2>{builders[key](results, colors)}</section>'
        for key, heading in SECTIONS
    )
    nav = "".join(f'<a href="#{key}">{escape(heading)}</a>' for key, heading in SECTIONS)
    settings, data = results.settings, results.data
    subtitle = (
        f"{data['n_items']} test items from {data['path']} · {len(names)} system(s) · "
        f"every interval is 95%, percentile bootstrap over {settings['n_resamples']} shared "
        f"resamples (seed {settings['seed']})"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>stillhouse evaluate · {escape(results.task['name'])}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>evaluate · {escape(results.task['name'])}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{sections}</main></body></html>\n"
    )


def write_report(results: Results, path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` atomically; return the path."""
    path = Path(path)
    write_text(path, render_report(results))
    return path


# --- sections ---------------------------------------------------------------------------------


def _leaderboard(results: Results, colors: dict[str, str]) -> str:
    target = results.settings["target_precision"]
    header = (
        "system",
        "accuracy",
        "macro-F1",
        "weighted-F1",
        "ECE (10 equal-mass)",
        "AURC",
        f"coverage at precision {target:g}",
        "p95 latency (ms)",
        "robust worst case",
        "highest flip rate",
    )
    rows = []
    ranked = sorted(
        results.systems.items(), key=lambda item: -item[1]["metrics"]["accuracy"]["estimate"]
    )
    for name, system in ranked:
        metrics, calibration, selective = (
            system["metrics"],
            system.get("calibration"),
            system.get("selective"),
        )
        efficiency, robustness = system.get("efficiency"), system.get("robustness")
        worst = robustness.get("worst_case_accuracy") if robustness else None
        flips = robustness.get("max_flip_rate") if robustness else None
        rows.append(
            [
                _system_name(name, colors),
                _interval(metrics["accuracy"]),
                _interval(metrics["macro_f1"]),
                _interval(metrics["weighted_f1"]),
                _number(calibration["ece_10_equal_mass"]) if calibration else _dash(),
                _interval(selective["aurc"]) if selective else _dash(),
                _interval(selective["coverage_at_precision"]["coverage"]) if selective else _dash(),
                _number(efficiency["latency_ms"]["p95"], 1) if efficiency else _dash(),
                _interval(worst) if worst else _dash(),
                f"{_number(flips['value'])} <span class=ci>{escape(flips['perturbation'])}</span>"
                if flips
                else _dash(),
            ]
        )
    note = (
        "<p class=muted>Ranked by accuracy. ECE, AURC and coverage need per-label probabilities; "
        "latency needs a system that predicts in this process; robustness needs --perturb. "
        "A dash means not measured.</p>"
    )
    return _table(header, rows) + note + _cascades(results, colors) + _guards(results, colors)


def _guards(results: Results, colors: dict[str, str]) -> str:
    """Per system whose texts were screened for prompt injection ([guard]): how many were
    flagged, and kept from the LLM."""
    rows = [
        [
            _system_name(name, colors),
            escape(str(guard["injection"])),
            f"{guard['flagged']} of {guard['scanned']}",
            str(guard["kept_from_llm"]),
        ]
        for name, system in results.systems.items()
        if (guard := system.get("guard"))
    ]
    if not rows:
        return ""
    header = ("system", "[guard] injection", "flagged", "kept from the LLM")
    note = (
        "<p class=muted>Texts the prompt-injection detector flagged before an LLM saw them. "
        "Kept from the LLM (route, block): the system abstained on them or a non-LLM stage "
        "answered them.</p>"
    )
    return "<h3>Guard</h3>" + _table(header, rows, text_column=1) + note


def _cascades(results: Results, colors: dict[str, str]) -> str:
    """Per cascade: the share of items each stage answered and the share abstained on."""
    rows = []
    for name, system in results.systems.items():
        cascade = system.get("cascade")
        if not cascade:
            continue
        stages = "; ".join(
            f"{escape(stage['name'])} "
            + (f"(≥ {stage['threshold']:g}) " if stage["threshold"] is not None else "")
            + f"{stage['share']:.1%}"
            for stage in cascade["stages"]
        )
        abstention = system.get("abstention") or {}
        answered = abstention.get("accuracy_answered")
        rows.append(
            [
                _system_name(name, colors),
                stages,
                f"{cascade['abstained_share']:.1%}"
                + (
                    f" <span class=ci>below {cascade['abstain_below']:g}</span>"
                    if cascade["abstain_below"] is not None
                    else ""
                ),
                _number(answered) if answered is not None else _dash(),
            ]
        )
    if not rows:
        return ""
    header = ("cascade", "answered by each stage", "abstained", "accuracy on answered")
    note = (
        "<p class=muted>A text goes to the next stage when the stage's top probability is "
        "below its threshold. Abstentions count as errors in accuracy and F1 and are left out "
        "of calibration; coverage at precision stops at the share answered.</p>"
    )
    return "<h3>Cascades</h3>" + _table(header, rows, text_column=1) + note


def _comparisons(results: Results, colors: dict[str, str]) -> str:
    if not results.comparisons:
        return "<p class=muted>One system: nothing to compare.</p>"
    sentences = "".join(
        f"<p class=sentence>{escape(c['sentence'])}</p>" for c in results.comparisons
    )
    rows = [
        [
            escape(c["a"]),
            escape(c["b"]),
            f"{c['difference'] * 100:+.1f} points <span class=ci>[{c['low'] * 100:+.1f}, "
            f"{c['high'] * 100:+.1f}]</span>",
            _number(c["p_bootstrap"]),
            f"{c['mcnemar']['only_a']} / {c['mcnemar']['only_b']}",
            _number(c["mcnemar"]["p"]),
            _number(c["p_holm"]),
        ]
        for c in results.comparisons
    ]
    header = (
        "a",
        "b",
        "accuracy a − b (95% CI)",
        "p (paired bootstrap)",
        "only a / only b right",
        "p (McNemar exact)",
        "p (Holm)",
    )
    return sentences + _table(header, rows)


def _calibration(results: Results, colors: dict[str, str]) -> str:
    figures, rows = [], []
    for name, system in results.systems.items():
        calibration = system.get("calibration")
        if calibration is None:
            continue
        figures.append(
            _figure(
                reliability_diagram(
                    calibration["reliability_bins"],
                    title=f"Reliability diagram: {name}",
                    shade=colors[name],
                ),
                name,
            )
        )
        rows.append(
            [
                _system_name(name, colors),
                _number(calibration["ece_10_equal_mass"]),
                _number(calibration["ece_10_equal_width"]),
                _number(calibration["brier"]),
                _number(calibration["nll"]),
                _temperature(calibration.get("temperature_scaling")),
            ]
        )
    if not rows:
        return _not_measured("no system gave per-label probabilities")
    header = (
        "system",
        "ECE (10 equal-mass)",
        "ECE (10 equal-width)",
        "Brier",
        "NLL (nats)",
        "ECE before → after temperature scaling (held-out 70%)",
    )
    spans = any(
        (system.get("calibration") or {}).get("unit") == "predicted span"
        for system in results.systems.values()
    )
    return (
        _table(header, rows)
        + "<p class=muted>Bars: accuracy per confidence bin; dots: mean confidence in the bin; "
        "dashed: perfect calibration."
        + (
            " A span system's items are its predicted spans: confidence is the span's score, "
            "right when start, end and type match a gold span."
            if spans
            else ""
        )
        + "</p>"
        + f"<div class=grid>{''.join(figures)}</div>"
        + _missing(results, lambda s: s.get("calibration") is None, "no probabilities")
    )


def _selective(results: Results, colors: dict[str, str]) -> str:
    series, rows = [], []
    for name, system in results.systems.items():
        selective = system.get("selective")
        if selective is None:
            continue
        curve = selective["risk_coverage"]
        series.append(Series(name, curve["coverage"], curve["risk"], colors[name]))
        at = selective["coverage_at_precision"]
        threshold = at["threshold"]
        rows.append(
            [
                _system_name(name, colors),
                _interval(selective["aurc"]),
                _interval(selective["accuracy_at_top_10pct"]),
                _interval(at["coverage"]),
                _number(threshold, 4) if threshold is not None else "no threshold reaches it",
            ]
        )
    if not rows:
        return _not_measured("no system gave per-label probabilities")
    highest = max(max(s.ys) for s in series) if series else 1.0
    chart = line_chart(
        series,
        title="Risk–coverage curves",
        x_label="coverage (share of items answered, most confident first)",
        y_label="risk (error rate of answered items)",
        y_range=(0.0, max(0.05, min(1.0, highest * 1.1))),
    )
    target = results.settings["target_precision"]
    header = (
        "system",
        "AURC (lower is better)",
        "accuracy on the 10% most confident",
        f"coverage at precision {target:g}",
        "answer iff confidence ≥",
    )
    return (
        _table(header, rows)
        + f"<div class=grid>{_figure(chart, 'risk–coverage')}</div>"
        + _missing(results, lambda s: s.get("selective") is None, "no probabilities")
    )


def _pareto(results: Results, colors: dict[str, str]) -> str:
    points = []
    for name, system in results.systems.items():
        efficiency = system.get("efficiency")
        if efficiency is None or efficiency["latency_ms"]["p95"] <= 0:
            continue
        accuracy = system["metrics"]["accuracy"]
        points.append(
            Point(
                name,
                efficiency["latency_ms"]["p95"],
                accuracy["estimate"],
                accuracy["low"],
                accuracy["high"],
                colors[name],
            )
        )
    missing = _missing(results, lambda s: s.get("efficiency") is None, "latency not measured")
    if not points:
        return _not_measured("no system was timed (predictions files are not)") + missing
    chart = scatter_chart(
        points,
        title="Accuracy vs p95 latency",
        x_label="p95 latency at batch size 1 (ms, log scale)",
        y_label="accuracy",
    )
    return (
        f"<div class=grid>{_figure(chart, 'dashed: the Pareto front (nothing is both faster and more accurate)')}</div>"
        + missing
    )


def _slices(results: Results, colors: dict[str, str]) -> str:
    fields = list(results.settings.get("slices") or [])
    # a by-lang system's own slice: accuracy per language it routed on (only that system has it)
    fields += sorted(
        {field for system in results.systems.values() for field in system.get("slices", {})}
        - set(fields)
    )
    if not fields:
        return _not_measured("evaluate with --slice FIELD")
    parts = []
    for field in fields:
        parts.append(f"<h3>by {escape(field)}</h3>")
        figures, rows = [], []
        for name, system in results.systems.items():
            sliced = system.get("slices", {}).get(field)
            if sliced is None:
                continue
            bars = [
                Bar(
                    f"{value} (n={group['n']})",
                    group["accuracy"]["estimate"],
                    group["accuracy"]["low"],
                    group["accuracy"]["high"],
                    color=colors[name],
                )
                for value, group in sliced["groups"].items()
            ]
            figures.append(
                _figure(
                    interval_bars(bars, title=f"Accuracy by {field}: {name}", x_label="accuracy"),
                    name,
                )
            )
            gap = sliced.get("gap_interval")
            rows.append(
                [
                    _system_name(name, colors),
                    f"{escape(sliced['worst'])} ({_number(sliced['worst_accuracy'])})",
                    escape(sliced["best"]),
                    _interval(gap) if gap else _number(sliced["gap"]),
                ]
            )
        parts.append(_table(("system", "worst slice", "best slice", "gap best − worst"), rows))
        parts.append(f"<div class=grid>{''.join(figures)}</div>")
    return "".join(parts)


def _robustness(results: Results, colors: dict[str, str]) -> str:
    if not results.settings.get("perturbations"):
        return _not_measured("evaluate with --perturb, e.g. --perturb mild_mix,typos,gender,names")
    parts = []
    for name, system in results.systems.items():
        robustness = system.get("robustness")
        if robustness is None:
            reason = system.get("not_measured", {}).get("robustness", "not measured")
            parts.append(f"<h3>{escape(name)}</h3>{_not_measured(reason)}")
            continue
        accuracy = system["metrics"]["accuracy"]
        rows = [["(original texts)", "", "", _interval(accuracy), "", ""]]
        for perturbation, row in robustness["perturbations"].items():
            rows.append(
                [
                    escape(perturbation),
                    escape(row["family"]),
                    f"{row['changed']}",
                    _interval(row["accuracy"]),
                    f"{-row['accuracy_drop'] * 100:+.1f} points" if row["accuracy_drop"] else "0",
                    _interval(row["flip_rate"]),
                ]
            )
        for key, label in (
            ("worst_case_accuracy", "worst case (robustness)"),
            ("fairness_worst_case_accuracy", "worst case (fairness)"),
        ):
            worst = robustness.get(key)
            if worst:
                rows.append(
                    [
                        f"<b>{label}</b>",
                        escape(", ".join(worst["over"])),
                        "",
                        _interval(worst),
                        "",
                        "",
                    ]
                )
        header = ("perturbation", "family", "texts changed", "accuracy", "change", "flip rate")
        parts.append(f"<h3>{_system_name(name, colors)}</h3>" + _table(header, rows))
    return (
        "<p class=muted>Flip rate: share of all items whose predicted label changes when the "
        "text is perturbed. Worst case: an item counts as right only if right on the original "
        "and under every perturbation of the family (HELM).</p>" + "".join(parts)
    )


def _redteam(results: Results, colors: dict[str, str]) -> str:
    settings = results.settings.get("redteam")
    if not settings:
        return _not_measured("evaluate with --redteam N, e.g. --redteam 200")
    rows, guards, breakdowns = [], [], []
    for name, system in results.systems.items():
        redteam = system.get("redteam")
        if redteam is None:
            reason = system.get("not_measured", {}).get("redteam", "not measured")
            rows.append([_system_name(name, colors), _not_measured(reason), *[""] * 5])
            continue
        rows.append(
            [
                _system_name(name, colors),
                _interval(redteam["attack_success_rate"]),
                _interval(redteam["target_rate"]),
                _interval(redteam["flip_rate"]),
                _interval(redteam["clean_accuracy"]),
                _interval(redteam["accuracy_under_attack"]),
                _interval(redteam["abstention_rate"]),
            ]
        )
        guard = redteam.get("guard")
        if guard is not None:
            guards.append(
                [
                    _system_name(name, colors),
                    _interval(guard["recall"]),
                    f"{guard['flagged_attacked']} / {redteam['attacks']}",
                    _interval(guard["false_positive_rate"]),
                    f"{guard['flagged_clean']} / {guard['clean_texts']}",
                ]
            )
        cells = [
            f"{escape(group)}: {row['attack_success_rate']:.0%} of {row['n']}"
            for group, row in {**redteam["by_family"], **redteam["by_position"]}.items()
        ]
        breakdowns.append(
            f"<p class=sentence>{_system_name(name, colors)} · " + "; ".join(cells) + "</p>"
        )
    header = (
        "system",
        "attack success",
        "target rate",
        "flip rate",
        "clean accuracy",
        "accuracy under attack",
        "abstained under attack",
    )
    families = ", ".join(settings.get("families", []))
    parts = [
        f"<p class=muted>{settings['attacked']} test texts attacked once each (seed "
        f"{results.settings['seed']}), with attack families the injection detector never "
        f"trained on ({escape(families)}) and BIPIA's test-split instructions, at the start, "
        "middle or end of the text; every attack names a target label other than the gold one. "
        "Attack success: the answer became the target (the target under attack, not on the "
        "clean text). Target rate: answered with the target at all, the system's own errors "
        "included. Flip rate: answer differs from the one on the clean text. Clean accuracy is on the same texts without the attack. Intervals: "
        "bootstrap over the attacked texts.</p>",
        _table(header, rows),
    ]
    if guards:
        guard_header = (
            "system",
            "guard recall (attacked)",
            "flagged",
            "false positives (clean)",
            "flagged",
        )
        parts.append("<h3>Injection guard</h3>" + _table(guard_header, guards))
    if breakdowns:
        parts.append("<h3>Attack success by family and position</h3>" + "".join(breakdowns))
    return "".join(parts)


def _efficiency(results: Results, colors: dict[str, str]) -> str:
    rows = []
    for name, system in results.systems.items():
        efficiency, repeated = system.get("efficiency"), system.get("reproducibility")
        if efficiency is None:
            continue
        latency, throughput = efficiency["latency_ms"], efficiency["throughput"]
        tokens = efficiency.get("tokens_per_item")
        rows.append(
            [
                _system_name(name, colors),
                str(efficiency["sample"]),
                " / ".join(_number(latency[k], 2) for k in ("p50", "p95", "p99")),
                f"{_number(throughput['items_per_second'], 1)} at batch {throughput['best_batch_size']}"
                if throughput["items_per_second"]
                else _dash(),
                _bytes(efficiency["peak_memory_bytes"]),
                _bytes(efficiency["size_bytes"]),
                f"{efficiency['parameters']:,}"
                if efficiency["parameters"] is not None
                else _dash(),
                _tokens(tokens) if tokens else _dash(),
                _reproduced(repeated),
            ]
        )
    missing = _missing(results, lambda s: s.get("efficiency") is None, "not timed")
    if not rows:
        return _not_measured("no system was timed") + missing
    header = (
        "system",
        "texts timed",
        "latency p50 / p95 / p99 (ms)",
        "throughput (items/s)",
        "peak memory (RSS)",
        "size on disk",
        "parameters",
        "tokens in (new) / out / decoded",
        "same answer twice",
    )
    return _table(header, rows) + missing


def _confusion(results: Results, colors: dict[str, str]) -> str:
    labels = results.task["labels"]
    if results.task.get("kind", "classify") != "classify":
        return _not_measured("confusion matrices are for classification tasks")
    figures = [
        _figure(
            heat_map(system["confusion_matrix"], labels, title=f"Confusion matrix: {name}"), name
        )
        for name, system in results.systems.items()
    ]
    key = ""
    if len(labels) > 25:
        key = (
            "<p class=muted>Labels by number: "
            + ", ".join(f"{i + 1} {escape(label)}" for i, label in enumerate(labels))
            + "</p>"
        )
    return (
        "<p class=muted>Rows: gold label; columns: predicted. Green: right; red: wrong; the "
        "darker, the larger the share of the gold row. Hover a cell for its count.</p>"
        + f"<div class=grid>{''.join(figures)}</div>"
        + key
    )


def _errors(results: Results, colors: dict[str, str]) -> str:
    parts = []
    for name, system in results.systems.items():
        errors = system.get("most_confident_errors") or []
        parts.append(f"<h3>{_system_name(name, colors)}</h3>")
        if not errors:
            parts.append("<p class=muted>No errors.</p>")
            continue
        rows = [
            [
                escape(error["id"]),
                f"<span class=text>{escape(error['text'])}</span>",
                escape(_answer(error["gold"])),
                escape(_answer(error["predicted"])),
                _number(error["confidence"]) if error["confidence"] is not None else _dash(),
            ]
            for error in errors
        ]
        parts.append(_table(("id", "text", "gold", "predicted", "confidence"), rows, text_column=1))
    return "".join(parts)


def _provenance(results: Results, colors: dict[str, str]) -> str:
    versions = results.provenance.get("package_versions", {})
    hashes = results.provenance.get("model_hashes", {})
    rows = [
        [
            "task",
            f"{escape(results.task['name'])} <span class=ci>sha256 {escape(str(results.task.get('fingerprint')))}</span>",
        ],
        [
            "test data",
            f"{escape(results.data['path'])} <span class=ci>sha256 {escape(str(results.data.get('fingerprint')))}</span>",
        ],
        ["created", escape(str(results.provenance.get("created_at", "")))],
        ["seed", str(results.settings["seed"])],
        *[[f"model {escape(name)}", escape(str(value))] for name, value in hashes.items()],
        ["packages", escape(", ".join(f"{k} {v}" for k, v in versions.items()))],
    ]
    return _table(("", ""), rows)


# --- small pieces -----------------------------------------------------------------------------


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, text_column: int | None = None
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"text" if i == text_column else ("" if i == 0 else "n")}">{cell}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _tokens(tokens: dict[str, float | None]) -> str:
    """``in (new) / out / decoded`` tokens per item; – for a count not reported."""

    def count(key: str) -> str:
        value = tokens.get(key)
        return _number(value, 1) if value is not None else "–"

    return f"{count('in')} ({count('in_new')}) / {count('out')} / {count('decoded')}"


def _interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.3f} <span class=ci>[{value['low']:.3f}–{value['high']:.3f}]</span>"


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return _dash()
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _bytes(value: int | None) -> str:
    if value is None:
        return _dash()
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return _dash()


def _reproduced(repeated: dict[str, Any] | None) -> str:
    if repeated is None or repeated["identical_answers"] is None:
        return _dash()
    text = f"{repeated['identical_answers']:.0%} answers"
    if repeated["identical_probabilities"] is not None:
        text += f", {repeated['identical_probabilities']:.0%} probabilities (±1e-6)"
    return text


def _temperature(scaling: dict[str, Any] | None) -> str:
    if not scaling:
        return "<span class=muted>too few items</span>"
    return (
        f"{_number(scaling['ece_before'])} → {_number(scaling['ece_after'])} "
        f"<span class=ci>T = {scaling['temperature']:.2f}, fitted on {scaling['calibration_items']}</span>"
    )


def _answer(answer: Any) -> str:
    """A label, a list of labels, or spans as ``label "text"`` (``label start–end`` without text)."""
    if isinstance(answer, str):
        return answer
    if answer and isinstance(answer[0], dict):
        return "; ".join(
            f'{span["label"]} "{span["text"]}"'
            if span.get("text")
            else f"{span['label']} {span['start']}–{span['end']}"
            for span in answer
        )
    return ", ".join(answer) if answer else "(none)"


def _system_name(name: str, colors: dict[str, str]) -> str:
    return f'<span class=swatch style="background:{colors[name]}"></span>{escape(name)}'


def _dash() -> str:
    return "<span class=muted>–</span>"


def _not_measured(reason: str) -> str:
    return f"<p class=muted>Not measured: {escape(reason)}.</p>"


def _missing(results: Results, lacks: Callable[[dict[str, Any]], bool], default: str) -> str:
    """A line naming the systems a section leaves out, with the reason results.json gives."""
    left_out = []
    for name, system in results.systems.items():
        if lacks(system):
            reasons = system.get("not_measured") or {}
            reason = (
                reasons.get("efficiency") if "latency" in default or "timed" in default else None
            )
            left_out.append(f"{name} ({reason or default})")
    if not left_out:
        return ""
    return f"<p class=muted>Not shown: {escape('; '.join(left_out))}.</p>"
