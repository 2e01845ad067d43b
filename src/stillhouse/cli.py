"""The `stillhouse` command: thin typer commands over the library's functions; no logic here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
) -> None:
    """Label every text with the LLM; results go to the task's store (stillhouse.db). Resumable."""
    from stillhouse.annotate import annotate as run_annotate
    from stillhouse.task import load_task

    spec = load_task(task)
    with progress_reporter("annotating") as progress:
        summary = run_annotate(
            spec,
            input,
            model=model,
            limit=limit,
            method=method,
            shots=shots,  # type: ignore[arg-type]
            unlabelled_only=unlabelled_only,
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

    out.rule(f"stillhouse demo · NusaX sentiment (English) · {model}")
    out.print(
        f"The embedded LLM labels {limit} real test texts by scoring every label (no parsing, "
        f"no invalid outputs); answers are cached in {workspace}/stillhouse.db and a rerun resumes."
    )
    result = run_demo(workspace, limit=limit, model=model, progress=progress_reporter)
    table = Table(title="a few LLM labels with their probabilities", title_justify="left")
    table.add_column("text", max_width=60)
    table.add_column("gold")
    table.add_column("LLM: label probabilities")
    for text, gold, probs in result.samples:
        ranked = sorted(probs.items(), key=lambda item: -item[1])
        table.add_row(text[:120], gold, "  ".join(f"{label} {p:.2f}" for label, p in ranked))
    out.print(table)
    print_annotate_summary(result.summary)
    out.print(
        f"Next: `stillhouse export --task {result.task_path} --out labels.jsonl` writes the "
        "labels as JSONL."
    )


@app.command()
@clean_errors
def evaluate(
    task: TaskOption,
    test: Annotated[
        Path,
        typer.Option("--test", help="Gold-labelled test data: .jsonl, .json, .csv or .parquet."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json.")],
    system: Annotated[
        list[str] | None,
        typer.Option(
            "--system",
            "-s",
            help="NAME=preds:FILE (a JSONL file of {id, label, probs} rows), NAME=llm:MODEL "
            "(the task's prompt on an embedded model, a .gguf or openai:URL#MODEL), "
            "NAME=model:DIR (a trained model) or NAME=cascade:SOURCE:VALUE@T,...,SOURCE:VALUE[@A] "
            "(each stage passes texts whose top probability is below T on; abstain below A); "
            "repeatable.",
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=1, help="Bootstrap resamples for the intervals.")
    ] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the bootstrap resamples.")] = 0,
    slice_fields: Annotated[
        list[str] | None,
        typer.Option("--slice", help="Meta field to report accuracy per value of (repeatable)."),
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(
            help="Accuracy for coverage-at-precision (default: the \\[gate] rule's, else 0.99)."
        ),
    ] = None,
    perturb: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated perturbations to re-predict under (seeded with --seed): "
            "lowercase, uppercase, contractions, expansions, misspellings, typos, whitespace, "
            "punctuation, mild_mix, gender, names; or robustness, fairness, all."
        ),
    ] = None,
    efficiency_sample: Annotated[
        int,
        typer.Option(
            min=0,
            help="Texts timed per system for latency, throughput, memory and reproducibility "
            "(0: off; predictions files are never timed).",
        ),
    ] = 100,
) -> None:
    """Score every system on the test set (classify tasks): OUT/results.json and OUT/report.html."""
    from stillhouse.evaluate.efficiency import EfficiencySettings
    from stillhouse.evaluate.perturb import parse_perturbations
    from stillhouse.evaluate.report import REPORT_FILE_NAME, write_report
    from stillhouse.evaluate.results import RESULTS_FILE_NAME, write_results
    from stillhouse.evaluate.run import evaluate as run_evaluate
    from stillhouse.predictors import open_systems
    from stillhouse.task import load_task

    spec = load_task(task)
    results = run_evaluate(
        spec,
        test,
        open_systems(system or [], spec),
        n_resamples=bootstrap,
        seed=seed,
        slices=slice_fields or [],
        target_precision=target_precision,
        perturbations=parse_perturbations(perturb or ""),
        efficiency=EfficiencySettings(sample=efficiency_sample),
    )
    path = write_results(results, out_dir / RESULTS_FILE_NAME)
    report = write_report(results, out_dir / REPORT_FILE_NAME)
    print_leaderboard(results)
    out.print(f"wrote {path} and {report}")


def print_leaderboard(results: Any) -> None:
    def interval(value: dict[str, float] | None) -> str:
        if value is None:
            return "-"
        return f"{value['estimate']:.3f} [{value['low']:.3f}–{value['high']:.3f}]"

    n, resamples = results.data["n_items"], results.settings["n_resamples"]
    target = results.settings["target_precision"]
    table = Table(
        title=f"evaluate · {results.task['name']} · {n} items · 95% CI from {resamples} resamples",
        title_justify="left",
    )
    columns = (
        "system",
        "accuracy",
        "macro-F1",
        "weighted-F1",
        "ECE",
        "AURC",
        f"coverage@{target:g}",
    )
    for column in columns:
        table.add_column(column)
    for name, system in results.systems.items():
        metrics, calibration, selective = (
            system["metrics"],
            system["calibration"],
            system["selective"],
        )
        table.add_row(
            escape(name),
            interval(metrics["accuracy"]),
            interval(metrics["macro_f1"]),
            interval(metrics["weighted_f1"]),
            f"{calibration['ece_10_equal_mass']:.3f}" if calibration else "-",
            interval(selective["aurc"]) if selective else "-",
            interval(selective["coverage_at_precision"]["coverage"]) if selective else "-",
        )
    out.print(table)
    for name, system in results.systems.items():
        for field, slice_results in system["slices"].items():
            out.print(
                f"{escape(name)} · worst {escape(field)}: {escape(slice_results['worst'])} "
                f"({slice_results['worst_accuracy']:.3f}, gap {slice_results['gap']:.3f})"
            )
    for name, system in results.systems.items():
        print_cascade(name, system, target)
        print_robustness(name, system)
        print_efficiency(name, system)
    for comparison in results.comparisons:
        out.print(escape(comparison["sentence"]))


def print_cascade(name: str, system: dict[str, Any], target: float) -> None:
    """A cascade's share per stage; for any system, the confidence threshold that keeps
    ``target`` accuracy (what a cascade stage's @THRESHOLD can be set to)."""
    cascade = system.get("cascade")
    if cascade:
        shares = ", ".join(f"{s['name']} {s['share']:.0%}" for s in cascade["stages"])
        line = f"answered by {shares}; abstained {cascade['abstained_share']:.0%}"
        answered = (system.get("abstention") or {}).get("accuracy_answered")
        if cascade["abstained"] and answered is not None:
            line += f" (accuracy on the answered {answered:.3f})"
        out.print(f"{escape(name)} · cascade: {escape(line)}")
    selective = system.get("selective")
    at_precision = selective["coverage_at_precision"] if selective else None
    if at_precision and at_precision["threshold"] is not None:
        out.print(
            f"{escape(name)} · its answers at confidence ≥ {at_precision['threshold']:.4g} "
            f"keep accuracy ≥ {target:g} (coverage {at_precision['coverage']['estimate']:.0%}): "
            "usable as a cascade stage's @THRESHOLD"
        )


def print_efficiency(name: str, system: dict[str, Any]) -> None:
    efficiency, repeated = system.get("efficiency"), system.get("reproducibility")
    if efficiency is None:
        return
    latency, throughput = efficiency["latency_ms"], efficiency["throughput"]
    line = (
        f"latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms; "
        f"{throughput['items_per_second']:.1f} items/s at batch {throughput['best_batch_size']}"
    )
    tokens = efficiency.get("tokens_per_item")
    if tokens and tokens.get("in") is not None:
        line += f"; tokens per item in {tokens['in']:.0f}"
        if tokens.get("in_new") is not None:
            line += f" ({tokens['in_new']:.0f} new)"
        if tokens.get("out") is not None:
            line += f", out {tokens['out']:.0f}"
    if repeated is not None and repeated["identical_answers"] is not None:
        line += f"; same answer twice {repeated['identical_answers']:.0%}"
    out.print(f"{escape(name)} · efficiency ({efficiency['sample']} texts): {escape(line)}")


def print_robustness(name: str, system: dict[str, Any]) -> None:
    robustness = system.get("robustness")
    if robustness is None:
        if "robustness" in system.get("not_measured", {}):
            reason = system["not_measured"]["robustness"]
            out.print(f"{escape(name)} · robustness not measured: {escape(reason)}")
        return
    parts = []
    for key, shown in (
        ("worst_case_accuracy", "worst case"),
        ("fairness_worst_case_accuracy", "fairness worst case"),
    ):
        if robustness[key] is not None:
            parts.append(f"{shown} {robustness[key]['estimate']:.3f}")
    highest = robustness["max_flip_rate"]
    parts.append(f"highest flip rate {highest['value']:.3f} ({highest['perturbation']})")
    out.print(f"{escape(name)} · robustness: {escape(', '.join(parts))}")


@app.command()
@clean_errors
def gate(
    task: TaskOption,
    results: Annotated[
        Path, typer.Option("--results", "-r", help="results.json written by `stillhouse evaluate`.")
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(help="A previous results.json, for the no_significant_regression rule."),
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="The system to gate (default: the first in results.json).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the verdict as JSON (same exit codes).")
    ] = False,
) -> None:
    """Check task.toml [gate] against results.json: exit 0 when every rule passes, 1 otherwise."""
    from stillhouse.evaluate.results import read_results
    from stillhouse.gate import gate as run_gate
    from stillhouse.task import load_task

    report = run_gate(
        load_task(task),
        read_results(results),
        read_results(baseline) if baseline is not None else None,
        system,
    )
    if as_json:
        rows = [asdict(row) for row in report.rows]
        document = {"system": report.system, "passed": report.passed, "rules": rows}
        out.print_json(json.dumps(document, ensure_ascii=False))
        if not report.passed:
            raise typer.Exit(1)
        return
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    table = Table(title=f"gate · {escape(report.system)} · {verdict}", title_justify="left")
    for column in ("rule", "measured", "threshold", "verdict", "reason"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(
            row.rule,
            "-" if row.measured is None else f"{row.measured:.3f}",
            escape(row.condition),
            "[green]pass[/]" if row.passed else "[red]fail[/]",
            escape(row.reason),
        )
    out.print(table)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
@clean_errors
def train(
    task: TaskOption,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Model folder to write (must not exist).")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Labelled training data (.jsonl/.json/.csv/.parquet); labels count as gold."
        ),
    ] = None,
    from_store: Annotated[
        bool,
        typer.Option(
            "--from-store", help="Train on the labels in the task's store (stillhouse.db)."
        ),
    ] = False,
    labels: Annotated[
        str, typer.Option(help="With --from-store: best (gold > human > llm) | gold | human | llm.")
    ] = "best",
    min_llm_confidence: Annotated[
        float,
        typer.Option(
            help="Drop LLM labels whose probability is below this (kept ones are weighted by it)."
        ),
    ] = 0.0,
    recipe: Annotated[
        str, typer.Option(help="linear | encoder | contrastive-encoder | lora-encoder | lora-llm.")
    ] = "linear",
    quantize: Annotated[
        str | None,
        typer.Option(
            help="encoder recipes: int8 (default, per-channel ONNX) | none (fp32); "
            "lora-llm: none (default, GGUF LoRA adapter) | q8_0 | q4_k_m (merged)."
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="lora-encoder, lora-llm, spacy-ner: training epochs (default 3, 1, 10)."),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help="LoRA recipes, spacy-ner: stop after this many optimizer steps; "
            "contrastive-encoder: steps of 16 pairs (default 300)."
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="LoRA recipes, spacy-ner, contrastive-encoder: stop after this many minutes "
            "of training."
        ),
    ] = None,
    min_per_label: Annotated[
        int, typer.Option(help="Refuse labels with fewer training examples.")
    ] = 3,
    holdout: Annotated[
        float, typer.Option(help="Share of each label held out for calibration and metrics.")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split (and bootstrap).")] = 0,
    c: Annotated[
        float | None,
        typer.Option("--c", help="Inverse L2 strength of the logistic head (default 10)."),
    ] = None,
    word_ngrams: Annotated[
        str | None,
        typer.Option(help="linear: word n-gram range LOW-HIGH, or none (default 1-2)."),
    ] = None,
    char_ngrams: Annotated[
        str | None,
        typer.Option(
            help="linear: character n-gram range within words, LOW-HIGH, or none (default 2-5; "
            "none predicts ~10x faster)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for ONNX Runtime.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Distil labels into a small calibrated model folder with a model card (classify tasks;
    multilabel: linear | encoder, one-vs-rest; spans: --recipe spacy-ner)."""
    from stillhouse.task import load_task
    from stillhouse.train import TrainSettings
    from stillhouse.train import train as run_train
    from stillhouse.train.linear import parse_ngrams

    given = {"word_ngrams": word_ngrams, "char_ngrams": char_ngrams}
    ngrams = {
        name: parse_ngrams("--" + name.replace("_", "-"), text)
        for name, text in given.items()
        if text is not None
    }
    settings = TrainSettings(
        recipe=recipe,
        labels=labels,
        min_llm_confidence=min_llm_confidence,
        min_per_label=min_per_label,
        holdout=holdout,
        seed=seed,
        quantize=quantize,
        c=c,
        threads=threads,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        **ngrams,
    )
    training = recipe in ("contrastive-encoder", "lora-encoder", "lora-llm", "spacy-ner")
    with progress_reporter("training" if training else "embedding") as progress:
        summary = run_train(
            load_task(task),
            out_dir,
            settings,
            data=data,
            from_store=from_store,
            log=lambda message: err.print(escape(message)),
            progress=progress,
        )
    if as_json:
        out.print_json(json.dumps(summary.card))
        return
    out.print((Path(summary.path) / "README.md").read_text(encoding="utf-8"), markup=False)
    out.print(f"wrote {summary.path}")


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
            "--task", "-t", help="task.toml whose [input] fields to read (default text/id)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for ONNX Runtime.")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Drop invalid rows (counted) instead of stopping."),
    ] = False,
) -> None:
    """Write {id, label, probs} rows for every text ({id, labels, probs} for multilabel models,
    {id, spans} for span models): the predictions file evaluate reads."""
    from stillhouse.task import load_task
    from stillhouse.train.predict import predict_file

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
        )
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    out.print(f"wrote {summary.written} predictions to {summary.path} ({rate:.0f} texts/s)")


@app.command()
@clean_errors
def audit(
    task: TaskOption,
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Data to audit: .jsonl, .json, .csv or .parquet.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for audit.json and audit.html.")
    ],
    test: Annotated[
        Path | None, typer.Option("--test", help="The held-out split, to check for leakage.")
    ] = None,
    annotator: Annotated[
        str | None,
        typer.Option(
            help="Whose labels to audit: gold (the file's label field, default) | human | llm | "
            "a full annotator id from the store."
        ),
    ] = None,
    checks: Annotated[
        str,
        typer.Option(
            help="all | comma-separated: duplicates, near_duplicates, leakage, label_issues, "
            "disagreement, outliers, balance, language, pii, text."
        ),
    ] = "all",
    fix: Annotated[
        Path | None,
        typer.Option(
            "--fix", help="Write a cleaned copy (JSONL) here, and OUT/fix-log.jsonl of changes."
        ),
    ] = None,
    redact_pii: Annotated[
        bool, typer.Option("--redact-pii", help="With --fix: replace PII by <ENTITY_TYPE>.")
    ] = False,
    drop_label_issues_below: Annotated[
        float | None,
        typer.Option(help="With --fix: drop likely label errors with quality below this."),
    ] = None,
    near_threshold: Annotated[
        float, typer.Option(help="Character-shingle Jaccard for near duplicates and leakage.")
    ] = 0.8,
    paraphrases: Annotated[
        bool,
        typer.Option("--paraphrases", help="Also group texts with embedding cosine ≥ 0.95."),
    ] = False,
    folds: Annotated[int, typer.Option(help="Cross-validation folds for label errors.")] = 5,
    pii_threshold: Annotated[float, typer.Option(help="Minimum presidio score.")] = 0.4,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Drop invalid rows (counted) instead of stopping."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print audit.json to stdout.")] = False,
) -> None:
    """Audit a dataset: duplicates, leakage, likely label errors, PII, language, text health."""
    from stillhouse.audit.fix import FixOptions, check_fix_target
    from stillhouse.audit.outputs import write_outputs
    from stillhouse.audit.run import AuditSettings, parse_checks, run_audit
    from stillhouse.errors import Errors, fail
    from stillhouse.task import load_task

    settings = AuditSettings(
        checks=parse_checks(checks),
        near_threshold=near_threshold,
        paraphrases=paraphrases,
        folds=folds,
        pii_threshold=pii_threshold,
    )
    if fix is not None:
        check_fix_target(data, test, fix)
    for flag, needed, used in (
        ("--redact-pii", "pii", redact_pii),
        ("--drop-label-issues-below", "label_issues", drop_label_issues_below is not None),
    ):
        if used and (fix is None or needed not in settings.checks):
            expected = f"used with --fix and the {needed} check"
            raise fail(Errors.E605, what=flag, expected=expected, value=True)
    report = run_audit(
        load_task(task),
        data,
        test_path=test,
        annotator=annotator,
        settings=settings,
        skip_invalid=skip_invalid,
        progress=lambda step: err.print(f"audit: {step}…", highlight=False),
    )
    outputs = write_outputs(
        report, out_dir, fix_path=fix, fix_options=FixOptions(redact_pii, drop_label_issues_below)
    )
    if as_json:
        out.print_json(json.dumps(outputs.document, default=str))
        return
    print_audit_summary(outputs)


def print_audit_summary(outputs: Any) -> None:
    document = outputs.document
    colours = {"ok": "green", "warning": "yellow", "problem": "red", "skipped": "dim"}
    table = Table(
        title=f"audit · {escape(document['task']['name'])} · {document['data']['rows']} rows",
        title_justify="left",
    )
    for column in ("check", "status", "found", "summary"):
        table.add_column(column, overflow="fold")
    for check in document["checks"].values():
        colour = colours[check["status"]]
        table.add_row(
            escape(check["title"]),
            f"[{colour}]{check['status']}[/]",
            str(check["count"]),
            escape(check["summary"]),
        )
    out.print(table)
    for warning in document["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    queue = document["review_queue"]
    if queue["store"]:
        out.print(f"review queue: {queue['items']} examples in {escape(queue['store'])}")
    if outputs.fix is not None:
        fixed = outputs.fix
        out.print(
            f"wrote {escape(fixed.path)}: {fixed.rows_out} of {fixed.rows_in} rows "
            f"({fixed.dropped} dropped, {fixed.redacted} redacted); changes in {escape(fixed.log)}"
        )
    out.print(f"wrote {outputs.json_path} and {outputs.html_path}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
