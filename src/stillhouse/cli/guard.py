"""`stillhouse guard`: checks on texts before they reach an LLM (`guard scan`: prompt injection)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stillhouse.cli._common import app, clean_errors, out

guard_app = typer.Typer(
    help="Check texts before they reach an LLM: prompt-injection scan.",
    no_args_is_help=True,
)
app.add_typer(guard_app, name="guard")


@guard_app.command()
@clean_errors
def scan(
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Texts: .jsonl, .json, .csv or .parquet.")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Flags file to write (.jsonl).")],
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Flag a text when its score is at least this (default: the shipped threshold, "
            "chosen for ≤ 1% false positives on held-out task texts)."
        ),
    ] = None,
    task: Annotated[
        Path | None,
        typer.Option(
            "--task", "-t", help="task.toml whose \\[input] fields to read (default text/id)."
        ),
    ] = None,
) -> None:
    """Write {id, injection, score} rows: whether each text carries instructions aimed at the
    model (prompt injection), by the detector shipped with stillhouse; score is its calibrated
    probability."""
    from stillhouse.guard.injection import scan_file
    from stillhouse.task import load_task

    spec = load_task(task) if task is not None else None
    summary = scan_file(input, out_path, threshold=threshold, task=spec)
    out.print(
        f"wrote {summary.written} rows to {summary.path}: {summary.flagged} flagged as injection "
        f"(threshold {summary.threshold:.4f})"
    )
