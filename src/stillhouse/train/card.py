"""The model card: ``card.json`` (machine-readable, read back by :mod:`stillhouse.train.load`)
and ``README.md`` (the same facts for people), for every task kind and recipe."""

from __future__ import annotations

import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse.data.io import write_json
from stillhouse.provenance import STILLHOUSE_VERSION, json_sha256, package_versions
from stillhouse.task import Task
from stillhouse.train.load import CARD_FILE, FORMAT, FORMAT_VERSION, MANIFEST_FILE, README_FILE

if TYPE_CHECKING:
    from stillhouse.train.settings import TrainSettings

_EXTRA_VERSIONS = ("onnx", "onnxruntime", "tokenizers", "safetensors", "scipy")


def model_card(
    task: Task,
    settings: TrainSettings,
    *,
    base_model: dict[str, str] | None,
    quantization: str,
    hyper_parameters: dict[str, Any],
    refit: bool,
    training_data: dict[str, Any],
    calibration: dict[str, Any],
    held_out: dict[str, Any],
    files: dict[str, dict[str, Any]],
    train_seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card's fields, in the order every model folder has them (``extra`` last)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stillhouse_version": STILLHOUSE_VERSION,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "task": {"name": task.name, "kind": task.kind, "sha256": task.fingerprint()},
        "labels": task.label_names,
        "recipe": settings.recipe,
        "base_model": base_model,
        "quantization": quantization,
        "hyper_parameters": hyper_parameters,
        "seed": settings.seed,
        "refit": refit,
        "training_data": training_data,
        "calibration": calibration,
        "held_out": held_out,
        "files": files,
        "model_sha256": json_sha256({name: entry["sha256"] for name, entry in files.items()}),
        "size_bytes": sum(entry["bytes"] for entry in files.values()),
        "train_seconds": train_seconds,
        "versions": versions(),
        **(extra or {}),
    }


def training_data(
    *,
    origin: str,
    sha256: str,
    examples: int,
    train_rows: int,
    held_out_rows: int,
    label_counts: dict[str, int],
    missing: list[str],
    mix: dict[str, int],
    settings: TrainSettings,
    from_store: bool,
    what: str,
    llm_weight: str,
) -> dict[str, Any]:
    """The card's ``training_data``: where the ``what``\\s (labels or answers) came from and how
    they were weighted (``llm_weight``: what an LLM one weighs); ``missing``: task labels
    without a single example."""
    return {
        "origin": origin,
        "sha256": sha256,
        "examples": examples,
        "train_rows": train_rows,
        "held_out_rows": held_out_rows,
        "label_counts": label_counts,
        "labels_without_examples": missing,
        "mix": mix,
        "policy": settings.labels if from_store else f"file ({what}s count as gold)",
        "min_llm_confidence": settings.min_llm_confidence,
        "weights": f"1 for gold and human {what}s, {llm_weight} for LLM {what}s",
    }


def versions() -> dict[str, str]:
    """stillhouse's package versions and the inference runtimes' (those installed)."""
    found = package_versions()
    for name in _EXTRA_VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_card(folder: Path, card: dict[str, Any]) -> None:
    write_json(folder / CARD_FILE, card)
    (folder / README_FILE).write_text(render_readme(card), encoding="utf-8")


def _interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.3f} (95% CI {value['low']:.3f}–{value['high']:.3f})"


def render_readme(card: dict[str, Any]) -> str:
    """The card as Markdown: the rows every model has, and those of its kind."""
    data = card["training_data"]
    kind = card["task"].get("kind", "classify")
    base = card.get("base_model")
    mix = ", ".join(f"{source} {count}" for source, count in data["mix"].items())
    tag = "" if kind == "classify" else f" · {kind}"
    lines = [
        f"# {card['task']['name']}{tag} · {card['recipe']}",
        "",
        f"Trained by stillhouse {card['stillhouse_version']} on {card['created_at']}.",
        "Load it with `stillhouse predict --model THIS_FOLDER ...` or as "
        "`--system NAME=model:THIS_FOLDER` in `stillhouse evaluate`.",
        "",
        "| | |",
        "|---|---|",
        f"| recipe | `{card['recipe']}`{'' if kind == 'classify' else f' ({kind})'} |",
        f"| base model | {base['name'] + ' (' + base['license'] + ')' if base else 'none (trained from scratch)'} |",
        f"| quantization | {card['quantization']} |",
        f"| labels | {len(card['labels'])}: {', '.join(card['labels'][:20])}{' …' if len(card['labels']) > 20 else ''} |",
        f"| training data | {data['origin']}: {data['examples']} examples ({data['train_rows']} train + {data['held_out_rows']} held out), sha256 `{data['sha256'][:16]}` |",
        f"| label policy | `--labels {data['policy']}`, min LLM confidence {data['min_llm_confidence']:g}; sources: {mix} |",
        f"| seed | {card['seed']} |",
        f"| hyper-parameters | {', '.join(f'{k}={v}' for k, v in card['hyper_parameters'].items())} |",
    ]
    quality = {"classify": _classify_rows, "multilabel": _multilabel_rows}.get(kind, _span_rows)
    lines += quality(card)
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
        lines.append(_lora_run_row(run) if kind == "classify" else _spacy_run_row(run))
    lines += [
        f"| training time | {card['train_seconds']:.1f} s |",
        f"| model sha256 | `{card['model_sha256']}` |",
        "",
        _held_out_note(kind, bool(run))
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
        f"Every file of this folder, this one included, is listed with its sha256 in "
        f"`{MANIFEST_FILE}`; loading refuses the folder if any differs, is missing or was added.",
        "",
    ]
    return "\n".join(lines)


def _classify_rows(card: dict[str, Any]) -> list[str]:
    calibration, metrics = card["calibration"], card["held_out"]
    return [
        f"| calibration | temperature {calibration['temperature']:.3f}; held-out ECE {calibration['ece_before']:.3f} → {calibration['ece_after']:.3f} (10 equal-mass bins, n={calibration['held_out']}) |",
        f"| held-out accuracy | {_interval(metrics['accuracy'])}, n={metrics['n']} |",
        f"| held-out macro-F1 | {_interval(metrics['macro_f1'])} |",
    ]


def _multilabel_rows(card: dict[str, Any]) -> list[str]:
    calibration, held = card["calibration"], card["held_out"]
    temperatures = calibration["temperature"].values()
    kept = calibration.get("not_fitted") or []
    kept_note = f" (T = 1, nothing to fit: {', '.join(kept)})" if kept else ""
    return [
        f"| calibration | {calibration['method']}; temperatures {min(temperatures):.3f}–{max(temperatures):.3f}{kept_note}; "
        f"held-out ECE over label decisions {calibration['ece_before']:.3f} → {calibration['ece_after']:.3f} "
        f"(10 equal-mass bins, n={calibration['held_out']} texts); threshold {calibration['threshold']:g} |",
        f"| held-out subset accuracy | {_interval(held['accuracy'])}, n={held['n']} |",
        f"| held-out micro-F1 | {_interval(held['micro_f1'])} |",
        f"| held-out macro-F1 | {_interval(held['macro_f1'])} |",
    ]


def _span_rows(card: dict[str, Any]) -> list[str]:
    held, calibration = card["held_out"], card["calibration"]
    lines = [
        f"| confidence | {calibration['method']}; slope {calibration['slope']:.3f}, bias "
        f"{calibration['bias']:.3f}; held-out ECE over predicted spans "
        f"{calibration['ece_before']:.3f} → {calibration['ece_after']:.3f} (10 equal-mass bins, "
        f"{calibration['spans']} spans, {calibration['right']} right, in "
        f"{calibration['held_out']} texts) |",
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
    return lines


def _lora_run_row(run: dict[str, Any]) -> str:
    resumed = (
        f", resumed from step {run['resumed_from_step']}"
        if run["resumed_from_step"] is not None
        else ""
    )
    return (
        f"| training run | {run['steps']} of {run['total_steps']} steps, stopped by "
        f"{run['stopped']}{resumed}; best held-out state at step {run['best_step']} "
        f"(step 0 = linear probe) |"
    )


def _spacy_run_row(run: dict[str, Any]) -> str:
    return (
        f"| training run | {run['epochs']} epoch(s), {run['steps']} updates, stopped by "
        f"{run['stopped']}; best held-out strict F1 {run['best_f1']:.3f} after epoch {run['best_epoch']} |"
    )


def _held_out_note(kind: str, stopped_on_held_out: bool) -> str:
    """What the held-out figures are worth, up to how the saved model was made."""
    if kind == "classify":
        return (
            "Held-out metrics are those of the model fitted without the held-out split (the "
            "temperature is fitted on the same split, so ECE after scaling is optimistic"
            + (
                "; the LoRA run also chose its best step on it, so they are optimistic too); "
                if stopped_on_held_out
                else "); "
            )
        )
    return "Held-out metrics are those of the model fitted without the held-out split" + (
        "; the temperatures were fitted on the same split, so ECE after scaling is optimistic; "
        if kind == "multilabel"
        else "; training stopped at the epoch best on that split, so they are optimistic; "
    )
