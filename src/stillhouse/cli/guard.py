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
            "--task",
            "-t",
            help="task.toml whose \\[input] fields to read (default text/id) and whose \\[guard] "
            "detector to use.",
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help="linear (n-grams, the default) | encoder-ngrams (n-grams beside a sentence "
            "encoder: catches more, a few ms a text). Default: the task's \\[guard] detector."
        ),
    ] = None,
) -> None:
    """Write {id, injection, score} rows: whether each text carries instructions aimed at the
    model (prompt injection), by a detector shipped with stillhouse; score is its calibrated
    probability."""
    from stillhouse.guard.injection import (
        DEFAULT_DETECTOR,
        check_detector,
        scan_file,
        shipped_detector,
    )
    from stillhouse.task import load_task

    if detector is not None:
        check_detector(detector, "--detector")
    spec = load_task(task) if task is not None else None
    name = detector or (spec.guard.detector if spec is not None else DEFAULT_DETECTOR)
    chosen = shipped_detector(name)
    summary = scan_file(input, out_path, threshold=threshold, task=spec, detector=chosen)
    out.print(
        f"wrote {summary.written} rows to {summary.path}: {summary.flagged} flagged as injection "
        f"(detector {name}, threshold {summary.threshold:.4f})"
    )
