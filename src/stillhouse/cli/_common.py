"""What every command shares: the app, the consoles, the --task option, error and progress handling."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stillhouse.errors import Errors, StillhouseError, fail, from_os_error

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


# What an interrupted command says (Ctrl-C); annotate's keeps what it committed.
INTERRUPTED = "interrupted: nothing was half-written; run the same command again."
INTERRUPTED_RESUMABLE = (
    "interrupted: every committed batch is kept; run the same command again to resume."
)
INTERRUPTED_TRAINING = (
    "interrupted: --out was not written (a LoRA run resumes from its last checkpoint); run the "
    "same command again."
)


def clean_errors(
    command: F | None = None, *, interrupted: str = INTERRUPTED
) -> F | Callable[[F], F]:
    """Show bad input as one message and exit 2, never a traceback: a StillhouseError, an
    operating-system error (permission, no space, a folder in the way: the path and the fix) or
    an unexpected SQLite error. Ctrl-C prints ``interrupted`` and exits 130. Use as
    ``@clean_errors`` or ``@clean_errors(interrupted=...)``."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except StillhouseError as error:
                _show(error)
                raise typer.Exit(error.exit_code) from None
            except OSError as error:
                shown = from_os_error(error)
                _show(shown)
                raise typer.Exit(shown.exit_code) from None
            except sqlite3.Error as error:
                shown = fail(Errors.E118, detail=str(error))
                _show(shown)
                raise typer.Exit(shown.exit_code) from None
            except KeyboardInterrupt:
                err.print(interrupted, highlight=False)
                raise typer.Exit(130) from None

        return wrapper  # type: ignore[return-value]

    return decorate(command) if command is not None else decorate


def _show(error: StillhouseError) -> None:
    err.print(
        f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True, soft_wrap=True
    )


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
