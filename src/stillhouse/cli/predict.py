"""`stillhouse predict`: write a predictions file with a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stillhouse.cli._common import app, clean_errors, out, progress_reporter
from stillhouse.cli._engine import EngineOption, RayAddressOption, RayWorkersOption


@app.command()
@clean_errors
def predict(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model folder written by `stillhouse train`.")
    ],
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Texts: .jsonl, .json, .csv or .parquet.")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="Predictions file to write (.jsonl).")
    ],
    task: Annotated[
        Path | None,
        typer.Option(
            "--task", "-t", help="task.toml whose \\[input] fields to read (default text/id)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for ONNX Runtime.")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Drop invalid rows (counted) instead of stopping."),
    ] = False,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Write {id, label, probs} rows for every text ({id, labels, probs} for multilabel models,
    {id, spans} for span models): the predictions file evaluate reads."""
    from stillhouse.scale.engine import make_engine
    from stillhouse.task import load_task
    from stillhouse.train.predict import predict_file

    chosen = make_engine(engine, ray_address, ray_workers, threads)
    spec = load_task(task) if task is not None else None
    with progress_reporter("predicting") as progress:
        summary = predict_file(
            model,
            input,
            out_path,
            task=spec,
            threads=threads,
            skip_invalid=skip_invalid,
            progress=progress,
            engine=chosen if chosen.is_ray else None,
        )
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    out.print(f"wrote {summary.written} predictions to {summary.path} ({rate:.0f} texts/s)")
