"""`stillhouse export`: write the store's labels to JSONL."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from stillhouse.cli._common import TaskOption, app, clean_errors, out


@app.command()
@clean_errors
def export(
    task: TaskOption,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL file to write (Prodigy-style records).")
    ],
    annotator: Annotated[
        str,
        typer.Option(help="best (gold > human > llm) | gold | human | llm | a full annotator id."),
    ] = "best",
    include_unlabelled: Annotated[
        bool, typer.Option("--include-unlabelled", help="Also write examples without an answer.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write the store's labels to JSONL, one answer per example chosen by --annotator."""
    from stillhouse.export import export as run_export
    from stillhouse.task import load_task

    summary = run_export(load_task(task), out_path, annotator, include_unlabelled)
    if as_json:
        out.print_json(json.dumps(asdict(summary)))
        return
    sources = ", ".join(f"{source} {count}" for source, count in summary.by_source.items())
    out.print(
        f"wrote {summary.written} records to {summary.path} ({sources}); {summary.without_answer} examples had no answer."
    )
