"""Benchmark: label scoring vs. generate-then-parse vs. grammar-constrained generation.

Same model, same prompts, same texts, one process, side by side: 300 banking77 test texts
(77 labels) and 300 NusaX English test texts (3 labels), with the embedded Qwen2.5-0.5B and
SmolLM2-135M. Reports examples/s, accuracy with a 95% interval, macro-F1, the share of invalid
outputs, ECE (label scoring only: the other methods give no probabilities), and the share of
the machine's plain prompt-processing speed that label scoring reaches on its new tokens.

Run: .venv/bin/python bench/annotate.py [--limit 300] [--models qwen2.5-0.5b,smollm2-135m]
Appends a dated table to bench/RESULTS.md.

``bench/annotate.py --shortlists [--datasets ...] [--systems ...] [--seeds ...] [--limit N]``
runs the many-label section instead (label shortlists and retrieved demonstrations, banking77
and CLINC150; see annotate_shortlists.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    BANKING77,
    NUSAX,
    ROOT,
    example_task_file,
    machine_description,
    read_csv,
    shuffled,
    table_head,
    write_csv,
)
from sklearn.metrics import f1_score

from stillhouse.annotate import annotate
from stillhouse.data.store import Store
from stillhouse.evaluate.calibration import expected_calibration_error
from stillhouse.llm.backend import BackendSettings, open_backend
from stillhouse.task import load_task

# (label in the table, annotate method, label-scoring tolerance)
VARIANTS = (
    ("score (tolerance 0.05, default)", "score", 0.05),
    ("score, tolerance 0.001", "score", 1e-3),
    ("generate", "generate", None),
    ("constrained", "constrained", None),
)


def datasets(workdir: Path, limit: int) -> dict[str, tuple[Path, Path]]:
    """name -> (task.toml, sample csv), both in ``workdir``."""
    out = {}
    banking = read_csv(BANKING77 / "test.csv")
    nusax = read_csv(NUSAX / "english" / "test.csv")
    for name, rows, example in (
        ("banking77", banking, "banking77"),
        ("nusax-en", nusax, "nusax-sentiment-en"),
    ):
        folder = workdir / name
        folder.mkdir(parents=True)
        (folder / "task.toml").write_text(example_task_file(example).read_text())
        write_csv(folder / "sample.csv", shuffled(rows)[:limit])
        out[name] = (folder / "task.toml", folder / "sample.csv")
    return out


def prompt_speed(backend, tokens: int = 512, repeats: int = 3) -> float:
    """Plain prompt processing, tokens/s: decode a prompt of ``tokens`` tokens from scratch."""
    text = " ".join(["The customer wrote to the bank about a card payment."] * 60)
    ids = backend._tokenize(text)[:tokens]
    best = 0.0
    for _ in range(repeats):
        backend.llm.reset()
        started = time.perf_counter()
        backend.llm.eval(ids)  # llama-cpp-python's own context: 512-token micro-batches
        best = max(best, len(ids) / (time.perf_counter() - started))
    backend.llm.reset()
    return best


def run(limit: int, models: list[str]) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = datasets(Path(tmp), limit)
        for model in models:
            backend = open_backend(model, BackendSettings(threads=os.cpu_count(), n_ctx=4096))
            limit_tps = prompt_speed(backend)
            for name, (task_path, sample) in data.items():
                task = load_task(task_path)
                for variant, method, tolerance in VARIANTS:
                    if tolerance is not None:
                        backend.tolerance = tolerance
                    before = backend.tokens_processed
                    summary = annotate(
                        task, sample, model=model, method=method, use_cache=False, backend=backend
                    )
                    new_tokens = backend.tokens_processed - before
                    with Store(task.store_path) as store:
                        mine = {
                            a.example_id: a for a in store.annotations(task.kind, summary.annotator)
                        }
                        examples = store.examples(task.kind)
                    gold = [str(e.gold) for e in examples]
                    predicted = [
                        str(mine[e.id].answer)
                        if not mine[e.id].info.get("invalid")
                        else "<invalid>"
                        for e in examples
                    ]
                    macro_f1 = f1_score(
                        gold, predicted, labels=task.label_names, average="macro", zero_division=0
                    )
                    ece = None
                    if method == "score":
                        confidence = np.array([max(mine[e.id].probs.values()) for e in examples])
                        correct = np.array(
                            [g == p for g, p in zip(gold, predicted, strict=True)], dtype=float
                        )
                        ece = expected_calibration_error(confidence, correct)
                    share = (
                        (new_tokens / summary.seconds) / limit_tps if method == "score" else None
                    )
                    rows.append(
                        {
                            "model": model,
                            "dataset": name,
                            "method": variant,
                            "examples_per_s": summary.examples_per_second,
                            "accuracy": summary.accuracy,
                            "ci": summary.accuracy_interval,
                            "macro_f1": macro_f1,
                            "invalid": summary.invalid / summary.examples,
                            "ece": ece,
                            "limit_tps": limit_tps,
                            "share_of_limit": share,
                            "new_tokens_per_example": new_tokens / summary.examples
                            if method == "score"
                            else None,
                        }
                    )
                    print(json.dumps(rows[-1], default=float), flush=True)
                    # fresh store per method and model: no cross-method cache or resume effects
                    os.remove(task.store_path)
            backend.close()
    return render(rows, limit, models)


def render(rows: list[dict], limit: int, models: list[str]) -> str:
    machine = machine_description()
    lines = [
        f"## annotate: label scoring vs. generate-then-parse vs. constrained ({datetime.date.today()})",
        "",
        f"Machine: {machine}. Command: `.venv/bin/python bench/annotate.py --limit {limit} --models {','.join(models)}`.",
        f"{limit} test texts per dataset (shuffled, seed 0), zero-shot prompt from the example task.toml, llama.cpp threads = cores.",
        "",
        *table_head(
            "model",
            "dataset",
            "method",
            "examples/s",
            "vs generate",
            "accuracy (95% CI)",
            "macro-F1",
            "invalid",
            "ECE",
        ),
    ]
    for row in rows:
        generate = next(
            r
            for r in rows
            if r["model"] == row["model"]
            and r["dataset"] == row["dataset"]
            and r["method"] == "generate"
        )
        low, high = row["ci"]
        ece = f"{row['ece']:.3f}" if row["ece"] is not None else "–"
        lines.append(
            f"| {row['model']} | {row['dataset']} | {row['method']} | {row['examples_per_s']:.2f} | "
            f"{row['examples_per_s'] / generate['examples_per_s']:.2f}× | {row['accuracy']:.3f} ({low:.3f}–{high:.3f}) | "
            f"{row['macro_f1']:.3f} | {row['invalid']:.1%} | {ece} |"
        )
    lines += [
        "",
        "Label scoring against the plain prompt-processing limit (new tokens decoded per example, at the measured rate):",
        "",
    ]
    lines += table_head(
        "model",
        "dataset",
        "method",
        "prompt tokens/s (limit)",
        "new tokens per example",
        "share of limit",
    )
    for row in rows:
        if row["share_of_limit"] is not None:
            lines.append(
                f"| {row['model']} | {row['dataset']} | {row['method']} | {row['limit_tps']:.0f} | {row['new_tokens_per_example']:.0f} | {row['share_of_limit']:.0%} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    if "--shortlists" in sys.argv:  # the many-label section: label shortlists (its own flags)
        from annotate_shortlists import main as shortlists

        shortlists([a for a in sys.argv[1:] if a != "--shortlists"])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--models", default="qwen2.5-0.5b,smollm2-135m")
    parser.add_argument("--no-write", action="store_true", help="Print the table only.")
    args = parser.parse_args()
    table = run(args.limit, args.models.split(","))
    print(table)
    if not args.no_write:
        results = ROOT / "bench" / "RESULTS.md"
        previous = (
            results.read_text() if results.exists() else "# Benchmark results\n\nNewest first.\n\n"
        )
        head, _, rest = previous.partition("\n## ")
        results.write_text(head.rstrip() + "\n\n" + table + ("\n## " + rest if rest else ""))


if __name__ == "__main__":
    main()
