"""`stillhouse train` for multilabel and span tasks: answers → held-out split → fit → calibrate
→ measure → model folder, the classify flow of :mod:`stillhouse.train.run` with other heads.

- multilabel, recipes ``linear`` and ``encoder``: one-vs-rest heads (:mod:`.multilabel`);
- spans, recipe ``spacy-ner``: spaCy NER fine-tuned from en_core_web_sm (:mod:`.spans`).

The folder is written as a classify one (:mod:`.folder`: temporary sibling, loaded back,
measured, renamed into place); its card (:mod:`.card`) has the classify card's fields (the
calibration and held-out entries hold what fits the kind) and hashes every file, those in
sub-folders too (a spaCy pipeline is a folder).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stillhouse.data.records import answer_to_json
from stillhouse.errors import Errors, fail
from stillhouse.provenance import json_sha256
from stillhouse.task import Task
from stillhouse.train.card import model_card, training_data
from stillhouse.train.folder import write_model_folder
from stillhouse.train.run import (
    TrainSettings,
    TrainSummary,
    check_ngrams,
    check_settings,
    read_training_data,
)

# Which recipes train which task kind (classify: see run.RECIPES).
KIND_RECIPES = {"multilabel": ("linear", "encoder"), "spans": ("spacy-ner",)}

Log = Callable[[str], None]


@dataclass
class Fitted:
    """What a kind's trainer hands back: the model to save and the card entries it fills."""

    model: Any  # has save(folder)
    hyper_parameters: dict[str, Any]
    calibration: dict[str, Any]
    held_out: dict[str, Any]
    train_rows: int
    held_out_rows: int
    refit: bool
    base_model: dict[str, str] | None
    quantization: str
    extra: dict[str, Any] = field(default_factory=dict)


def check_recipe(task: Task, settings: TrainSettings) -> None:
    """E740 when ``settings.recipe`` does not train ``task.kind``; E709/E746 for settings that do
    not apply to spacy-ner; the shared checks of :func:`stillhouse.train.run.check_settings`."""
    from stillhouse.train.run import RECIPES

    kind_recipes = KIND_RECIPES.get(task.kind)
    if kind_recipes is None:  # classify with a recipe of another kind
        raise fail(Errors.E740, recipe=settings.recipe, kind=task.kind, choices=", ".join(RECIPES))
    if settings.recipe not in kind_recipes:
        known = {recipe for recipes in KIND_RECIPES.values() for recipe in recipes}
        if settings.recipe not in known | set(RECIPES):
            raise fail(Errors.E701, recipe=settings.recipe, choices=", ".join(kind_recipes))
        raise fail(
            Errors.E740, recipe=settings.recipe, kind=task.kind, choices=", ".join(kind_recipes)
        )
    if settings.recipe == "spacy-ner":
        if settings.quantize is not None:
            raise fail(
                Errors.E709,
                quantize=settings.quantize,
                recipe="spacy-ner",
                detail="the spaCy pipeline is saved as trained (float32)",
            )
        if settings.c is not None:
            raise fail(
                Errors.E746, what="--c", recipe="spacy-ner", detail="it has no logistic head"
            )
        check_ngrams(settings, "spacy-ner")
        check_settings(replace(settings, recipe="linear"))
    else:
        check_settings(settings)


def train_structured(
    task: Task,
    out: str | Path,
    settings: TrainSettings,
    *,
    data: str | Path | None = None,
    from_store: bool = False,
    log: Log | None = None,
    progress: Callable[..., None] | None = None,
) -> TrainSummary:
    """Train a multilabel or span model (see the module docstring) and write ``out``."""
    say = log or (lambda message: None)
    check_recipe(task, settings)
    out, started, answers = read_training_data(task, out, settings, data, from_store, say)
    if task.kind == "multilabel":
        from stillhouse.train.multilabel import fit_multilabel

        fitted = fit_multilabel(task, answers, settings, say, progress)
    else:
        from stillhouse.train.spans import fit_spans

        fitted = fit_spans(task, answers, settings, say, progress)
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


def load_structured(folder: Path, card: dict[str, Any], *, threads: int | None = None) -> Any:
    """The Predictor of a multilabel or span model folder whose card is already checked."""
    kind = card["task"]["kind"]
    recipe = card["recipe"]
    if kind == "multilabel" and recipe in KIND_RECIPES["multilabel"]:
        from stillhouse.train.multilabel import MultilabelModel

        return MultilabelModel.load(folder, card, threads)
    if kind == "spans" and recipe in KIND_RECIPES["spans"]:
        from stillhouse.train.spans import SpanModel

        return SpanModel.load(folder, card)
    raise fail(
        Errors.E721,
        path=folder,
        detail=f"its recipe `{recipe}` for `{kind}` tasks is not one this version loads",
    )
