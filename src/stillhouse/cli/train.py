"""`stillhouse train`: distil labels into a small model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from stillhouse.cli._common import (
    INTERRUPTED_TRAINING,
    TaskOption,
    app,
    clean_errors,
    err,
    out,
    progress_reporter,
)
from stillhouse.cli._tracking import RegisterOption, TrackOption, say_logged


@app.command()
@clean_errors(interrupted=INTERRUPTED_TRAINING)
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
        str,
        typer.Option(
            help="linear | encoder | encoder-ngrams | llm-embed | llm-embed-ngrams | "
            "contrastive-encoder | "
            "lora-encoder | lora-llm (other languages than English: linear or llm-embed-ngrams)."
        ),
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
        typer.Option(
            help="linear, encoder-ngrams: word n-gram range LOW-HIGH, or none (default 1-2)."
        ),
    ] = None,
    char_ngrams: Annotated[
        str | None,
        typer.Option(
            help="linear, encoder-ngrams: character n-gram range within words, LOW-HIGH, or none "
            "(default 2-5; "
            "none predicts ~10x faster)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for ONNX Runtime.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
    track: TrackOption = None,
    register: RegisterOption = None,
) -> None:
    """Distil labels into a small calibrated model folder with a model card (classify tasks;
    multilabel: linear | encoder, one-vs-rest; spans: --recipe spacy-ner)."""
    from stillhouse.task import load_task
    from stillhouse.tracking import start_tracking
    from stillhouse.train import TrainSettings
    from stillhouse.train import train as run_train
    from stillhouse.train.recipe import busy_with
    from stillhouse.train.settings import parse_ngrams

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
    spec = load_task(task)
    if track is not None or spec.tracking.uri is not None:
        from stillhouse.train.folder import check_out_is_free

        check_out_is_free(out_dir)  # a taken --out is refused before the store is opened
    tracker = start_tracking(spec, track, register)  # before the work: E970–E978
    with progress_reporter(busy_with(recipe)) as progress:
        summary = run_train(
            spec,
            out_dir,
            settings,
            data=data,
            from_store=from_store,
            log=lambda message: err.print(escape(message)),
            progress=progress,
        )
    if tracker is not None:
        from stillhouse.tracking.commands import log_train

        say_logged(log_train(tracker, summary.path, summary.card), tracker.target.uri)
    if as_json:
        out.print_json(json.dumps(summary.card))
        return
    out.print((Path(summary.path) / "README.md").read_text(encoding="utf-8"), markup=False)
    out.print(f"wrote {summary.path}")
