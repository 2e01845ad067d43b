"""`stillhouse monitor`: the served system's prediction log against a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import TaskOption, app, clean_errors, out


@app.command()
@clean_errors
def monitor(
    task: TaskOption,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for monitor.json and monitor.html.")
    ],
    since: Annotated[
        str | None,
        typer.Option(help="First time to read, e.g. 2026-12-01 or 2026-12-01T08:00 (UTC)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Read predictions before this time (same forms).")
    ] = None,
    system: Annotated[
        str | None,
        typer.Option(help="The served system to monitor (needed when several logged)."),
    ] = None,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(
            help="Repeatable: the test set (labels), the model's predictions on it (from "
            "`stillhouse predict`: confidences) and/or a results.json."
        ),
    ] = None,
    first_stage: Annotated[
        str | None,
        typer.Option(help="A cascade's first stage (default: the one with the lowest latency)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print monitor.json to stdout.")] = False,
) -> None:
    """Drift, abstention and estimated accuracy of logged predictions: OUT/monitor.json and
    OUT/monitor.html; exit 0 (the gate decides), 2 on bad input."""
    from stillhouse.monitor.run import check_monitor_outputs, run_monitor, write_monitor_outputs
    from stillhouse.task import load_task

    spec = load_task(task)
    baselines = baseline or []
    check_monitor_outputs(spec, baselines, out_dir)
    document = run_monitor(
        spec,
        since=since,
        until=until,
        system=system,
        baselines=baselines,
        first_stage=first_stage,
    )
    json_path, html_path = write_monitor_outputs(document, out_dir)
    if as_json:
        out.print_json(json.dumps(document, ensure_ascii=False))
        return
    print_monitor_summary(document)
    out.print(f"wrote {json_path} and {html_path}")


def print_monitor_summary(document: dict[str, Any]) -> None:
    window = document["window"]
    table = Table(
        title=(
            f"monitor · {escape(document['task']['name'])} · {escape(window['system'])} · "
            f"{window['predictions']} predictions {window['first']} – {window['last']}"
        ),
        title_justify="left",
    )
    for column in ("measure", "window", "baseline / note"):
        table.add_column(column, overflow="fold")
    missing = document["not_measured"]

    def absent(section: str) -> str:
        return f"[dim]not measured: {escape(missing.get(section, ''))}[/]"

    shift = document["label_shift"]
    table.add_row(
        "label PSI",
        f"{shift['psi']:.3f} ({shift['level']})" if shift else absent("label_shift"),
        f"chi-square p {shift['chi_square']['p_value']:.3g}" if shift else "",
    )
    estimate, baseline = document["estimated_accuracy"], document["baseline"] or {}
    known = [
        f"{name} {baseline[key]:.3f}"
        for name, key in (("true", "accuracy"), ("estimated", "estimated_accuracy"))
        if baseline.get(key) is not None
    ]
    table.add_row(
        "estimated accuracy",
        _interval(estimate) if estimate else absent("estimated_accuracy"),
        ("baseline " + ", ".join(known)) if known else "",
    )
    confidence = document["confidence_shift"]
    table.add_row(
        "confidence KS",
        f"{confidence['ks']['statistic']:.3f}" if confidence else absent("confidence_shift"),
        f"p {confidence['ks']['p_value']:.3g}" if confidence else "",
    )
    abstention = document["abstention"]
    before = abstention["baseline_rate"]
    table.add_row(
        "abstention rate",
        _interval(abstention["rate"]),
        f"baseline {before:.3f}" if before is not None else "",
    )
    fallback = document["fallback"]
    table.add_row(
        "fallback rate",
        _interval(fallback["rate"]) if fallback else absent("fallback"),
        f"first stage {escape(fallback['first_stage'])}" if fallback else "",
    )
    latency = document["latency_ms"]
    table.add_row("latency p95", f"{latency['p95']:.2f} ms", f"p50 {latency['p50']:.2f} ms")
    out.print(table)
    for alarm in document["alarms"]:
        out.print(f"[yellow]alarm:[/] {escape(alarm['sentence'])}", highlight=False)
    if "text" in missing:
        out.print(f"[dim]text length and language: {escape(missing['text'])}[/]")


def _interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.3f} ({value['low']:.3f}–{value['high']:.3f})"
