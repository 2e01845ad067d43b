"""`stillhouse review`: people accept or correct suggestions in a browser; --stats for numbers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import TaskOption, app, clean_errors, out

STOPPED = "review stopped: every decision made is in the store."


@app.command()
@clean_errors(interrupted=STOPPED)
def review(
    task: TaskOption,
    queue: Annotated[
        str | None,
        typer.Option(
            help="auto (abstentions and likely label errors, then LLM–human disagreements, then "
            "the least sure) | uncertain | audit | disagreement | abstained | privacy | injection | "
            "random. "
            "Default auto."
        ),
    ] = None,
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Rows to review (.jsonl/.json/.csv/.parquet), added to the store; a .jsonl "
            "row's label/probs is shown as the suggestion, never taken as gold.",
        ),
    ] = None,
    annotator: Annotated[
        str | None,
        typer.Option(
            help="Reviewer name for every browser (answers are stored as human:NAME); without "
            "it, the page asks each reviewer's name."
        ),
    ] = None,
    overlap: Annotated[
        float | None,
        typer.Option(
            help="Share of examples two reviewers label, blind to each other (for agreement). "
            "Default 0."
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on. Default 127.0.0.1; any other needs --token-file."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on; 0 takes a free one. Default 8080.")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="File whose first line is the secret reviewers log in with."),
    ] = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="Print progress, speed and agreement per label (kappa/alpha with 95% "
            "intervals) instead of serving the page.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --stats: print JSON.")] = False,
) -> None:
    """Review suggestions in the browser, one text at a time, keyboard first (? lists the keys)."""
    from stillhouse.errors import Errors, fail
    from stillhouse.review.server import DEFAULT_HOST, DEFAULT_PORT, ReviewSettings, run_review
    from stillhouse.task import load_task

    given = {
        "--queue": queue,
        "--input": input_path,
        "--annotator": annotator,
        "--overlap": overlap,
        "--host": host,
        "--port": port,
        "--token-file": token_file,
    }
    if stats:
        for option, value in given.items():
            if value is not None:
                raise fail(
                    Errors.E869,
                    option=option,
                    detail="does not apply with --stats, which only reads the store",
                )
        _print_stats(load_task(task), as_json)
        return
    if as_json:
        raise fail(Errors.E869, option="--json", detail="applies to --stats only")
    settings = ReviewSettings(
        queue=queue or "auto",
        input_path=input_path,
        annotator=annotator,
        overlap=0.0 if overlap is None else overlap,
        host=host or DEFAULT_HOST,
        port=DEFAULT_PORT if port is None else port,
        token_file=token_file,
    )

    def announce(url: str, planned: Any) -> None:
        who = f" as {escape(settings.annotator)}" if settings.annotator else ""
        out.print(
            f"review of {escape(task_name)} ({planned.name} queue, {len(planned)} example(s))"
            f"{who} at {url}",
            highlight=False,
            soft_wrap=True,
        )
        out.print("Ctrl-C stops it; every decision is stored the moment it is made.")
        sys.stdout.flush()

    loaded = load_task(task)
    task_name = loaded.name
    run_review(loaded, settings, announce=announce)
    out.print(STOPPED)


def _print_stats(task: Any, as_json: bool) -> None:
    from stillhouse.review.stats import review_stats

    found = review_stats(task)
    if as_json:
        out.print_json(json.dumps(found.as_dict(), default=float))
        return
    out.print(
        f"{escape(task.name)}: {found.examples} example(s) in {found.store}, {found.reviewed} "
        f"reviewed; {found.conflicts} open conflict(s), {found.resolved} resolved.",
        highlight=False,
        soft_wrap=True,
    )
    if found.reviewers:
        table = Table(
            "reviewer",
            "done",
            "accept",
            "correct",
            "reject",
            "skip",
            "flag",
            "accept rate",
            "items/h",
            "sessions",
            "last decision",
        )
        for row in found.reviewers:
            d = row.decisions
            table.add_row(
                escape(row.name),
                str(row.done),
                *(str(d.get(k, 0)) for k in ("accept", "correct", "reject", "skip", "flag")),
                "–" if row.accept_rate is None else f"{row.accept_rate:.0%}",
                "–" if row.per_hour is None else f"{row.per_hour:.0f}",
                str(row.sessions),
                "–"
                if row.last is None
                else time.strftime("%Y-%m-%d %H:%M", time.localtime(row.last)),
            )
        out.print(table)
    agreement = found.agreement
    if agreement is None:
        out.print("agreement: no example has answers from two reviewers yet (use --overlap).")
        return
    out.print(
        f"agreement on {agreement.items} example(s) answered by {len(agreement.annotators)} "
        f"reviewers ({escape(', '.join(agreement.annotators))}), 95% bootstrap intervals over "
        f"examples ({agreement.n_resamples} resamples, seed {agreement.seed}):",
        highlight=False,
        soft_wrap=True,
    )
    table = Table("label", "answers", "Cohen's kappa", "Krippendorff's alpha")
    table.add_row(
        "all", str(agreement.units), _estimate(agreement.kappa), _estimate(agreement.alpha)
    )
    for label, row in agreement.per_label.items():
        table.add_row(
            escape(label), str(row["count"]), _estimate(row["kappa"]), _estimate(row["alpha"])
        )
    out.print(table)


def _estimate(estimate: Any) -> str:
    if estimate is None:
        return "– (needs exactly 2 reviewers)"
    if estimate.value is None:
        return "undefined (one category only)"
    if estimate.low is None:
        return f"{estimate.value:.3f}"
    return f"{estimate.value:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"
