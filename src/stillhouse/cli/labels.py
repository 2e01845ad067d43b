"""`stillhouse labels`: work on a task's labels (`labels describe`: LLM-proposed descriptions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stillhouse.cli._common import TaskOption, app, clean_errors, out, progress_reporter

labels_app = typer.Typer(
    help="Work on a task's labels: propose descriptions from seed examples.",
    no_args_is_help=True,
)
app.add_typer(labels_app, name="labels")


@labels_app.command()
@clean_errors
def describe(
    task: TaskOption,
    data: Annotated[
        Path,
        typer.Option("--data", "-d", help="Labelled seed texts: .jsonl, .json, .csv or .parquet."),
    ],
    per_label: Annotated[
        int, typer.Option(help="Seed texts shown to the LLM per label (1-50).")
    ] = 5,
    model: Annotated[
        str | None,
        typer.Option(help="LLM to ask (default: task.toml \\[llm].model)."),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the proposed \\[labels] table here (TOML)."),
    ] = None,
    write: Annotated[
        bool,
        typer.Option("--write", help="Also replace the descriptions in task.toml."),
    ] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for llama.cpp (default: all cores).")
    ] = None,
) -> None:
    """Propose a one-line description per label from its seed texts (the LLM reads the first
    few of each), for you to edit; task.toml is left as it is unless --write. Label shortlists
    rank labels by these descriptions."""
    from stillhouse.llm.describe import proposals_toml, propose_descriptions, write_descriptions
    from stillhouse.output_guard import Input, Output, check_outputs
    from stillhouse.task import load_task

    spec = load_task(task)
    if out_path is not None:
        inputs = [Input("the task file", spec.path), Input("--data", data)] if spec.path else []
        check_outputs([Output("--out", out_path)], inputs)
    with progress_reporter("describing labels") as progress:
        proposals = propose_descriptions(
            spec, data, model=model, per_label=per_label, threads=threads, progress=progress
        )
    text = proposals_toml(proposals)
    if out_path is not None:
        out_path.write_text(text, encoding="utf-8")
        out.print(f"wrote {len(proposals)} label descriptions to {out_path}")
    else:
        out.print(text, markup=False, highlight=False, end="")
    if write and spec.path is not None:
        changed = write_descriptions(spec.path, proposals)
        out.print(f"{spec.path}: {changed} description(s) replaced")
