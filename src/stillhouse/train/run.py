"""`stillhouse train`: labels → held-out split → fit → calibrate → measure → model folder.

This module is the classify flow (multilabel and span tasks go through :mod:`.structured`);
what is the recipe's own (settings it refuses, how it fits, its base model) comes from the
recipe (:mod:`.recipe`).

The folder is written to a temporary sibling and renamed into place only once it is complete
and loads, so ``--out`` either holds a whole model or nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.errors import Errors, fail
from stillhouse.evaluate.calibration import apply_temperature
from stillhouse.provenance import json_sha256
from stillhouse.task import Task
from stillhouse.train import labels as label_policy
from stillhouse.train.calibrate import calibrate
from stillhouse.train.card import model_card, training_data
from stillhouse.train.folder import write_model_folder
from stillhouse.train.head import fit_head
from stillhouse.train.languages import language_warning
from stillhouse.train.measure import held_out_metrics
from stillhouse.train.recipe import Fitting, Log, Progress, check_settings
from stillhouse.train.settings import TrainSettings, TrainSummary
from stillhouse.train.split import stratified_holdout
from stillhouse.train.structured import train_structured
from stillhouse.train.training_set import read_training_set


def train(
    task: Task,
    out: str | Path,
    settings: TrainSettings,
    *,
    data: str | Path | None = None,
    from_store: bool = False,
    log: Log | None = None,
    progress: Progress | None = None,
) -> TrainSummary:
    """Train ``settings.recipe`` on ``data`` (gold labels) or the task's store (label policy),
    write the model folder ``out`` and return its card."""
    say = log or (lambda message: None)
    if task.kind != "classify":
        return train_structured(
            task, out, settings, data=data, from_store=from_store, log=log, progress=progress
        )
    recipe = check_settings(settings)
    warning = language_warning(task, recipe)
    if warning:
        say(warning)
    out, started, training = read_training_set(task, out, settings, data, from_store, say)

    column = {label: index for index, label in enumerate(task.label_names)}
    y_index = np.array([column[label] for label in training.labels])
    weights = np.array(training.weights, dtype=np.float64)
    train_rows, held_rows = stratified_holdout(training.labels, settings.holdout, settings.seed)
    if not held_rows:  # one example per label: nothing to calibrate or measure on
        raise fail(
            Errors.E747, count=len(training), source=training.origin, holdout=settings.holdout
        )
    # a LoRA run checkpoints here; the same command run again after a kill resumes from it
    checkpoints = out.parent / f".{out.name}.checkpoints"
    plan = recipe.plan(
        Fitting(
            task, training.texts, y_index, weights, settings, fit_head, checkpoints, say, progress
        )
    )
    refit = settings.refit and recipe.refits

    say(f"fitting on {len(train_rows)} examples, calibrating on {len(held_rows)} held out")
    held_model = plan.fit(np.array(train_rows))
    held_logits = held_model.logits([training.texts[i] for i in held_rows])
    calibration = calibrate(held_logits, y_index[held_rows])
    metrics = held_out_metrics(
        apply_temperature(held_logits, calibration.temperature),
        y_index[held_rows],
        seed=settings.seed,
    )
    final = plan.fit(np.arange(len(training))) if refit else held_model
    train_seconds = time.perf_counter() - started
    run_info = getattr(final, "run_info", None)

    def card_of(files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return model_card(
            task,
            settings,
            base_model=recipe.base_model(final),
            quantization=plan.quantization,
            hyper_parameters=plan.hyper_parameters,
            refit=refit,
            training_data=training_data(
                origin=training.origin,
                sha256=json_sha256(
                    [training.ids, training.texts, training.labels, training.weights]
                ),
                examples=len(training),
                train_rows=len(train_rows),
                held_out_rows=len(held_rows),
                label_counts=training.label_counts(),
                missing=label_policy.missing_labels(training, task),
                mix=training.mix,
                settings=settings,
                from_store=from_store,
                what="label",
                llm_weight="the LLM's probability",
            ),
            calibration={
                "method": "temperature scaling on the held-out split (NLL)",
                "temperature": calibration.temperature,
                "ece_before": calibration.ece_before,
                "ece_after": calibration.ece_after,
                "held_out": calibration.held_out,
            },
            held_out=metrics,
            files=files,
            train_seconds=train_seconds,
            extra={"training_run": asdict(run_info)} if run_info is not None else None,
        )

    card = write_model_folder(
        out, final, card_of, training.texts, settings, say, checkpoints=checkpoints
    )
    return TrainSummary(str(out), card)
