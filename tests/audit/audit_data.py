"""Real data for the audit tests: samples of ../shared/datasets and task files that map them."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO.parent / "shared" / "datasets"
BANKING77_TASK = REPO / "examples" / "banking77" / "task.toml"
NUSAX_TASK = REPO / "examples" / "nusax-sentiment-en" / "task.toml"

Rows = list[dict[str, Any]]


def dataset_file(*parts: str) -> Path:
    path = DATASETS.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing (the shared datasets folder is absent)")
    return path


def banking77_rows(count: int, *, seed: int = 0, split: str = "train") -> Rows:
    """``count`` random rows ``{"id", "text", "category"}`` of banking77, fixed by ``seed``."""
    with dataset_file("banking77", f"{split}.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    picked = random.Random(seed).sample(range(len(rows)), count)
    return [{"id": f"b{i}", **rows[i]} for i in sorted(picked)]


def nusax_rows(language: str, split: str = "train", count: int | None = None) -> Rows:
    """NusaX sentiment rows ``{"id", "text", "label"}`` of one language, in file order."""
    path = dataset_file("nusax_senti", language, f"{split}.csv")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [{**row, "id": f"{language[:3]}-{row['id']}"} for row in csv.DictReader(handle)]
    return rows[:count] if count is not None else rows


def presidio_records(count: int) -> list[dict[str, Any]]:
    path = dataset_file("presidio_pii", "synth_dataset_v2.json")
    return json.loads(path.read_text(encoding="utf-8"))[:count]


def write_jsonl(path: Path, rows: Rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def copy_task(source: Path, folder: Path, extra: str = "") -> Path:
    """``source`` task.toml copied into ``folder`` (so its store lives there), plus ``extra``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "task.toml"
    target.write_text(source.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return target
