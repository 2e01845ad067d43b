"""Benchmark: the value of review order — do a few reviewed labels, chosen well, beat many noisy ones?

A simulated reviewer who always answers with the gold label works through `stillhouse review`'s
own queue (:func:`stillhouse.review.queue.build_queue`, the code the page uses) over a pool of
training texts the embedded LLM has labelled:

1. the LLM (``qwen2.5-0.5b``, label scoring, no shots) labels the pool once; the labels are
   kept in a store under the bench cache (a rerun resumes or reuses them);
2. the audit (its ``label_issues`` check, cleanlab over cross-validated probabilities of the
   LLM's labels) fills the ``audit`` queue, as `stillhouse audit --annotator` does;
3. for each order — ``auto`` (the audit's likely label errors first, then the rest by
   uncertainty), ``uncertain`` (the margin between the LLM's top two probabilities, smallest
   first) and ``random`` (the queue's seeded pseudo-random order; seeds 0–2) — and each budget
   B, the first B texts of the queue get the gold label and the rest keep the LLM's;
4. a `linear` and an `encoder` student are trained on those labels (stillhouse's own `train`)
   and scored on the dataset's test split: accuracy with a bootstrap 95% interval, and the
   paired difference to the random order (seed 0) at the same B on the same test texts;
5. the human-only baseline: the same B random texts with their gold labels and no LLM labels.

Near duplicates are not grouped (one review = one text). The output is a markdown table per
dataset and an SVG plot of accuracy against B (``--svg``).

Run: ``.venv/bin/python bench/review_order.py [--datasets banking77,nusax-en] [--pool 1000]
[--budgets 0,50,100,200,500] [--recipes linear,encoder] [--label-only]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    BANKING77,
    NUSAX,
    bench_cache_dir,
    classification_scores,
    example_task_file,
    machine_description,
    read_csv,
    shuffled,
    table_head,
    write_csv,
)
from distill import label_with_llm

MODEL = "qwen2.5-0.5b"
ORDERS = ("auto", "uncertain", "random")
RANDOM_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Dataset:
    """A classify dataset: its example task, label column, pool rows and test rows."""

    name: str
    example: str
    label_column: str
    pool: list[dict[str, str]]  # id, text, gold
    test: list[dict[str, str]]  # text, gold


def load_dataset(name: str, pool_size: int) -> Dataset:
    """``banking77``: the first ``pool_size`` train texts after the seed-0 shuffle, the whole
    test split (3,080); ``nusax-en``: NusaX English train (500) and test (400)."""
    if name == "banking77":
        rows = [
            row | {"id": f"train-{i}"} for i, row in enumerate(read_csv(BANKING77 / "train.csv"))
        ]
        pool = [
            {"id": r["id"], "text": r["text"], "gold": r["category"]}
            for r in shuffled(rows)[:pool_size]
        ]
        test = [
            {"text": r["text"], "gold": r["category"]} for r in read_csv(BANKING77 / "test.csv")
        ]
        return Dataset(name, "banking77", "category", pool, test)
    if name == "nusax-en":
        folder = NUSAX / "english"
        pool = [
            {"id": f"train-{i}", "text": r["text"], "gold": r["label"]}
            for i, r in enumerate(read_csv(folder / "train.csv"))
        ][:pool_size]
        test = [{"text": r["text"], "gold": r["label"]} for r in read_csv(folder / "test.csv")]
        return Dataset(name, "nusax-sentiment-en", "label", pool, test)
    raise SystemExit(f"unknown dataset {name!r}: banking77 or nusax-en")


def task_copy(dataset: Dataset, folder: Path) -> Any:
    """``folder``/task.toml, a copy of the dataset's example task (so ``folder`` has its own
    store)."""
    from stillhouse.task import load_task

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(example_task_file(dataset.example), folder / "task.toml")
    return load_task(folder / "task.toml")


def labelling_workspace(dataset: Dataset) -> tuple[Any, Path]:
    """The cached workspace where the LLM labels the pool: task.toml, pool.csv (id and text only:
    no gold reaches the store, so the queue treats every text as unreviewed) and the store."""
    key = hashlib.sha256(json.dumps(dataset.pool, sort_keys=True).encode()).hexdigest()[:12]
    folder = bench_cache_dir() / f"review-order-{dataset.name}-{key}"
    task = task_copy(dataset, folder)
    pool = folder / "pool.csv"
    if not pool.is_file():
        write_csv(pool, [{"id": r["id"], "text": r["text"]} for r in dataset.pool], ["id", "text"])
    return task, pool


def fill_audit_queue(task: Any, pool: Path, annotator: str) -> int:
    """Run the audit's label-issue check over the LLM's labels; it writes the ``audit`` queue.
    Returns how many texts it flagged."""
    from stillhouse.audit.run import AuditSettings, run_audit

    report = run_audit(
        task,
        pool,
        annotator=annotator,
        settings=AuditSettings(checks=("label_issues",)),
        write_queue=True,
    )
    return len(report.review_queue)


def queue_order(task: Any, order: str, seed: int = 0) -> list[str]:
    """The example ids in the order `stillhouse review --queue ORDER` shows them."""
    from stillhouse.data.store import Store
    from stillhouse.review.queue import build_queue

    with Store(task.store_path) as store:
        return build_queue(task, store, order, seed=seed, similar_threshold=None).ids()


def llm_answers(task: Any, annotator: str) -> dict[str, str]:
    from stillhouse.data.store import Store

    with Store(task.store_path) as store:
        return {a.example_id: str(a.answer) for a in store.annotations(task.kind, annotator)}


def train_and_score(
    dataset: Dataset, labels: dict[str, str], recipe: str, threads: int
) -> dict[str, Any] | str:
    """Train ``recipe`` on the pool texts ``labels`` names (id -> label) and score it on the
    test split; a refusal of `train` (too few texts) comes back as its message."""
    from stillhouse.errors import StillhouseError
    from stillhouse.train import TrainSettings, load_model, train

    rows = [
        {"id": r["id"], "text": r["text"], dataset.label_column: labels[r["id"]]}
        for r in dataset.pool
        if r["id"] in labels
    ]
    with tempfile.TemporaryDirectory(prefix="stillhouse-review-order-") as tmp:
        task = task_copy(dataset, Path(tmp))
        data = Path(tmp) / "train.csv"
        write_csv(data, rows, ["id", "text", dataset.label_column])
        settings = TrainSettings(
            recipe=recipe, min_per_label=0, threads=threads, latency_texts=5, throughput_texts=10
        )
        try:
            train(task, Path(tmp) / "model", settings, data=data)
        except StillhouseError as error:
            return error.message
        model = load_model(Path(tmp) / "model", threads=threads)
        probs = model.probabilities([r["text"] for r in dataset.test])
        columns = {label: i for i, label in enumerate(task.label_names)}
    gold = np.array([columns[r["gold"]] for r in dataset.test])
    return classification_scores(probs, gold)


def paired_to(reference: dict[str, Any], other: dict[str, Any]) -> tuple[float, float, float]:
    """Accuracy of ``other`` − ``reference`` on the same test texts, with the percentile interval
    of 1,000 paired bootstrap resamples."""
    from stillhouse.evaluate.bootstrap import resample_indices
    from stillhouse.evaluate.paired import paired_bootstrap

    a, b = other["correct"].astype(float), reference["correct"].astype(float)
    indices = resample_indices(len(a), 1000, 0)
    result = paired_bootstrap(a[indices].mean(axis=1), b[indices].mean(axis=1), a.mean() - b.mean())
    return result.difference, result.low, result.high


def cell(measured: dict[str, Any] | str | None) -> str:
    if measured is None:
        return "–"
    if isinstance(measured, str):
        return "train refuses"
    a = measured["accuracy"]
    return f"{a.estimate:.3f} ({a.low:.3f}–{a.high:.3f})"


def diff_cell(reference: Any, measured: Any) -> str:
    if not isinstance(reference, dict) or not isinstance(measured, dict):
        return "–"
    d, low, high = paired_to(reference, measured)
    mark = " ✓" if low > 0 else (" ✗" if high < 0 else "")
    return f"{d * 100:+.1f} ({low * 100:+.1f} to {high * 100:+.1f}){mark}"


def run_dataset(dataset: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    task, pool = labelling_workspace(dataset)
    run = label_with_llm(
        task, pool, args.threads, shots=0
    )  # bench/distill.py's: resumable, timed once
    if args.label_only:
        return {}
    answers = llm_answers(task, run["annotator"])
    gold = {r["id"]: r["gold"] for r in dataset.pool}
    # texts the injection screen ([guard], default route) kept from the LLM have no LLM label:
    # they wait in the review queue `injection` and train only once reviewed
    agreement = float(np.mean([answers[i] == gold[i] for i in answers]))
    flagged = fill_audit_queue(task, pool, run["annotator"])
    orders = {order: queue_order(task, order) for order in ORDERS if order != "random"}
    orders |= {f"random-{seed}": queue_order(task, "random", seed) for seed in RANDOM_SEEDS}
    budgets = [b for b in args.budgets if b <= len(dataset.pool)]
    rate = run["annotated"] / run["seconds"] if run["seconds"] else float("nan")
    print(
        f"\n### {dataset.name}: pool {len(dataset.pool)} texts, test {len(dataset.test)}\n\n"
        f"LLM labels agree with gold on {agreement:.3f} of the {len(answers)} texts it labelled "
        f"({len(gold) - len(answers)} kept from it by the injection screen; {rate:.2f} texts/s "
        f"on the first run); the audit flagged {flagged} as likely label errors.\n",
        flush=True,
    )
    for name, ids in orders.items():
        wrong = [answers.get(i) != gold[i] for i in ids]
        caught = ", ".join(f"B={b}: {sum(wrong[:b])}" for b in budgets if b)
        print(f"- LLM labels fixed by the first B reviews in the `{name}` order: {caught}")
    print()
    results: dict[str, dict[str, Any]] = {}
    for recipe in args.recipes:
        print(
            *table_head(
                "student",
                "B (reviews)",
                "LLM labels only (B=0) / auto",
                "uncertain",
                "random (seed 0)",
                "random seeds 1, 2",
                "auto − random (95% CI)",
                "uncertain − random",
                "human only (B gold, no LLM)",
                "LLM + B reviews (auto) − human only",
            ),
            sep="\n",
            flush=True,
        )
        for budget in budgets:
            row: dict[str, Any] = {}
            for name, ids in orders.items():
                if budget == 0 and name != "auto":
                    continue  # with no review every order trains on the same labels
                reviewed = set(ids[:budget])
                labels = {i: gold[i] if i in reviewed else answers.get(i) for i in gold}
                labels = {i: label for i, label in labels.items() if label is not None}
                row[name] = train_and_score(dataset, labels, recipe, args.threads)
            if budget:
                first = orders["random-0"][:budget]
                row["human"] = train_and_score(
                    dataset, {i: gold[i] for i in first}, recipe, args.threads
                )
            results[f"{recipe}-{budget}"] = row
            print(
                f"| {recipe} | {budget} | {cell(row.get('auto'))} | {cell(row.get('uncertain'))} "
                f"| {cell(row.get('random-0'))} "
                f"| {cell(row.get('random-1'))}, {cell(row.get('random-2'))} "
                f"| {diff_cell(row.get('random-0'), row.get('auto'))} "
                f"| {diff_cell(row.get('random-0'), row.get('uncertain'))} "
                f"| {cell(row.get('human'))} | {diff_cell(row.get('human'), row.get('auto'))} |",
                flush=True,
            )
        print()
    return {"agreement": agreement, "results": results, "budgets": budgets}


def svg_plot(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> None:
    """One panel per dataset/student: test accuracy against B for each order (a plain SVG)."""
    colours = {"auto": "#1b6ac9", "uncertain": "#e07b00", "random": "#777777", "human": "#2a9d3c"}
    width, height, pad = 330, 230, 40
    panels = list(curves.items())
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * len(panels)}" '
        f'height="{height + 30}" font-family="sans-serif" font-size="11">'
    ]
    for p, (title, lines) in enumerate(panels):
        x0 = p * width
        xs = sorted({b for line in lines.values() for b, _ in line})
        ys = [a for line in lines.values() for _, a in line]
        low, high = min(ys) - 0.02, max(ys) + 0.02
        span_x = max(xs[-1] - xs[0], 1)

        def at(
            b: int,
            a: float,
            x0: int = x0,
            first: int = xs[0],
            span_x: int = span_x,
            low: float = low,
            high: float = high,
        ) -> str:
            x = x0 + pad + (b - first) / span_x * (width - 2 * pad)
            y = 20 + (1 - (a - low) / (high - low)) * (height - pad)
            return f"{x:.1f},{y:.1f}"

        parts.append(f'<text x="{x0 + pad}" y="14" font-weight="bold">{title}</text>')
        parts.append(
            f'<line x1="{x0 + pad}" y1="{height - 20}" x2="{x0 + width - pad}" '
            f'y2="{height - 20}" stroke="#333"/>'
        )
        for b in xs:
            x = at(b, low).split(",")[0]
            parts.append(f'<text x="{x}" y="{height - 6}" text-anchor="middle">{b}</text>')
        for a in np.linspace(low, high, 4):
            y = at(xs[0], a).split(",")[1]
            parts.append(f'<text x="{x0 + 4}" y="{y}">{a:.2f}</text>')
        for i, (name, line) in enumerate(lines.items()):
            points = " ".join(at(b, a) for b, a in sorted(line))
            colour = colours.get(name, "#000")
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
            )
            parts.append(
                f'<text x="{x0 + width - pad - 60}" y="{height - 60 + 12 * i}" fill="{colour}">{name}</text>'
            )
    parts.append(f'<text x="10" y="{height + 22}">x: reviews B; y: test accuracy</text></svg>')
    path.write_text("\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="banking77,nusax-en")
    parser.add_argument("--pool", type=int, default=1000, help="pool size (nusax-en has 500)")
    parser.add_argument("--budgets", default="0,50,100,200,500")
    parser.add_argument("--recipes", default="linear,encoder")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--label-only", action="store_true", help="only run (or resume) the LLM pass"
    )
    parser.add_argument("--svg", type=Path, default=None, help="write the accuracy-against-B plot")
    args = parser.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.recipes = args.recipes.split(",")
    started = time.perf_counter()
    print(f"{machine_description()}\n", flush=True)
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for name in args.datasets.split(","):
        found = run_dataset(load_dataset(name, args.pool), args)
        for key, row in found.get("results", {}).items():
            recipe, budget = key.rsplit("-", 1)
            lines = curves.setdefault(f"{name}, {recipe}", {})
            for order in ("auto", "uncertain", "random-0", "human"):
                measured = row.get(order) if int(budget) else row.get("auto")
                if order == "human" and not int(budget):
                    continue
                if isinstance(measured, dict):
                    lines.setdefault(order.split("-")[0], []).append(
                        (int(budget), measured["accuracy"].estimate)
                    )
    if args.svg and curves:
        svg_plot(curves, args.svg)
    print(f"\nwhole run {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
