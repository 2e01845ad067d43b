"""Benchmark: the distillation story on banking77 — how close does a model trained on the LLM's
labels get to one trained on gold labels of the same texts?

One process, same machine:

1. A banking77 train sample (``--per-class`` texts per intent, shuffled with seed 0 — with 10
   per class it is bench/train.py's banking77-10shot set) is labelled by the LLM with
   ``stillhouse.annotate`` (Qwen2.5-0.5B, label scoring, default tolerance 0.05, zero-shot:
   examples/banking77/task.toml, no few-shot examples) into a workspace store that also holds
   the gold labels (never shown to the LLM). With ``--seed-per-class K --shots S`` the LLM is a
   few-shot teacher instead: only the first K texts per intent keep their gold label (the
   "seed" a team labels by hand), and each text's prompt shows its S nearest seed texts with
   their labels (annotate's ``shots``; a text never sees its own label). The other texts' gold
   labels stay out of the workspace; they only score the agreement and the gold student.
2. The teacher: the same LLM and method on ``--teacher-limit`` banking77 test texts (shuffled
   with seed 0: bench/annotate.py's sample), with the same seed and shots.
3. Students: `linear` and `encoder` (int8) trained with ``stillhouse.train`` from that store on
   (a) the LLM's labels (``--labels llm``, weighted by the LLM's probability), (b) the LLM's
   labels with ``--min-llm-confidence`` at two thresholds (the confidences that keep the LLM's
   most confident half and quarter), (c) the gold labels of the same texts (from a file); with
   a seed also (d) the seed's gold labels alone (the baseline the LLM's labels must beat) and
   (e) seed gold + the LLM's labels for the rest (``--labels best``), filtered by confidence at
   the same thresholds.
   Each is scored on the full banking77 test set (3,080).

Reported: accuracy and macro-F1 with 95% bootstrap CIs, ECE (10 equal-mass bins), the number
of training texts and how often their labels agree with gold, and each student's accuracy as
a share of the gold-label student's. The workspaces (LLM labels, cached LLM calls) and the test
embeddings live under ``~/.cache/stillhouse/bench/`` (``$STILLHOUSE_HOME/bench``), so a rerun
skips the LLM and a killed run resumes. Run with `nice -n 10`; prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    BANKING77,
    Progress,
    bench_cache_dir,
    cached_array,
    classification_scores,
    example_task_file,
    first_per_label,
    read_csv,
    score_cells,
    shuffled,
    table_head,
    write_csv,
)

from stillhouse.annotate import annotate
from stillhouse.data.store import Store
from stillhouse.evaluate.calibration import apply_temperature
from stillhouse.provenance import file_sha256
from stillhouse.task import Task, load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.labels import from_file, from_store
from stillhouse.train.recipes.parts.onnx_encoder import OnnxSentenceEncoder

MODEL = "qwen2.5-0.5b"
COLUMNS = ["id", "text", "category"]


def train_sample(per_class: int, max_texts: int | None) -> list[dict[str, str]]:
    """``per_class`` rows per intent of banking77 train after a seed-0 shuffle (bench/train.py's
    banking77-10shot rule), each with a stable id (its row in train.csv)."""
    rows = [row | {"id": f"train-{i}"} for i, row in enumerate(read_csv(BANKING77 / "train.csv"))]
    kept = first_per_label(shuffled(rows), per_class, label_of=lambda row: row["category"])
    sample = [{"id": r["id"], "text": r["text"], "category": r["category"]} for r in kept]
    return sample[:max_texts] if max_texts else sample


def test_sample(limit: int) -> list[dict[str, str]]:
    """bench/annotate.py's sample: banking77 test shuffled with seed 0, the first ``limit``."""
    rows = [row | {"id": f"test-{i}"} for i, row in enumerate(read_csv(BANKING77 / "test.csv"))]
    return [
        {"id": r["id"], "text": r["text"], "category": r["category"]}
        for r in shuffled(rows)[:limit]
    ]


def seeded(rows: list[dict[str, str]], per_class: int) -> list[dict[str, str]]:
    """``rows`` with the gold label kept on the first ``per_class`` rows of each intent only."""
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        taken[row["category"]] = taken.get(row["category"], 0) + 1
        kept.append(row if taken[row["category"]] <= per_class else row | {"category": ""})
    return kept


def workspace(name: str, rows: list[dict[str, str]]) -> tuple[Task, Path]:
    """A cached workspace (task.toml + sample.csv + store) for these exact rows."""
    key = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]
    folder = bench_cache_dir() / f"distill-{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(example_task_file("banking77"), folder / "task.toml")
    if not (folder / "sample.csv").is_file():
        write_csv(folder / "sample.csv", rows, COLUMNS)
    return load_task(folder / "task.toml"), folder / "sample.csv"


def label_with_llm(
    task: Task, sample: Path, threads: int, shots: int, unlabelled_only: bool = False
) -> dict[str, Any]:
    """Annotate (or resume) and return the run's speed: measured once, kept in run.json (a
    rerun reads the labels from the store and would otherwise time the cache)."""
    record = sample.parent / "run.json"
    progress = Progress("LLM labels " + sample.parent.name)
    summary = annotate(
        task,
        sample,
        model=MODEL,
        method="score",
        threads=threads,
        shots=shots,
        unlabelled_only=unlabelled_only,
        progress=progress,
    )
    previous = (
        json.loads(record.read_text()) if record.is_file() else {"annotated": 0, "seconds": 0}
    )
    done = {
        "annotated": previous["annotated"] + summary.annotated - summary.cache_hits,
        "seconds": previous["seconds"] + (summary.seconds if summary.annotated else 0.0),
        "annotator": summary.annotator,
    }
    record.write_text(json.dumps(done))
    return done


def llm_answers(task: Task, annotator: str) -> dict[str, tuple[str, dict[str, float]]]:
    with Store(task.store_path) as store:
        return {
            a.example_id: (str(a.answer), a.probs or {})
            for a in store.annotations(task.kind, annotator)
        }


def test_embeddings(texts: list[str], onnx_path: Path, tokenizer: Path, threads: int) -> np.ndarray:
    """Embeddings of the test texts by the int8 encoder every `encoder` model ships (cached)."""
    key = hashlib.sha256((file_sha256(onnx_path) + json.dumps(texts)).encode()).hexdigest()[:16]
    return cached_array(
        bench_cache_dir() / f"banking77-test-onnx-int8-{key}.npy",
        lambda: OnnxSentenceEncoder(onnx_path, tokenizer, threads).embed(texts, batch_size=64),
    )


def print_row(
    labels: str,
    system: str,
    n: object,
    agreement: str,
    evaluated: str,
    measured: dict[str, Any],
    share: float | None,
    note: str,
) -> None:
    print(
        f"| {labels} | {system} | {n} | {agreement} | {evaluated} | {score_cells(measured)} "
        f"| {'–' if share is None else f'{share:.2f}'} | {note} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--max-texts", type=int, default=None, help="cap the train sample (tries)")
    parser.add_argument("--teacher-limit", type=int, default=300)
    parser.add_argument("--recipes", default="linear,encoder")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--seed-per-class", type=int, default=0, help="gold labels kept per intent (0: all)"
    )
    parser.add_argument("--shots", type=int, default=0, help="nearest seed examples per prompt")
    args = parser.parse_args()
    if args.shots and not args.seed_per_class:
        parser.error("--shots needs --seed-per-class (the labelled seed the shots come from)")

    started = time.perf_counter()
    sample_rows = train_sample(args.per_class, args.max_texts)
    prefix = f"seed{args.seed_per_class}-shots{args.shots}-" if args.seed_per_class else ""
    workspace_rows = seeded(sample_rows, args.seed_per_class) if prefix else sample_rows
    task, sample = workspace(f"{prefix}train{args.per_class}", workspace_rows)
    gold_file = sample.parent / "gold.csv"
    write_csv(gold_file, sample_rows, COLUMNS)
    student_run = label_with_llm(task, sample, args.threads, args.shots)
    llm = llm_answers(task, student_run["annotator"])
    gold_of = {row["id"]: row["category"] for row in sample_rows}
    confidences = np.array([probs.get(answer, 0.0) for answer, probs in llm.values()])
    # the confidences that keep the most confident half and quarter of the LLM's labels
    thresholds = [float(np.quantile(confidences, q)) for q in (0.5, 0.75)]

    columns = {label: i for i, label in enumerate(task.label_names)}
    test_rows = read_csv(BANKING77 / "test.csv")
    test_texts = [row["text"] for row in test_rows]
    gold = np.array([columns[row["category"]] for row in test_rows])

    llm_accuracy = np.mean([llm[i][0] == gold_of[i] for i in llm])
    print(
        f"LLM labels on the {len(llm)} train texts agree with gold on {llm_accuracy:.3f}; "
        f"labelling speed {student_run['annotated'] / max(student_run['seconds'], 1e-9):.2f} "
        f"texts/s (first run); thresholds {', '.join(f'{t:.3f}' for t in thresholds)}.\n",
        flush=True,
    )
    print(
        *table_head(
            "training labels",
            "system",
            "train texts",
            "labels = gold",
            "evaluated on",
            "accuracy (95% CI)",
            "macro-F1 (95% CI)",
            "ECE",
            "accuracy / gold-label student",
            "note",
        ),
        sep="\n",
        flush=True,
    )
    # gold first, so every LLM-label row can be printed with its share as soon as it is done
    sources: list[tuple[str, str, float]] = [("gold labels (same texts)", "gold", 0.0)]
    sources.append(("LLM labels (all)", "llm", 0.0))
    if args.seed_per_class:
        seed = f"seed gold ({args.seed_per_class}/intent) + LLM labels"
        # the baseline the LLM's labels must beat: the hand-labelled seed alone (one text per
        # intent leaves no held-out split to calibrate on: train refuses it with E747)
        if args.seed_per_class >= 2:
            sources.append((f"seed gold only ({args.seed_per_class}/intent)", "seed", 0.0))
        sources.append((seed, "best", 0.0))
        sources += [(f"{seed}, confidence ≥ {t:.3f}", "best", t) for t in thresholds]
    else:
        sources += [(f"LLM labels, confidence ≥ {t:.3f}", "llm", t) for t in thresholds]
    gold_accuracy: dict[str, float] = {}
    test_vectors: np.ndarray | None = None
    for recipe in args.recipes.split(","):
        for name, policy, threshold in sources:
            training = (
                from_file(task, gold_file)
                if policy == "gold"
                else from_store(task, "gold" if policy == "seed" else policy, threshold)
            )
            agreement = np.mean(
                [
                    label == gold_of[i]
                    for i, label in zip(training.ids, training.labels, strict=True)
                ]
            )
            with tempfile.TemporaryDirectory(prefix="stillhouse-distill-") as tmp:
                out = Path(tmp) / "model"
                clock = time.perf_counter()
                settings = TrainSettings(
                    recipe=recipe,
                    labels="gold" if policy == "seed" else policy,
                    min_llm_confidence=threshold,
                    min_per_label=0,
                    threads=args.threads,
                    latency_texts=5,
                    throughput_texts=10,
                )
                if policy == "gold":
                    train(task, out, settings, data=gold_file)
                else:
                    train(task, out, settings, from_store=True)
                seconds = time.perf_counter() - clock
                model = load_model(out, threads=args.threads)
                if recipe == "encoder":
                    # every `encoder` model ships the same int8 encoder: embed the test set once
                    if test_vectors is None:
                        test_vectors = test_embeddings(
                            test_texts, out / "encoder.onnx", out / "tokenizer.json", args.threads
                        )
                    head = model.scorer.head  # type: ignore[attr-defined]
                    probs = apply_temperature(head.logits(test_vectors), model.temperature)
                else:
                    probs = model.probabilities(test_texts)
            measured = classification_scores(probs, gold)
            if policy == "gold":
                gold_accuracy[recipe] = measured["accuracy"].estimate
            print_row(
                name,
                recipe,
                len(training),
                f"{agreement:.3f}",
                f"{len(test_rows)} test texts",
                measured,
                measured["accuracy"].estimate / gold_accuracy[recipe],
                f"train {seconds:.0f} s",
            )

    if args.teacher_limit:
        teacher_rows = test_sample(args.teacher_limit)
        # a few-shot teacher sees the seed (its shots, not labelled again) beside the test texts
        seed_rows = [row for row in workspace_rows if row["category"]] if prefix else []
        unlabelled = [row | {"category": ""} for row in teacher_rows] if prefix else teacher_rows
        teacher_task, teacher_sample = workspace(
            f"{prefix}test{args.teacher_limit}", seed_rows + unlabelled
        )
        teacher_run = label_with_llm(
            teacher_task, teacher_sample, args.threads, args.shots, unlabelled_only=bool(prefix)
        )
        answers = llm_answers(teacher_task, teacher_run["annotator"])
        probs = np.array(
            [
                [answers[r["id"]][1].get(label, 0.0) for label in task.label_names]
                for r in teacher_rows
            ]
        )
        measured = classification_scores(
            probs, np.array([columns[r["category"]] for r in teacher_rows])
        )
        rate = teacher_run["annotated"] / teacher_run["seconds"] if teacher_run["seconds"] else 0
        print_row(
            f"— (the teacher: {MODEL}, label scoring"
            + (f", {args.shots} shots from the seed)" if args.shots else ")"),
            "LLM",
            "–",
            "–",
            f"{len(teacher_rows)} test texts",
            measured,
            None,
            f"{rate:.2f} texts/s",
        )
    print(f"\nwhole run {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
