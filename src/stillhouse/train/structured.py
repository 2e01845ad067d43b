"""`stillhouse train` for multilabel and span tasks: answers → held-out split → fit → calibrate
→ measure → model folder, the classify flow of :mod:`stillhouse.train.run` with other heads.

- multilabel, recipes ``linear`` and ``encoder``: one-vs-rest heads (:mod:`.multilabel`);
- spans, recipe ``spacy-ner``: spaCy NER fine-tuned from en_core_web_sm (:mod:`.spans`).

The folder is written to a temporary sibling, loaded back, measured and renamed into place; its
card has the classify card's fields (the calibration and held-out entries hold what fits the
kind) and hashes every file, those in sub-folders too (a spaCy pipeline is a folder).
"""

from __future__ import annotations

import datetime
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import stillhouse
from stillhouse.data.records import answer_to_json
from stillhouse.errors import Errors, fail
from stillhouse.provenance import file_sha256, json_sha256
from stillhouse.task import Task
from stillhouse.train import answers as answer_policy
from stillhouse.train.card import _interval
from stillhouse.train.load import CARD_FILE, FORMAT, FORMAT_VERSION, README_FILE, load_model
from stillhouse.train.measure import measure_speed
from stillhouse.train.run import TrainSettings, TrainSummary, _versions, check_settings

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
    kind_recipes = KIND_RECIPES.get(task.kind)
    if kind_recipes is None:  # classify with a recipe of another kind
        raise fail(
            Errors.E740,
            recipe=settings.recipe,
            kind=task.kind,
            choices="linear, encoder, lora-encoder",
        )
    if settings.recipe not in kind_recipes:
        known = {recipe for recipes in KIND_RECIPES.values() for recipe in recipes}
        from stillhouse.train.run import PLANNED_RECIPES, RECIPES

        if settings.recipe not in known | set(RECIPES) | set(PLANNED_RECIPES):
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
    if (data is None) == (not from_store):
        raise fail(Errors.E707, got="both" if data is not None else "neither")
    out = Path(out)
    if out.exists():
        raise fail(Errors.E711, path=out)
    started = time.perf_counter()
    if data is not None:
        answers = answer_policy.from_file(task, data)
    else:
        answers = answer_policy.from_store(task, settings.labels, settings.min_llm_confidence)
    answer_policy.check_answers(answers, task, settings.min_per_label)
    say(f"{len(answers)} examples from {answers.origin}; answer sources: {answers.mix}")
    if task.kind == "multilabel":
        from stillhouse.train.multilabel import fit_multilabel

        fitted = fit_multilabel(task, answers, settings, say, progress)
    else:
        from stillhouse.train.spans import fit_spans

        fitted = fit_spans(task, answers, settings, say, progress)
    train_seconds = time.perf_counter() - started

    temporary = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    temporary.mkdir(parents=True)
    try:
        fitted.model.save(temporary)
        files = {
            path.relative_to(temporary).as_posix(): {
                "sha256": file_sha256(path),
                "bytes": path.stat().st_size,
            }
            for path in sorted(temporary.rglob("*"))
            if path.is_file()
        }
        card = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stillhouse_version": stillhouse.__version__,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "task": {"name": task.name, "kind": task.kind, "sha256": task.fingerprint()},
            "labels": task.label_names,
            "recipe": settings.recipe,
            "base_model": fitted.base_model,
            "quantization": fitted.quantization,
            "hyper_parameters": fitted.hyper_parameters,
            "seed": settings.seed,
            "refit": fitted.refit,
            "training_data": {
                "origin": answers.origin,
                "sha256": json_sha256(
                    [
                        answers.ids,
                        answers.texts,
                        [answer_to_json(a, task.kind) for a in answers.answers],
                        answers.weights,
                    ]
                ),
                "examples": len(answers),
                "train_rows": fitted.train_rows,
                "held_out_rows": fitted.held_out_rows,
                "label_counts": answers.label_counts(task),
                "labels_without_examples": [
                    label for label, n in answers.label_counts(task).items() if n == 0
                ],
                "mix": answers.mix,
                "policy": settings.labels if from_store else "file (answers count as gold)",
                "min_llm_confidence": settings.min_llm_confidence,
                "weights": "1 for gold and human answers, the LLM's confidence for LLM answers",
            },
            "calibration": fitted.calibration,
            "held_out": fitted.held_out,
            "files": files,
            "model_sha256": json_sha256({name: entry["sha256"] for name, entry in files.items()}),
            "size_bytes": sum(entry["bytes"] for entry in files.values()),
            "train_seconds": train_seconds,
            "versions": _versions(),
            **fitted.extra,
        }
        write_structured_card(temporary, card)
        say("measuring CPU latency and throughput of the saved model")
        loaded = load_model(temporary, threads=settings.threads)
        card["speed"] = measure_speed(
            loaded.predict,
            answers.texts,
            latency_texts=settings.latency_texts,
            throughput_texts=settings.throughput_texts,
            threads=settings.threads,
        )
        write_structured_card(temporary, card)
        if out.exists():
            raise fail(Errors.E711, path=out)
        temporary.rename(out)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return TrainSummary(str(out), card)


def write_structured_card(folder: Path, card: dict[str, Any]) -> None:
    from stillhouse.data.io import write_json

    write_json(folder / CARD_FILE, card)
    (folder / README_FILE).write_text(render_structured_readme(card), encoding="utf-8")


def render_structured_readme(card: dict[str, Any]) -> str:
    """The card of a multilabel or span model as Markdown."""
    data, calibration, held = card["training_data"], card["calibration"], card["held_out"]
    kind = card["task"]["kind"]
    base = card.get("base_model")
    mix = ", ".join(f"{source} {count}" for source, count in data["mix"].items())
    lines = [
        f"# {card['task']['name']} · {kind} · {card['recipe']}",
        "",
        f"Trained by stillhouse {card['stillhouse_version']} on {card['created_at']}.",
        "Load it with `stillhouse predict --model THIS_FOLDER ...` or as "
        "`--system NAME=model:THIS_FOLDER` in `stillhouse evaluate`.",
        "",
        "| | |",
        "|---|---|",
        f"| recipe | `{card['recipe']}` ({kind}) |",
        f"| base model | {base['name'] + ' (' + base['license'] + ')' if base else 'none (trained from scratch)'} |",
        f"| quantization | {card['quantization']} |",
        f"| labels | {len(card['labels'])}: {', '.join(card['labels'][:20])}{' …' if len(card['labels']) > 20 else ''} |",
        f"| training data | {data['origin']}: {data['examples']} examples ({data['train_rows']} train + {data['held_out_rows']} held out), sha256 `{data['sha256'][:16]}` |",
        f"| label policy | `--labels {data['policy']}`, min LLM confidence {data['min_llm_confidence']:g}; sources: {mix} |",
        f"| seed | {card['seed']} |",
        f"| hyper-parameters | {', '.join(f'{k}={v}' for k, v in card['hyper_parameters'].items())} |",
    ]
    if kind == "multilabel":
        temperatures = calibration["temperature"].values()
        kept = calibration.get("not_fitted") or []
        kept_note = f" (T = 1, nothing to fit: {', '.join(kept)})" if kept else ""
        lines += [
            f"| calibration | {calibration['method']}; temperatures {min(temperatures):.3f}–{max(temperatures):.3f}{kept_note}; "
            f"held-out ECE over label decisions {calibration['ece_before']:.3f} → {calibration['ece_after']:.3f} "
            f"(10 equal-mass bins, n={calibration['held_out']} texts); threshold {calibration['threshold']:g} |",
            f"| held-out subset accuracy | {_interval(held['accuracy'])}, n={held['n']} |",
            f"| held-out micro-F1 | {_interval(held['micro_f1'])} |",
            f"| held-out macro-F1 | {_interval(held['macro_f1'])} |",
        ]
    else:
        lines += [
            f"| confidence | {calibration['method']} |",
            f"| held-out strict F1 (micro) | {_interval(held['micro_f1'])}, n={held['n']} texts |",
            f"| held-out strict P / R | {_interval(held['precision'])} / {_interval(held['recall'])} |",
            f"| held-out partial F1 | {_interval(held['partial_f1'])} |",
        ]
        for label, scores in held["per_label"].items():
            strict = scores["strict"]
            lines.append(
                f"| {label} (held out) | strict P {strict['precision']:.3f} R {strict['recall']:.3f} "
                f"F1 {strict['f1']:.3f}, partial F1 {scores['partial']['f1']:.3f}, "
                f"{strict['gold']} gold spans |"
            )
    lines.append(f"| size on disk | {card['size_bytes'] / 1e6:.1f} MB (model files) |")
    speed = card.get("speed") or {}
    if speed:
        latency = speed["latency_ms_batch1"]
        lines.append(
            f"| CPU speed | p95 latency {latency['p95']:.1f} ms at batch 1 (median {latency['median']:.1f} ms), "
            f"{speed['throughput_per_s']:.0f} texts/s at batch {speed['throughput_batch_size']}; "
            f"{speed['threads']} threads on {speed['cpu']} |"
        )
    run = card.get("training_run")
    if run:
        lines.append(
            f"| training run | {run['epochs']} epoch(s), {run['steps']} updates, stopped by "
            f"{run['stopped']}; best held-out strict F1 {run['best_f1']:.3f} after epoch {run['best_epoch']} |"
        )
    lines += [
        f"| training time | {card['train_seconds']:.1f} s |",
        f"| model sha256 | `{card['model_sha256']}` |",
        "",
        "Held-out metrics are those of the model fitted without the held-out split"
        + (
            "; the temperatures were fitted on the same split, so ECE after scaling is optimistic; "
            if kind == "multilabel"
            else "; training stopped at the epoch best on that split, so they are optimistic; "
        )
        + (
            "the saved model was then refitted on all examples with the same settings."
            if card.get("refit")
            else "the saved model is that model."
        ),
        "",
        "Versions: "
        + ", ".join(f"{name} {version}" for name, version in card["versions"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


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
