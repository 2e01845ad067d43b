"""`stillhouse train`: labels → held-out split → fit → calibrate → measure → model folder.

The folder is written to a temporary sibling and renamed into place only once it is complete
and loads, so ``--out`` either holds a whole model or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.errors import Errors, fail
from stillhouse.provenance import json_sha256
from stillhouse.task import Task
from stillhouse.train import answers as answer_policy
from stillhouse.train import labels as label_policy
from stillhouse.train.calibrate import calibrate
from stillhouse.train.card import model_card, training_data
from stillhouse.train.contrastive import ContrastiveParams, fit_contrastive
from stillhouse.train.encoder import EncoderParams, fit_encoder, open_encoder
from stillhouse.train.export import BASE_LICENSE, BASE_MODEL, QUANTIZATIONS
from stillhouse.train.folder import write_model_folder
from stillhouse.train.linear import LinearParams, fit_linear, linear_params, params_to_json
from stillhouse.train.load import Scorer
from stillhouse.train.lora_encoder import LoraEncoderParams, fit_lora_encoder
from stillhouse.train.lora_llm import QUANTIZATIONS as LLM_QUANTIZATIONS
from stillhouse.train.lora_llm import LoraLlmParams, fit_lora_llm
from stillhouse.train.lora_loop import P, RunContext
from stillhouse.train.lora_loop import params_to_json as lora_params_to_json
from stillhouse.train.measure import held_out_metrics
from stillhouse.train.memory import (
    contrastive_bytes,
    encoder_bytes,
    lora_encoder_bytes,
    memory_check,
)
from stillhouse.train.split import stratified_holdout

RECIPES = ("linear", "encoder", "contrastive-encoder", "lora-encoder", "lora-llm")
# Recipes built on all-MiniLM-L6-v2 (base model in the card, ONNX encoder in the folder).
ENCODER_RECIPES = ("encoder", "contrastive-encoder", "lora-encoder")
# Recipes whose held-out split is not refitted on: their training uses it (early stopping) or
# costs too much to run twice (contrastive fine-tuning).
NO_REFIT = ("contrastive-encoder", "lora-encoder", "lora-llm")

Log = Callable[[str], None]
# progress(done, total) or, for the LoRA loop, progress(step, total, "loss 0.123")
Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a trained model besides the data (all recorded in the card)."""

    recipe: str = "linear"
    labels: str = "best"
    min_llm_confidence: float = 0.0
    min_per_label: int = 3
    holdout: float = 0.2
    seed: int = 0
    quantize: str | None = None
    c: float | None = None
    max_features: int | None = None
    # linear (and multilabel linear) only: n-gram ranges, None switches a family off
    word_ngrams: tuple[int, int] | None = LinearParams.word_ngrams
    char_ngrams: tuple[int, int] | None = LinearParams.char_ngrams
    refit: bool = True
    threads: int | None = None
    max_memory_gb: float | None = None
    latency_texts: int = 200
    throughput_texts: int = 1000
    # lora-encoder only: training bounds (None: the recipe's default epochs, no step/time cap)
    epochs: int | None = None
    max_steps: int | None = None
    max_minutes: float | None = None
    checkpoint_every: int | None = None


@dataclass(frozen=True)
class TrainSummary:
    path: str
    card: dict[str, Any] = field(repr=False)


def check_settings(settings: TrainSettings) -> None:
    """E701 recipe, E709 quantization, E708 numbers out of range, E403 label policy."""
    if settings.recipe not in RECIPES:
        raise fail(Errors.E701, recipe=settings.recipe, choices=", ".join(RECIPES))
    if settings.quantize is not None:
        if settings.recipe == "linear":
            raise fail(
                Errors.E709,
                quantize=settings.quantize,
                recipe="linear",
                detail="it has no dense network to quantize",
            )
        if settings.recipe == "lora-llm":
            if settings.quantize not in LLM_QUANTIZATIONS:
                raise fail(
                    Errors.E709,
                    quantize=settings.quantize,
                    recipe="lora-llm",
                    detail=f"use one of {', '.join(LLM_QUANTIZATIONS)} (llama.cpp quantizations)",
                )
        elif settings.quantize not in QUANTIZATIONS:
            detail = (
                "q8_0 and q4_k_m are for the lora-llm recipe"
                if settings.quantize in ("q8_0", "q4_k_m")
                else ""
            )
            raise fail(
                Errors.E709,
                quantize=settings.quantize,
                recipe=settings.recipe,
                detail=detail or f"use one of {', '.join(QUANTIZATIONS)}",
            )
    if settings.labels not in label_policy.LABEL_POLICIES:
        raise fail(
            Errors.E403,
            what="--labels policy",
            value=settings.labels,
            choices=", ".join(label_policy.LABEL_POLICIES),
        )
    checks = [
        ("--holdout", settings.holdout, 0 < settings.holdout <= 0.5, "a share in (0, 0.5]"),
        ("--min-per-label", settings.min_per_label, settings.min_per_label >= 0, "0 or more"),
        (
            "--min-llm-confidence",
            settings.min_llm_confidence,
            0 <= settings.min_llm_confidence <= 1,
            "between 0 and 1",
        ),
        ("--c", settings.c, settings.c is None or settings.c > 0, "positive"),
        ("--epochs", settings.epochs, settings.epochs is None or settings.epochs >= 1, "1 or more"),
        (
            "--max-steps",
            settings.max_steps,
            settings.max_steps is None or settings.max_steps >= 1,
            "1 or more",
        ),
        (
            "--max-minutes",
            settings.max_minutes,
            settings.max_minutes is None or settings.max_minutes > 0,
            "positive",
        ),
    ]
    for what, value, ok, expected in checks:
        if not ok:
            raise fail(Errors.E708, what=what, expected=expected, value=value)
    check_ngrams(settings)


def check_ngrams(settings: TrainSettings, recipe: str | None = None) -> None:
    """E708 for n-gram ranges that are not 1 ≤ low ≤ high or both families off; E746 for
    n-grams set for a recipe (``recipe``, default ``settings.recipe``) that reads none."""
    ranges = {"--word-ngrams": settings.word_ngrams, "--char-ngrams": settings.char_ngrams}
    for what, ngrams in ranges.items():
        if ngrams is not None and not (len(ngrams) == 2 and 1 <= ngrams[0] <= ngrams[1]):
            raise fail(
                Errors.E708, what=what, expected="LOW-HIGH with 1 ≤ LOW ≤ HIGH", value=ngrams
            )
    if settings.word_ngrams is None and settings.char_ngrams is None:
        raise fail(
            Errors.E708,
            what="--word-ngrams/--char-ngrams",
            expected="a range for at least one of them",
            value="none",
        )
    recipe = recipe or settings.recipe
    defaults = (LinearParams.word_ngrams, LinearParams.char_ngrams)
    if recipe != "linear" and (settings.word_ngrams, settings.char_ngrams) != defaults:
        raise fail(
            Errors.E746,
            what="--word-ngrams/--char-ngrams",
            recipe=recipe,
            detail="only the linear recipe reads n-grams",
        )


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
    if task.kind != "classify" or settings.recipe == "spacy-ner":
        # multilabel and span tasks (and the span recipe named for a classify task: E740)
        from stillhouse.train.structured import train_structured

        return train_structured(
            task, out, settings, data=data, from_store=from_store, log=log, progress=progress
        )
    check_settings(settings)
    out, started, training = read_training_data(task, out, settings, data, from_store, say)

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
    fit, hyper_parameters = _recipe(
        task, training.texts, y_index, weights, settings, say, progress, checkpoints
    )
    refit = settings.refit and settings.recipe not in NO_REFIT

    say(f"fitting on {len(train_rows)} examples, calibrating on {len(held_rows)} held out")
    held_model = fit(np.array(train_rows))
    held_logits = held_model.logits([training.texts[i] for i in held_rows])
    calibration = calibrate(held_logits, y_index[held_rows])
    from stillhouse.evaluate.calibration import apply_temperature

    metrics = held_out_metrics(
        apply_temperature(held_logits, calibration.temperature),
        y_index[held_rows],
        seed=settings.seed,
    )
    final = fit(np.arange(len(training))) if refit else held_model
    train_seconds = time.perf_counter() - started

    base_model = (
        {"name": BASE_MODEL, "license": BASE_LICENSE}
        if settings.recipe in ENCODER_RECIPES
        else None
    )
    if settings.recipe == "lora-llm":  # the base GGUF: name, file, sha256, license
        base_model = final.base_model  # type: ignore[attr-defined]
    run_info = getattr(final, "run_info", None)

    def card_of(files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return model_card(
            task,
            settings,
            base_model=base_model,
            quantization=hyper_parameters.get("quantize", "none"),
            hyper_parameters=hyper_parameters,
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


def read_training_data(
    task: Task,
    out: str | Path,
    settings: TrainSettings,
    data: str | Path | None,
    from_store: bool,
    say: Log,
) -> tuple[Path, float, Any]:
    """After the settings are checked, for every task kind: E707 unless exactly one of ``data``
    and ``from_store``, E711 if ``out`` exists; then the training set, read from the file or
    chosen from the store by the label policy and checked (a :class:`labels.TrainingSet` for
    classify, an :class:`answers.AnswerSet` otherwise). Returns ``out`` as a path, the time
    training started (for the card) and the set."""
    if (data is None) == (not from_store):
        raise fail(Errors.E707, got="both" if data is not None else "neither")
    out = Path(out)
    if out.exists():
        raise fail(Errors.E711, path=out)
    started = time.perf_counter()
    classify = task.kind == "classify"
    policy: Any = label_policy if classify else answer_policy
    check = label_policy.check_training_set if classify else answer_policy.check_answers
    what = "label" if classify else "answer"
    if data is not None:
        chosen = policy.from_file(task, data)
    else:
        chosen = policy.from_store(task, settings.labels, settings.min_llm_confidence)
    check(chosen, task, settings.min_per_label)
    say(f"{len(chosen)} examples from {chosen.origin}; {what} sources: {chosen.mix}")
    return out, started, chosen


def _recipe(
    task: Task,
    texts: list[str],
    y_index: np.ndarray,
    weights: np.ndarray,
    settings: TrainSettings,
    say: Log,
    progress: Progress | None,
    checkpoints: Path,
) -> tuple[Callable[[np.ndarray], Scorer], dict[str, Any]]:
    """A function fitting the recipe on some rows (indices into ``texts``), and the recipe's
    hyper-parameters. The encoder embeds every text once here; both fits reuse the vectors."""
    n_labels = len(task.label_names)
    check = memory_check(settings)

    if settings.recipe == "linear":
        linear = linear_params(settings)

        def fit_rows_linear(rows: np.ndarray) -> Scorer:
            chosen = [texts[i] for i in rows]
            return fit_linear(chosen, y_index[rows], n_labels, weights[rows], linear, check)

        return fit_rows_linear, params_to_json(linear)

    run = RunContext(checkpoints, settings.seed, settings.threads, say, progress)
    if settings.recipe == "contrastive-encoder":
        contrastive = ContrastiveParams(
            max_steps=settings.max_steps or ContrastiveParams.max_steps,
            max_minutes=settings.max_minutes,
            c=settings.c or ContrastiveParams.c,
            quantize=settings.quantize or ContrastiveParams.quantize,
        )
        check(*contrastive_bytes(texts, n_labels, contrastive))

        def fit_rows_contrastive(rows: np.ndarray) -> Scorer:
            return fit_contrastive(texts, y_index, weights, n_labels, rows, contrastive, run)

        return fit_rows_contrastive, asdict(contrastive)

    if settings.recipe == "lora-encoder":
        lora = _lora_params(LoraEncoderParams, settings, head_c=settings.c)
        check(*lora_encoder_bytes(len(texts), n_labels, lora))

        def fit_rows_lora(rows: np.ndarray) -> Scorer:
            held = np.setdiff1d(np.arange(len(texts)), rows)
            return fit_lora_encoder(texts, y_index, weights, n_labels, rows, held, lora, run)

        return fit_rows_lora, lora_params_to_json(lora)

    if settings.recipe == "lora-llm":
        llm = _lora_params(LoraLlmParams, settings, score_tolerance=task.llm.score_tolerance)

        def fit_rows_llm(rows: np.ndarray) -> Scorer:
            held = np.setdiff1d(np.arange(len(texts)), rows)
            return fit_lora_llm(task, texts, y_index, weights, rows, held, llm, run, check)

        return fit_rows_llm, lora_params_to_json(llm)

    params = EncoderParams(c=settings.c or EncoderParams.c, quantize=settings.quantize or "int8")
    check(*encoder_bytes(len(texts), n_labels, params))
    say(f"embedding {len(texts)} texts with all-MiniLM-L6-v2 (ONNX, {params.quantize})")
    encoder = open_encoder(params, settings.threads)
    features = encoder[0].embed(texts, batch_size=params.batch_size, progress=progress)

    def fit_rows_encoder(rows: np.ndarray) -> Scorer:
        return fit_encoder(features[rows], y_index[rows], n_labels, weights[rows], params, encoder)

    return fit_rows_encoder, params_to_json(params)


def _lora_params(kind: type[P], settings: TrainSettings, **own: Any) -> P:
    """A LoRA recipe's hyper-parameters: its defaults, with the bounds and quantization the
    settings give, and ``own`` recipe settings where they are not None."""
    defaults = kind()
    return kind(
        quantize=settings.quantize or defaults.quantize,  # type: ignore[call-arg]
        epochs=settings.epochs or defaults.epochs,
        max_steps=settings.max_steps,
        max_minutes=settings.max_minutes,
        checkpoint_every=settings.checkpoint_every or defaults.checkpoint_every,
        **{name: value for name, value in own.items() if value is not None},
    )
