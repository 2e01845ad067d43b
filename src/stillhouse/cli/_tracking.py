"""The --track and --register options the tracked commands share, and the line they print."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from stillhouse.cli._common import err

TrackOption = Annotated[
    str | None,
    typer.Option(
        "--track",
        metavar="URI",
        help="Log this run to MLflow at URI (e.g. sqlite:///mlflow.db; default: task.toml "
        "\\[tracking] uri, else off).",
    ),
]
RegisterOption = Annotated[
    str | None,
    typer.Option(
        "--register",
        metavar="NAME",
        help="With tracking: register the model in MLflow's registry as NAME (default: "
        "task.toml \\[tracking] register).",
    ),
]


def say_logged(logged: dict[str, str], uri: str) -> None:
    """One line on stderr (stdout may be --json): where the run went, and the model's URIs."""
    line = f"logged MLflow run {logged['run_id']} to {uri}"
    if "model_uri" in logged:
        line += f"; pyfunc model {logged['model_uri']}"
    if "registered" in logged:
        line += f", registered as {logged['registered']}"
    err.print(escape(line), highlight=False, soft_wrap=True)
