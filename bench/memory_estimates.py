"""Benchmark: E710 memory estimates against the memory a real training run takes.

One process per recipe run, same machine: the recipe's estimate (stillhouse.train.memory, as
``train`` computes it) beside the peak resident memory of a whole ``train()`` call above the
memory before it (stillhouse.evaluate.efficiency.PeakMemory: the kernel's high-water mark on
Linux). Libraries are imported before measuring, so the peak is the run's own; for spacy-ner it
includes loading en_core_web_sm (~40 MB), which the estimate does not count (it is loaded when
the estimate is made). Runs:

- spacy-ner on presidio-research synthetic PII texts 0–399 (4 entity types, 3 epochs);
- contrastive-encoder on NusaX English train (500 texts), 40 contrastive steps.

Prints a markdown table. Run alone: `OMP_NUM_THREADS=2 .venv/bin/python bench/memory_estimates.py`.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from _common import add_test_helpers_to_path, table_head

add_test_helpers_to_path()
from structured_data import presidio_spans, task_text  # noqa: E402
from train_data import NUSAX_TASK, nusax_train, write_task  # noqa: E402

from stillhouse.data.io import write_jsonl  # noqa: E402
from stillhouse.errors import StillhouseError  # noqa: E402
from stillhouse.evaluate.efficiency import PeakMemory  # noqa: E402
from stillhouse.task import load_task  # noqa: E402
from stillhouse.train import TrainSettings, train  # noqa: E402

TYPES = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION")


def estimate(task_path: Path, data: Path, settings: TrainSettings) -> str:
    """The estimate as E710 states it (a budget of 1 kB makes every run refuse and say it)."""
    refused = TrainSettings(**{**settings.__dict__, "max_memory_gb": 1e-6})
    try:
        train(load_task(task_path), data.parent / "refused", refused, data=data)
    except StillhouseError as error:
        found = re.search(r"would need about ([\d.]+ [MG]B)", error.message)
        if found:
            return found.group(1)
    raise SystemExit("the run was not refused: no estimate")


def measure(name: str, task_text_: str, rows: list[dict], settings: TrainSettings) -> None:
    folder = Path(tempfile.mkdtemp(prefix="stillhouse-memory-"))
    task_path = write_task(folder, task_text_)
    data = folder / "train.jsonl"
    write_jsonl(data, rows)
    counted = estimate(task_path, data, settings)
    with PeakMemory() as memory:
        train(load_task(task_path), folder / "model", settings, data=data)
    print(f"| {name} | {len(rows)} texts | {counted} | {memory.peak_delta / 1e6:,.0f} MB |")


def main() -> None:
    import setfit  # noqa: F401
    import spacy  # noqa: F401
    import torch  # noqa: F401

    print(
        *table_head("recipe", "data", "estimate (E710)", "measured peak above the start"), sep="\n"
    )
    small = {"latency_texts": 5, "throughput_texts": 20}
    measure(
        "spacy-ner, 3 epochs",
        task_text("pii", "spans", "spans", TYPES),
        presidio_spans(0, 400, TYPES),
        TrainSettings(recipe="spacy-ner", epochs=3, **small),  # type: ignore[arg-type]
    )
    measure(
        "contrastive-encoder, 40 steps",
        NUSAX_TASK,
        nusax_train(500),
        TrainSettings(recipe="contrastive-encoder", max_steps=40, **small),  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
