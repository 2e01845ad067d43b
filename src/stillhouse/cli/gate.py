"""`stillhouse gate`: check results.json against the task's [gate] rules."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import TaskOption, app, clean_errors, out


@app.command()
@clean_errors
def gate(
    task: TaskOption,
    results: Annotated[
        Path, typer.Option("--results", "-r", help="results.json written by `stillhouse evaluate`.")
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(help="A previous results.json, for the no_significant_regression rule."),
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="The system to gate (default: the first in results.json).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the verdict as JSON (same exit codes).")
    ] = False,
) -> None:
    """Check task.toml \\[gate] against results.json: exit 0 when every rule passes, 1 otherwise."""
    from stillhouse.evaluate.results import read_results
    from stillhouse.gate import gate as run_gate
    from stillhouse.task import load_task

    report = run_gate(
        load_task(task),
        read_results(results),
        read_results(baseline) if baseline is not None else None,
        system,
    )
    if as_json:
        rows = [asdict(row) for row in report.rows]
        document = {"system": report.system, "passed": report.passed, "rules": rows}
        out.print_json(json.dumps(document, ensure_ascii=False))
        if not report.passed:
            raise typer.Exit(1)
        return
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    table = Table(title=f"gate · {escape(report.system)} · {verdict}", title_justify="left")
    for column in ("rule", "measured", "threshold", "verdict", "reason"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(
            row.rule,
            "-" if row.measured is None else f"{row.measured:.3f}",
            escape(row.condition),
            "[green]pass[/]" if row.passed else "[red]fail[/]",
            escape(row.reason),
        )
    out.print(table)
    if not report.passed:
        raise typer.Exit(1)
