"""`stillhouse init`: write a task.toml template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stillhouse.cli._common import app, clean_errors, out


@app.command()
@clean_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new task (created if needed).")],
) -> None:
    """Write DIRECTORY/task.toml: a commented template to edit."""
    from stillhouse.task import init_task

    path = init_task(directory)
    out.print(
        f"wrote {path}: edit the labels and instructions, then run `stillhouse annotate --task {path} --input DATA`."
    )
