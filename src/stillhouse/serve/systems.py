"""The systems a server answers with: chosen by ``--system NAME=SOURCE:VALUE`` or task.toml's
``[serve.systems]``, checked before the server starts, opened with the worker's thread budget,
warmed up, versioned by content hash and described for ``GET /v1/systems``.

A spec is what ``evaluate --system`` takes after ``NAME=`` (:mod:`stillhouse.predictors`), but a
predictions file cannot be served (E800): it answers only the texts it holds. In
``[serve.systems]`` relative paths (model folders, ``.gguf`` files) are relative to the folder of
task.toml, so the section works from any working directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stillhouse import registry
from stillhouse.cascade import Cascade, open_cascade, parse_cascade
from stillhouse.errors import Errors, fail
from stillhouse.output_guard import Input
from stillhouse.predictors import Predictor, system_inputs
from stillhouse.task import Task

# What a warm-up prediction reads when the task has no fixed example to use.
WARM_UP_TEXT = "A short text to warm up the model."
_VERSION_DIGITS = 16


def served_specs(task: Task, given: Sequence[str]) -> dict[str, str]:
    """NAME → SOURCE:VALUE from ``--system NAME=SOURCE:VALUE`` arguments (paths as given), else
    from the task's ``[serve.systems]`` (paths relative to task.toml's folder); E801 for none.
    The first is the default system."""
    if given:
        specs: dict[str, str] = {}
        for argument in given:
            name, equals, spec = argument.partition("=")
            if not equals or not name.strip():
                detail = "it needs a NAME= before the source"
                raise fail(Errors.E502, spec=argument, detail=detail)
            if name.strip() in specs:
                raise fail(Errors.E517, name=name.strip())
            specs[name.strip()] = spec
        return specs
    if not task.serve.systems:
        raise fail(Errors.E801, path=task.path or "task.toml")
    return {
        name: resolve_paths(name, spec, task.directory) for name, spec in task.serve.systems.items()
    }


def resolve_paths(name: str, spec: str, base: Path) -> str:
    """``spec`` (of system ``name``) with its relative model folders and .gguf files made
    relative to ``base``."""
    source, _, value = spec.partition(":")
    if source == "model":
        return f"model:{_under(value, base)}"
    if source == "llm" and value.endswith(".gguf"):
        return f"llm:{_under(value, base)}"
    if source == "cascade":
        stages = []
        for stage in parse_cascade(f"{name}={spec}", value):
            resolved = resolve_paths(name, stage.name, base)
            threshold = "" if stage.threshold is None else f"@{stage.threshold!r}"
            stages.append(resolved + threshold)
        return "cascade:" + ",".join(stages)
    return spec


def _under(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def check_specs(specs: Mapping[str, str], task: Task) -> list[Input]:
    """Check every spec before the server starts, as evaluate checks its --system arguments
    (E502, E517, E539, E540; E800 for a predictions file), and every model folder as loading
    will (E720–E727: complete, unchanged, this format, the task's labels); returns what the
    systems read."""
    from stillhouse.train.load import read_card

    arguments = [f"{name}={spec}" for name, spec in specs.items()]
    for argument, spec in zip(arguments, specs.values(), strict=True):
        if spec.partition(":")[0] == "preds":
            raise fail(Errors.E800, spec=argument)
    inputs = system_inputs(arguments, task)
    for entry in inputs:
        if entry.folder:
            folder = entry.path
            card = read_card(folder)
            if list(card["labels"]) != task.label_names:
                raise fail(
                    Errors.E723,
                    path=folder,
                    found=", ".join(card["labels"]),
                    task=task.path or task.name,
                    expected=", ".join(task.label_names),
                )
    return inputs


def with_threads(task: Task, threads: int | None) -> Task:
    """The task with ``[llm].threads`` set to the worker's budget (None: as it is)."""
    if threads is None:
        return task
    return task.model_copy(update={"llm": task.llm.model_copy(update={"threads": threads})})


def open_system(name: str, spec: str, task: Task, threads: int | None = None) -> Predictor:
    """The Predictor for ``spec``, its runtimes held to ``threads`` intra-op threads: ONNX
    Runtime sessions through :func:`stillhouse.train.load_model`, llama.cpp through
    ``[llm].threads``; other sources open as their registry entry opens them."""
    source_name, _, value = spec.partition(":")
    threaded = with_threads(task, threads)
    if source_name == "model":
        from stillhouse.train import load_model

        return load_model(value, threads=threads, task=task)
    if source_name == "cascade":

        def open_stage(source: str, stage_value: str) -> Predictor:
            return open_system(f"{source}:{stage_value}", f"{source}:{stage_value}", task, threads)

        return open_cascade(f"{name}={spec}", value, threaded, open_stage)
    source = registry.system_sources.get(source_name)  # checked by check_specs
    return source.open(name, value, threaded)  # type: ignore[no-any-return]


def close_system(predictor: Predictor) -> None:
    close = getattr(predictor, "close", None)
    if callable(close):
        close()


def warm_up_text(task: Task) -> str:
    return task.examples[0].text if task.examples else WARM_UP_TEXT


def warm_up(predictor: Predictor, text: str) -> None:
    """One prediction through every part of the system (each stage of a cascade, whatever the
    thresholds would route), so the first request pays no lazy initialisation; a cascade's
    stage shares are not touched."""
    parts = (
        [stage.predictor for stage in predictor.stages] if isinstance(predictor, Cascade) else []
    )
    for part in parts or [predictor]:
        part.predict([text])


def version_of(description: Mapping[str, Any]) -> str:
    """A system's version: the first 16 hex digits of its content hash (the model's sha256 from
    its card, the LLM file's sha256, a cascade's hash of its stages and thresholds), else of
    its description."""
    found = description.get("sha256") or description.get("model_sha256")
    if not isinstance(found, str):
        stable = {k: v for k, v in description.items() if k not in _COUNTS}
        found = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
    return found[:_VERSION_DIGITS]


_COUNTS = ("texts", "answered_by", "abstained")


def describe_part(description: Mapping[str, Any], predictor: Any) -> dict[str, Any]:
    """What /v1/systems says about one model or LLM: kind, version, recipe, when it was trained
    and a summary of its card."""
    card = getattr(predictor, "card", None)
    summary: dict[str, Any] = {"kind": "llm" if description.get("kind") == "llm" else "model"}
    summary["version"] = version_of(description)
    if isinstance(card, dict):
        training = card.get("training_data") or {}
        summary.update(
            recipe=card.get("recipe"),
            trained_at=card.get("created_at"),
            card={
                "task": (card.get("task") or {}).get("name"),
                "base_model": card.get("base_model"),
                "quantization": card.get("quantization"),
                "size_bytes": card.get("size_bytes"),
                "model_sha256": card.get("model_sha256"),
                "training_examples": training.get("examples"),
                "label_sources": training.get("mix"),
                "held_out": _estimates(card.get("held_out") or {}),
                "calibration": {
                    key: value
                    for key, value in (card.get("calibration") or {}).items()
                    if isinstance(value, int | float | str) and key != "method"
                },
                "speed": card.get("speed"),
            },
        )
    else:
        summary.update(
            recipe=None,
            trained_at=None,
            card=None,
            llm={
                key: description.get(key)
                for key in ("model", "runtime", "method", "sha256", "size_bytes", "threads")
            },
        )
    return summary


def _estimates(held_out: Mapping[str, Any]) -> dict[str, Any]:
    """The held-out metrics' point estimates (``{"accuracy": 0.73, ...}``) and their ``n``."""
    found: dict[str, Any] = {}
    for key, value in held_out.items():
        if isinstance(value, dict) and "estimate" in value:
            found[key] = value["estimate"]
        elif key == "n":
            found[key] = value
    return found


def describe_system(predictor: Predictor) -> dict[str, Any]:
    """kind, version, recipe, trained_at, card (a summary) of a system; a cascade adds its
    ``stages`` (each described the same way, with its threshold and role)."""
    description = predictor.describe()
    if not isinstance(predictor, Cascade):
        return describe_part(description, predictor)
    stages = []
    for stage, described in zip(predictor.stages, description["stages"], strict=True):
        part = describe_part(described["description"], stage.predictor)
        stages.append(
            {"name": stage.name, "threshold": stage.threshold, "role": described["role"], **part}
        )
    return {
        "kind": "cascade",
        "version": version_of(description),
        "recipe": None,
        "trained_at": None,
        "card": None,
        "stages": stages,
        "abstain_below": predictor.stages[-1].threshold,
    }


def stage_names(predictor: Predictor) -> list[str]:
    """The names of a cascade's stages (empty for a single model)."""
    return [stage.name for stage in predictor.stages] if isinstance(predictor, Cascade) else []


def is_llm_stage(name: str) -> bool:
    """Whether a cascade stage (named SOURCE:VALUE) is an LLM."""
    return name.startswith("llm:")
