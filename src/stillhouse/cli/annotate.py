"""`stillhouse annotate`: label texts with the LLM, and the summary table (also shown by demo)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from stillhouse.cli._common import (
    INTERRUPTED_RESUMABLE,
    TaskOption,
    app,
    clean_errors,
    out,
    progress_reporter,
)
from stillhouse.cli._engine import EngineOption, RayAddressOption, RayWorkersOption
from stillhouse.cli._tracking import TrackOption, say_logged


@app.command()
@clean_errors(interrupted=INTERRUPTED_RESUMABLE)
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
    shortlist: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Score only the K labels a retriever ranks first per text (0: every label; default: task.toml \\[llm].shortlist, 10 above 20 labels).",
        ),
    ] = None,
    unlabelled_only: Annotated[
        bool,
        typer.Option(
            "--unlabelled-only",
            help="Label only rows without a gold label (labelled rows still serve as shots).",
        ),
    ] = False,
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
    track: TrackOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Label every text with the LLM; results go to the task's store (stillhouse.db). Resumable."""
    from stillhouse.annotate import annotate as run_annotate
    from stillhouse.scale.engine import make_engine
    from stillhouse.task import load_task
    from stillhouse.tracking import start_tracking

    chosen = make_engine(engine, ray_address, ray_workers, threads)
    spec = load_task(task)
    tracker = start_tracking(spec, track)  # before the work: E970–E978
    with progress_reporter("annotating") as progress:
        summary = run_annotate(
            spec,
            input,
            model=model,
            limit=limit,
            method=method,
            shots=shots,  # type: ignore[arg-type]
            shortlist=shortlist,
            unlabelled_only=unlabelled_only,
            use_cache=not no_cache,
            skip_invalid=skip_invalid,
            threads=threads,
            progress=progress,
            engine=chosen if chosen.is_ray else None,
        )
    if tracker is not None:
        from stillhouse.tracking.commands import log_annotate

        say_logged(log_annotate(tracker, summary, spec.name), tracker.target.uri)
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
    privacy = summary.privacy
    if privacy and privacy["mode"] != "allow":
        found = ", ".join(f"{kind} {count}" for kind, count in privacy["mentions"].items())
        line = f"{privacy['mode']}: {privacy['texts_with_pii']} of {privacy['texts_checked']} "
        line += f"texts held personal data ({found or 'none'})"
        if summary.privacy_blocked:
            line += f"; {summary.privacy_blocked} not sent, in the review queue `privacy`"
        table.add_row("privacy", line)
    if summary.injection_flagged:
        line = f"{summary.injection_flagged} flagged as possible prompt injection"
        if summary.injection_queued:
            line += f"; {summary.injection_queued} not sent, in the review queue `injection`"
        table.add_row("guard", line)
    top = ", ".join(f"{label} {count}" for label, count in list(summary.label_counts.items())[:6])
    table.add_row("labels", top or "-")
    table.add_row("store", summary.store)
    out.print(table)
