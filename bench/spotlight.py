"""Spotlighting's cost on clean accuracy: the task's LLM prompt with ``[llm] spotlight`` off,
``delimit`` and ``datamark`` on the same clean test texts (issue 16).

For each dataset, the first N test texts after the seed-0 shuffle are labelled by the LLM with
label scoring (the example task's prompt, zero-shot, ``[guard] injection = "off"`` so that every
mode answers every text); each mode's accuracy is paired with ``off``'s on the same texts
(difference, 95% paired-bootstrap interval, exact McNemar p). What spotlighting does against
attacks is bench/guard.py's end-to-end part.

    .venv/bin/python bench/spotlight.py [--nusax 75] [--banking77 75] [--model qwen2.5-0.5b]
"""

from __future__ import annotations

import argparse
import time
import tomllib
from typing import Any

import numpy as np
from _common import (
    BANKING77,
    NUSAX,
    example_task_file,
    machine_description,
    read_pairs,
    shuffled,
    table_head,
)

MODES = ("off", "delimit", "datamark")
RESAMPLES = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nusax", type=int, default=75, help="NusaX English test texts")
    parser.add_argument("--banking77", type=int, default=75, help="banking77 test texts")
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    datasets = {
        "nusax-en": ("nusax-sentiment-en", NUSAX / "english" / "test.csv", "label", args.nusax),
        "banking77": ("banking77", BANKING77 / "test.csv", "category", args.banking77),
    }
    lines = [
        f"Machine: {machine_description()}. Model: {args.model}, label scoring, zero-shot.",
        "",
        *table_head(
            "dataset", "texts", "spotlight", "accuracy", "Δ vs off (95% CI)", "McNemar p", "s/text"
        ),
    ]
    for name, (example, path, label_field, limit) in datasets.items():
        if limit <= 0:
            continue
        rows = shuffled(read_pairs(path, label_field))[:limit]
        texts = [text for text, _ in rows]
        gold = [label for _, label in rows]
        correct: dict[str, np.ndarray] = {}
        predictor = None
        try:
            for mode in MODES:
                task = spotlit_task(example, args.model, args.threads, mode)
                if predictor is None:  # one model load per dataset; the prompt is the task's
                    from stillhouse.llm.predictor import LLMPredictor

                    predictor = LLMPredictor(task, args.model)
                predictor.task = task
                started = time.perf_counter()
                answers = [str(p.answer) for p in predictor.predict(texts)]
                seconds = (time.perf_counter() - started) / len(texts)
                correct[mode] = np.array(
                    [a == g for a, g in zip(answers, gold, strict=True)], dtype=int
                )
                lines.append(row(name, len(texts), mode, correct, seconds))
                print(lines[-1], flush=True)
        finally:
            if predictor is not None:
                predictor.close()
    print("\n".join(lines))


def spotlit_task(example: str, model: str, threads: int, mode: str) -> Any:
    """The example's task with ``[llm] spotlight = mode`` and no guard screening."""
    from stillhouse.task import parse_task

    path = example_task_file(example)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("llm", {}).update(spotlight=mode, threads=threads, model=model)
    data["guard"] = {"injection": "off"}
    return parse_task(data, path)


def row(name: str, n: int, mode: str, correct: dict[str, np.ndarray], seconds: float) -> str:
    from stillhouse.evaluate.paired import mcnemar_exact

    accuracy = correct[mode].mean()
    if mode == "off":
        delta = p_value = "–"
    else:
        diff = correct[mode] - correct["off"]
        rng = np.random.default_rng(0)
        resampled = diff[rng.integers(0, n, size=(RESAMPLES, n))].mean(axis=1)
        low, high = np.percentile(resampled, [2.5, 97.5])
        delta = f"{diff.mean():+.3f} ({low:+.3f} to {high:+.3f})"
        p_value = f"{mcnemar_exact(correct[mode], correct['off']).p_value:.3f}"
    return f"| {name} | {n} | {mode} | {accuracy:.3f} | {delta} | {p_value} | {seconds:.2f} |"


if __name__ == "__main__":
    main()
