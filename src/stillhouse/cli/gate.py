"""`stillhouse gate`: check results.json against the task's [gate] rules."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import TaskOption, app, clean_errors, out


@app.command()
@clean_errors
def gate(
    task: TaskOption,
    results: Annotated[
        Path | None,
        typer.Option("--results", "-r", help="results.json written by `stillhouse evaluate`."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="A previous results.json, for the no_significant_regression rule."),
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="The system to gate (default: the first in results.json).")
    ] = None,
    monitor: Annotated[
        Path | None,
        typer.Option(help="monitor.json written by `stillhouse monitor`, for the monitor rules."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the verdict as JSON (same exit codes).")
    ] = False,
) -> None:
    """Check task.toml \\[gate] against results.json and/or monitor.json: exit 0 when every rule
    passes, 1 otherwise."""
    from stillhouse.evaluate.results import read_results
    from stillhouse.gate import gate as run_gate
    from stillhouse.monitor.report import read_monitor
    from stillhouse.task import load_task

    report = run_gate(
        load_task(task),
        read_results(results) if results is not None else None,
        read_results(baseline) if baseline is not None else None,
        system,
        monitor=read_monitor(monitor) if monitor is not None else None,
    )
    if as_json:
        rows = [asdict(row) for row in report.rows]
        document: dict[str, Any] = {"system": report.system, "passed": report.passed, "rules": rows}
        if report.not_checked:
            document["not_checked"] = list(report.not_checked)
        out.print_json(json.dumps(document, ensure_ascii=False))
        if not report.passed:
            raise typer.Exit(1)
        return
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    table = Table(title=f"gate · {escape(report.system)} · {verdict}", title_justify="left")
    for column in ("rule", "measured", "threshold", "verdict"):
        table.add_column(column, no_wrap=True)  # a narrow terminal wraps the reason, not these
    table.add_column("reason")
    for row in report.rows:
        table.add_row(
            row.rule,
            "-" if row.measured is None else f"{row.measured:.3f}",
            escape(row.condition),
            "[green]pass[/]" if row.passed else "[red]fail[/]",
            escape(row.reason),
        )
    out.print(table)
    if report.not_checked:
        needs = (
            "monitor.json: pass --monitor"
            if results is not None
            else "results.json: pass --results"
        )
        out.print(f"not checked: {', '.join(report.not_checked)} (they read {needs})")
    if not report.passed:
        raise typer.Exit(1)
