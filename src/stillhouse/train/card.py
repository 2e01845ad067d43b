"""The model card: ``card.json`` (machine-readable, read back by :mod:`stillhouse.train.load`)
and ``README.md`` (the same facts for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stillhouse.data.io import write_json
from stillhouse.train.load import CARD_FILE, README_FILE


def write_card(folder: Path, card: dict[str, Any]) -> None:
    write_json(folder / CARD_FILE, card)
    (folder / README_FILE).write_text(render_readme(card), encoding="utf-8")


def _interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.3f} (95% CI {value['low']:.3f}–{value['high']:.3f})"


def render_readme(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    data, calibration, metrics = card["training_data"], card["calibration"], card["held_out"]
    speed = card.get("speed") or {}
    base = card.get("base_model")
    mix = ", ".join(f"{source} {count}" for source, count in data["mix"].items())
    lines = [
        f"# {card['task']['name']} · {card['recipe']}",
        "",
        f"Trained by stillhouse {card['stillhouse_version']} on {card['created_at']}.",
        "Load it with `stillhouse predict --model THIS_FOLDER ...` or as "
        "`--system NAME=model:THIS_FOLDER` in `stillhouse evaluate`.",
        "",
        "| | |",
        "|---|---|",
        f"| recipe | `{card['recipe']}` |",
        f"| base model | {base['name'] + ' (' + base['license'] + ')' if base else 'none (trained from scratch)'} |",
        f"| quantization | {card['quantization']} |",
        f"| labels | {len(card['labels'])}: {', '.join(card['labels'][:20])}{' …' if len(card['labels']) > 20 else ''} |",
        f"| training data | {data['origin']}: {data['examples']} examples ({data['train_rows']} train + {data['held_out_rows']} held out), sha256 `{data['sha256'][:16]}` |",
        f"| label policy | `--labels {data['policy']}`, min LLM confidence {data['min_llm_confidence']:g}; sources: {mix} |",
        f"| seed | {card['seed']} |",
        f"| hyper-parameters | {', '.join(f'{k}={v}' for k, v in card['hyper_parameters'].items())} |",
        f"| calibration | temperature {calibration['temperature']:.3f}; held-out ECE {calibration['ece_before']:.3f} → {calibration['ece_after']:.3f} (10 equal-mass bins, n={calibration['held_out']}) |",
        f"| held-out accuracy | {_interval(metrics['accuracy'])}, n={metrics['n']} |",
        f"| held-out macro-F1 | {_interval(metrics['macro_f1'])} |",
        f"| size on disk | {card['size_bytes'] / 1e6:.1f} MB (model files) |",
    ]
    if speed:
        latency = speed["latency_ms_batch1"]
        lines.append(
            f"| CPU speed | p95 latency {latency['p95']:.1f} ms at batch 1 (median {latency['median']:.1f} ms), "
            f"{speed['throughput_per_s']:.0f} texts/s at batch {speed['throughput_batch_size']}; "
            f"{speed['threads']} threads on {speed['cpu']} |"
        )
    run = card.get("training_run")
    if run:
        resumed = (
            f", resumed from step {run['resumed_from_step']}"
            if run["resumed_from_step"] is not None
            else ""
        )
        lines.append(
            f"| training run | {run['steps']} of {run['total_steps']} steps, stopped by "
            f"{run['stopped']}{resumed}; best held-out state at step {run['best_step']} "
            f"(step 0 = linear probe) |"
        )
    lines += [
        f"| training time | {card['train_seconds']:.1f} s |",
        f"| model sha256 | `{card['model_sha256']}` |",
        "",
        "Held-out metrics are those of the model fitted without the held-out split (the temperature "
        "is fitted on the same split, so ECE after scaling is optimistic"
        + (
            "; the LoRA run also chose its best step on it, so they are optimistic too); "
            if run
            else "); "
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
