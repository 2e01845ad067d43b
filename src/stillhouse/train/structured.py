"""`stillhouse train` for multilabel and span tasks: answers → held-out split → fit → calibrate
→ measure → model folder, the classify flow of :mod:`stillhouse.train.run` with other heads.

- multilabel (recipes ``linear`` and ``encoder``): the recipe's features with one-vs-rest heads
  (:mod:`.multilabel`);
- spans (recipe ``spacy-ner``): the recipe fits, calibrates and measures
  (:meth:`.recipe.Recipe.fit_spans`).

The folder is written as a classify one (:mod:`.folder`: temporary sibling, loaded back,
measured, renamed into place); its card (:mod:`.card`) has the classify card's fields (the
calibration and held-out entries hold what fits the kind) and hashes every file, those in
sub-folders too (a spaCy pipeline is a folder).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from stillhouse.data.records import answer_to_json
from stillhouse.provenance import json_sha256
from stillhouse.task import Task
from stillhouse.train.card import model_card, training_data
from stillhouse.train.folder import write_model_folder
from stillhouse.train.languages import language_warning
from stillhouse.train.multilabel import fit_multilabel
from stillhouse.train.recipe import Log, Progress, check_settings
from stillhouse.train.settings import TrainSettings, TrainSummary
from stillhouse.train.training_set import read_training_set


def train_structured(
    task: Task,
    out: str | Path,
    settings: TrainSettings,
    *,
    data: str | Path | None = None,
    from_store: bool = False,
    log: Log | None = None,
    progress: Progress | None = None,
) -> TrainSummary:
    """Train a multilabel or span model (see the module docstring) and write ``out``."""
    say = log or (lambda message: None)
    recipe = check_settings(settings, task.kind)
    warning = language_warning(task, recipe)
    if warning:
        say(warning)
    out, started, answers = read_training_set(task, out, settings, data, from_store, say)
    if task.kind == "multilabel":
        fitted = fit_multilabel(recipe, task, answers, settings, say, progress)
    else:
        fitted = recipe.fit_spans(task, answers, settings, say, progress)
    train_seconds = time.perf_counter() - started

    def card_of(files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        label_counts = answers.label_counts(task)
        return model_card(
            task,
            settings,
            base_model=fitted.base_model,
            quantization=fitted.quantization,
            hyper_parameters=fitted.hyper_parameters,
            refit=fitted.refit,
            training_data=training_data(
                origin=answers.origin,
                sha256=json_sha256(
                    [
                        answers.ids,
                        answers.texts,
                        [answer_to_json(a, task.kind) for a in answers.answers],
                        answers.weights,
                    ]
                ),
                examples=len(answers),
                train_rows=fitted.train_rows,
                held_out_rows=fitted.held_out_rows,
                label_counts=label_counts,
                missing=[label for label, n in label_counts.items() if n == 0],
                mix=answers.mix,
                settings=settings,
                from_store=from_store,
                what="answer",
                llm_weight="the LLM's confidence",
            ),
            calibration=fitted.calibration,
            held_out=fitted.held_out,
            files=files,
            train_seconds=train_seconds,
            extra=fitted.extra,
        )

    card = write_model_folder(out, fitted.model, card_of, answers.texts, settings, say)
    return TrainSummary(str(out), card)
