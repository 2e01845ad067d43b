"""An LLM prompt as an evaluate system (`NAME=llm:MODEL`): the same answers annotate gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stillhouse.annotate import annotate
from stillhouse.data.store import Store
from stillhouse.task import load_task

pytestmark = pytest.mark.slow


def test_an_llm_system_is_evaluated_with_probabilities_and_matches_annotate(
    tmp_path: Path,
    nusax_rows: list[dict[str, Any]],
    write_rows: Callable[..., Path],
    write_task: Callable[..., Path],
    run_cli: Callable[..., Any],
) -> None:
    rows = nusax_rows[:12]
    write_rows(tmp_path / "test.jsonl", rows)
    task_path = write_task(tmp_path / "task")
    perfect = [
        {
            "id": r["id"],
            "label": r["label"],
            "probs": {
                label: float(label == r["label"]) for label in ("positive", "neutral", "negative")
            },
        }
        for r in rows
    ]
    write_rows(tmp_path / "perfect.jsonl", perfect)

    result = run_cli(
        tmp_path,
        *("evaluate", "--task", str(task_path), "--test", "test.jsonl", "--bootstrap", "200"),
        *("--system", "small=llm:smollm2-135m", "--system", "oracle=preds:perfect.jsonl"),
        *("--out", "report"),
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "report" / "results.json").read_text(encoding="utf-8"))
    small = document["systems"]["small"]
    assert small["has_probabilities"] is True
    assert small["description"]["kind"] == "llm"
    assert small["description"]["runtime"].startswith("llama.cpp")
    assert document["systems"]["oracle"]["metrics"]["accuracy"]["estimate"] == 1.0
    assert len(document["comparisons"]) == 1

    task = load_task(task_path)
    summary = annotate(task, tmp_path / "test.jsonl")
    with Store(task.store_path) as store:
        answers = {a.example_id: a.answer for a in store.annotations(task.kind, summary.annotator)}
    gold = {str(r["id"]): r["label"] for r in rows}
    expected = [int(answers[i] == gold[i]) for i in document["data"]["ids"]]
    assert small["correct"] == expected
