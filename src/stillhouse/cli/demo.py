"""`stillhouse demo`: the flow on bundled real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stillhouse.cli._common import INTERRUPTED_RESUMABLE, app, clean_errors, out, progress_reporter
from stillhouse.cli.annotate import print_annotate_summary


@app.command()
@clean_errors(interrupted=INTERRUPTED_RESUMABLE)
def demo(
    workspace: Annotated[
        Path, typer.Option(help="Where the demo task and its store are written.")
    ] = Path("demo-workspace"),
    limit: Annotated[int, typer.Option(min=1, help="How many test texts the LLM labels.")] = 120,
    model: Annotated[str, typer.Option(help="Model for the demo.")] = "qwen2.5-0.5b",
) -> None:
    """Run the flow on bundled real data (NusaX sentiment, English) with the embedded LLM."""
    from stillhouse.demo import run_demo

    out.rule(f"stillhouse demo · NusaX sentiment (English) · {model}")
    out.print(
        f"The embedded LLM labels {limit} real test texts by scoring every label (no parsing, "
        f"no invalid outputs); answers are cached in {workspace}/stillhouse.db and a rerun resumes."
    )
    result = run_demo(workspace, limit=limit, model=model, progress=progress_reporter)
    table = Table(title="a few LLM labels with their probabilities", title_justify="left")
    table.add_column("text", max_width=60)
    table.add_column("gold")
    table.add_column("LLM: label probabilities")
    for text, gold, probs in result.samples:
        ranked = sorted(probs.items(), key=lambda item: -item[1])
        table.add_row(text[:120], gold, "  ".join(f"{label} {p:.2f}" for label, p in ranked))
    out.print(table)
    print_annotate_summary(result.summary)
    out.print(
        f"Next: `stillhouse export --task {result.task_path} --out labels.jsonl` writes the "
        "labels as JSONL."
    )
