"""The `stillhouse` command: thin typer commands over the library's functions; no logic here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

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


def _progress_bar(description: str) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


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


@app.command()
@clean_errors
def annotate(
    task: TaskOption,
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Texts to label: .jsonl, .json, .csv or .parquet.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="qwen2.5-0.5b | smollm2-135m | PATH.gguf | openai:URL#MODEL (default: task.toml \\[llm].model)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    method: Annotated[
        str,
        typer.Option(
            help="score: probability per label (default) | constrained: grammar-restricted generation | generate: free generation, then matched to a label."
        ),
    ] = "score",
    shots: Annotated[
        int | None,
        typer.Option(
            min=0, help="Add the K nearest labelled examples of the input to each prompt."
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Ignore cached LLM answers (new answers are still cached)."
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Drop invalid rows (counted) instead of stopping."),
    ] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for llama.cpp (default: all cores).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Label every text with the LLM; results go to the task's store (stillhouse.db). Resumable."""
    from stillhouse.annotate import annotate as run_annotate
    from stillhouse.task import load_task

    spec = load_task(task)
    with _progress_bar("annotating") as bar:
        job = bar.add_task("annotate", total=None, rate="")

        def progress(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            bar.update(
                job, completed=done, total=total, rate=f"{done / elapsed:.2f}/s" if elapsed else ""
            )

        summary = run_annotate(
            spec,
            input,
            model=model,
            limit=limit,
            method=method,
            shots=shots,  # type: ignore[arg-type]
            use_cache=not no_cache,
            skip_invalid=skip_invalid,
            threads=threads,
            progress=progress,
        )
    if as_json:
        out.print_json(
            json.dumps(
                {
                    **asdict(summary),
                    "examples_per_second": summary.examples_per_second,
                    "cache_hit_rate": summary.cache_hit_rate,
                }
            )
        )
        return
    print_annotate_summary(summary)


def print_annotate_summary(summary: Any) -> None:
    table = Table(title=f"annotate · {summary.annotator}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "examples",
        f"{summary.examples} ({summary.annotated} annotated now, {summary.resumed} already done)",
    )
    table.add_row(
        "throughput", f"{summary.examples_per_second:.2f} examples/s ({summary.seconds:.1f} s)"
    )
    table.add_row(
        "cache hits", f"{summary.cache_hits} of {summary.annotated} ({summary.cache_hit_rate:.0%})"
    )
    if summary.accuracy is not None:
        low, high = summary.accuracy_interval
        table.add_row(
            "accuracy vs gold",
            f"{summary.accuracy:.3f}  (95% CI {low:.3f}–{high:.3f}, n={summary.n_gold})",
        )
    if summary.mean_confidence is not None:
        table.add_row("mean confidence", f"{summary.mean_confidence:.3f}")
    table.add_row(
        "probabilities",
        "per label" if summary.probabilities else "unavailable for this backend/method",
    )
    if summary.truncated:
        table.add_row(
            "truncated texts", f"{summary.truncated} (head kept, see \\[llm].max_text_tokens)"
        )
    if summary.invalid:
        table.add_row("invalid replies", str(summary.invalid))
    if summary.dropped_spans:
        table.add_row(
            "dropped spans", f"{summary.dropped_spans} (entity text not found in the input)"
        )
    if summary.skipped_rows:
        table.add_row(
            "skipped rows", f"{len(summary.skipped_rows)}; first: {summary.skipped_rows[0]}"
        )
    top = ", ".join(f"{label} {count}" for label, count in list(summary.label_counts.items())[:6])
    table.add_row("labels", top or "-")
    table.add_row("store", summary.store)
    out.print(table)


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


@app.command()
@clean_errors
def models(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the embedded models: where they are, size, sha256 status, license."""
    from stillhouse.llm.models import model_statuses

    statuses = model_statuses()
    if as_json:
        out.print_json(
            json.dumps([{**asdict(s), "path": str(s.path) if s.path else None} for s in statuses])
        )
        return
    table = Table(title="embedded models")
    for column in ("name", "model", "size", "license", "sha256", "path"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.name, s.title, f"{s.size / 1e6:.0f} MB", s.license, s.status, str(s.path or "-")
        )
    out.print(table)


@app.command()
@clean_errors
def demo(
    workspace: Annotated[
        Path, typer.Option(help="Where the demo task and its store are written.")
    ] = Path("demo-workspace"),
    limit: Annotated[int, typer.Option(min=1, help="How many test texts the LLM labels.")] = 120,
    model: Annotated[str, typer.Option(help="Model for the demo.")] = "qwen2.5-0.5b",
) -> None:
    """Run the flow on bundled real data (NusaX sentiment, English) with the embedded LLM."""
    from stillhouse.demo import run_demo

    run_demo(workspace, limit=limit, model=model, console=out, progress=_progress_bar)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
