"""What every command shares: the app, the consoles, the --task option, error and progress handling."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stillhouse.errors import StillhouseError

app = typer.Typer(
    help="stillhouse: take an NLP task from an LLM prototype to a production component.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

TaskOption = Annotated[
    Path, typer.Option("--task", "-t", help="Path to task.toml (or its folder).")
]


def clean_errors(command: F) -> F:
    """Show a StillhouseError as one message and exit 2; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except StillhouseError as error:
            err.print(
                f"[bold red]error:[/] {escape(str(error))}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            err.print(
                "interrupted: every committed batch is kept; run the same command again to resume."
            )
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_reporter(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar with rate and ETA on stderr; yields ``update(done, total)``."""
    columns = (BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"))
    with Progress(
        TextColumn(description), *columns, TimeRemainingColumn(), console=err, transient=True
    ) as bar:
        job = bar.add_task(description, total=None, rate="")

        def update(done: int, total: int, note: str = "") -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:.2f}/s" if elapsed else ""
            bar.update(job, completed=done, total=total, rate=f"{rate} {note}".strip())

        yield update
