"""Prompt-injection detector: recall at 1% false positives, ROC AUC and latency per text.

Data: the test split of ``stillhouse.guard.injection_corpus`` — held-out attack families (the
templates never trained on: fake assistant turns, delimiter escapes, authority impersonation,
hex/ROT13/reversed/spaced encodings; BIPIA's test-split text and code attacks) put at the start,
middle or end of held-out texts (banking77 test, NusaX English test, BIPIA test e-mails not among
its train ones, WNUT17 dev posts, Presidio sentences of templates not trained on), next to the
same texts clean. Per task: recall at 1% FPR
(the threshold that flags at most 1% of that task's clean texts), ROC AUC, and recall and
false-positive rate at the shipped threshold (one for all tasks, chosen on the valid split).

Latency: ``Detector.scan([text])`` one text at a time (batch 1, one thread) on 300 texts per
task, clean and attacked alternating, after 20 warm-up calls; throughput: batches of 256.

Anchors (published, not rerun here: their weights are not on this machine): Meta Prompt Guard 2
86M, 97.5% recall at 1% FPR on its own evaluation set; ProtectAI deberta-v3-base-prompt-injection
v2 (llm-guard's default scanner) caught 24% of an unseen synthetic set; llm-guard's scanner
~100–200 ms per text on CPU.

End to end (``--part end-to-end``): ``evaluate(..., redteam=N)`` on N seeded test texts of
banking77 and NusaX English, each attacked once (held-out families and BIPIA's test split, a
wrong target label named; :mod:`stillhouse.evaluate.redteam`), for: the embedded Qwen2.5-0.5B
alone (``[guard] injection = "off"``), with ``[llm] spotlight`` datamark and delimit, alone
behind the guard (``route``), a ``linear`` student, and the cascade student → LLM without and
with the guard. Attack success rate, flip rate and clean accuracy with 95% bootstrap intervals.
The LLM's answer to a text is computed once per spotlight mode and reused by the systems that
send it the same text (same model, prompt and text: the same answer; llama.cpp label scoring is
deterministic), so the guarded systems and the cascades cost no extra LLM calls.

Run: ``.venv/bin/python bench/guard.py`` (prints Markdown tables; ``--part detector`` or
``--part end-to-end`` for one; ``--attacks N`` texts per dataset, default 150; ``--detector
NAME|DIR`` measures the other shipped detector, ``encoder-ngrams``, or a detector folder in place
of the default one).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT / "src"))

from stillhouse.guard.injection import (  # noqa: E402
    held_out_report,
    shipped_detector,
)
from stillhouse.guard.injection_corpus import build_corpus  # noqa: E402

LATENCY_TEXTS = 300
WARM_UP = 20


def latency_ms(detector, texts: list[str]) -> np.ndarray:
    for text in texts[:WARM_UP]:
        detector.scan([text])
    times = []
    for text in texts:
        started = time.perf_counter()
        detector.scan([text])
        times.append((time.perf_counter() - started) * 1000)
    return np.array(times)


def detector_part() -> None:
    detector = shipped_detector()
    rows = build_corpus(DATASETS, "test")
    report = held_out_report(detector, rows)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"shipped threshold {detector.threshold:.4f}\n")
    print(
        "| task | attacked / clean | ROC AUC | recall at 1% FPR | recall / FPR at shipped "
        "threshold | p50 / p95 ms per text | texts/s at batch 256 |"
    )
    print("|---|---|---|---|---|---|---|")
    for task, figures in report["per_task"].items():
        mine = [row for row in rows if row["source"] == task]
        attacked = [row["text"] for row in mine if row["label"] == "injection"]
        clean = [row["text"] for row in mine if row["label"] != "injection"]
        mixed = [text for pair in zip(clean, attacked, strict=False) for text in pair]
        times = latency_ms(detector, mixed[:LATENCY_TEXTS])
        texts = [row["text"] for row in mine]
        started = time.perf_counter()
        for start in range(0, len(texts), 256):
            detector.scores(texts[start : start + 256])
        rate = len(texts) / (time.perf_counter() - started)
        flagged = [s >= detector.threshold for s in detector.scores(attacked)]
        false = [s >= detector.threshold for s in detector.scores(clean)]
        print(
            f"| {task} | {figures['attacked']} / {figures['clean']} | {figures['roc_auc']:.4f} | "
            f"{figures['recall_at_1pct_fpr']:.3f} | {np.mean(flagged):.3f} / {np.mean(false):.4f} "
            f"| {np.median(times):.2f} / {np.percentile(times, 95):.2f} | {rate:,.0f} |"
        )
    print(
        f"| all | {report['attacked']} / {report['clean']} | {report['roc_auc']:.4f} | | "
        f"{report['recall']:.3f} / {report['false_positive_rate']:.4f} | | |"
    )
    print("\nrecall per held-out family at the shipped threshold:")
    for family, recall in report["recall_per_family"].items():
        print(f"- {family}: {recall:.3f}")
    print("\nfalse-positive rate per clean source at the shipped threshold:")
    for source, rate in report["false_positive_rate_per_source"].items():
        print(f"- {source}: {rate:.4f}")


# --- end to end: evaluate --redteam on the systems a team would ship --------------------------

EXAMPLES = ROOT / "examples"
LLM = "qwen2.5-0.5b"
# The student answers a text when its top probability is at least the quantile ROUTED of its
# confidences on held-out training texts: about this share of texts goes on to the LLM.
ROUTED = 0.2


def _llm_class():
    """LLMPredictor whose answers are memoised per (spotlight, text): every system sending the
    LLM the same text under the same prompt reuses the one answer (see the module docstring)."""
    from stillhouse.llm.predictor import LLMPredictor

    class MemoLLMPredictor(LLMPredictor):
        answers: ClassVar[dict[tuple[str, str], Any]] = {}
        calls: ClassVar[int] = 0

        def _answer(self, prompts, texts):  # type: ignore[no-untyped-def]
            mode = self.task.llm.spotlight
            todo = [i for i, text in enumerate(texts) if (mode, text) not in self.answers]
            if todo:
                MemoLLMPredictor.calls += len(todo)
                fresh = super()._answer([prompts[i] for i in todo], [texts[i] for i in todo])
                for i, answer in zip(todo, fresh, strict=True):
                    self.answers[(mode, texts[i])] = answer
            return [self.answers[(mode, text)] for text in texts]

    return MemoLLMPredictor


def _rows(dataset: str, split: str) -> list[dict[str, str]]:
    if dataset == "banking77":
        path = DATASETS / "banking77" / f"{split}.csv"
    else:
        path = DATASETS / "nusax_senti" / "english" / f"{split}.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = "category" if dataset == "banking77" else "label"
    return [
        {"id": row.get("id") or f"{split}-{i}", "text": row["text"], "label": row[key]}
        for i, row in enumerate(rows)
    ]


def _task_file(dataset: str, folder: Path) -> Path:
    source = EXAMPLES / ("banking77" if dataset == "banking77" else "nusax-sentiment-en")
    text = (source / "task.toml").read_text(encoding="utf-8")
    if dataset == "banking77":  # its example reads the CSV columns text/category
        text = text.replace('label = "category"', 'label = "label"')
    (folder / "task.toml").write_text(text, encoding="utf-8")
    return folder / "task.toml"


def end_to_end(
    dataset: str, n: int, seed: int, threads: int, spotlight: bool = True
) -> dict[str, Any]:
    from stillhouse.cascade import Cascade, Stage
    from stillhouse.data.io import write_jsonl
    from stillhouse.evaluate.efficiency import EfficiencySettings
    from stillhouse.evaluate.run import evaluate
    from stillhouse.task import GuardSection, load_task
    from stillhouse.train import TrainSettings, load_model, train

    folder = Path(tempfile.mkdtemp(prefix=f"guard-{dataset}-"))
    task = load_task(_task_file(dataset, folder))
    task = task.model_copy(update={"llm": task.llm.model_copy(update={"threads": threads})})
    off = task.model_copy(update={"guard": GuardSection(injection="off")})
    route = task.model_copy(update={"guard": GuardSection(injection="route")})
    train_rows = _rows(dataset, "train")
    random.Random(seed).shuffle(train_rows)
    held_out, fitted = train_rows[:300], train_rows[300:]
    write_jsonl(folder / "train.jsonl", fitted)
    test = _rows(dataset, "test")
    chosen = sorted(random.Random(seed).sample(range(len(test)), min(n, len(test))))
    write_jsonl(folder / "test.jsonl", [test[i] for i in chosen])
    started = time.perf_counter()
    settings = TrainSettings(recipe="linear", latency_texts=5, throughput_texts=20)
    train(off, folder / "linear", settings, data=folder / "train.jsonl")
    student = load_model(folder / "linear", task=off)
    confidences = [max(p.probs.values()) for p in student.predict([r["text"] for r in held_out])]
    threshold = float(np.quantile(confidences, ROUTED))
    memo = _llm_class()
    llm = memo(off, LLM)

    def spotlit(mode: str):
        return memo(
            off.model_copy(update={"llm": off.llm.model_copy(update={"spotlight": mode})}), LLM
        )

    spotlit_systems = (
        {"LLM + datamark": spotlit("datamark"), "LLM + delimit": spotlit("delimit")}
        if spotlight
        else {}
    )
    systems = {
        "LLM alone": llm,
        **spotlit_systems,
        "LLM + guard": memo(route, LLM),
        "linear student": student,
        "cascade": Cascade([Stage("linear", student, threshold), Stage("llm", llm, None)]),
        "guarded cascade": Cascade(
            [Stage("linear", student, threshold), Stage("llm", llm, None)],
            guard=route.guard,
            labels=task.label_names,
        ),
    }
    results = evaluate(
        off,
        folder / "test.jsonl",
        systems,
        n_resamples=1000,
        seed=seed,
        redteam=n,
        efficiency=EfficiencySettings(sample=0),
    )
    return {
        "dataset": dataset,
        "results": results,
        "threshold": threshold,
        "llm_calls": memo.calls,
        "seconds": time.perf_counter() - started,
    }


def _cell(interval: dict[str, float]) -> str:
    return f"{interval['estimate']:.3f} ({interval['low']:.3f}–{interval['high']:.3f})"


def print_end_to_end(run: dict[str, Any]) -> None:
    results = run["results"]
    print(
        f"\n### {run['dataset']}: {results.data['n_items']} test texts, each attacked once; "
        f"student → LLM threshold {run['threshold']:.3f}; {run['llm_calls']} LLM answers "
        f"computed; {run['seconds']:.0f} s\n"
    )
    print(
        "| system | attack success | target rate | flip rate | clean accuracy | "
        "accuracy under attack | abstained under attack | guard recall / false positives |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, system in results.systems.items():
        red = system["redteam"]
        guard = red["guard"]
        shown = (
            f"{guard['recall']['estimate']:.3f} / {guard['false_positive_rate']['estimate']:.3f}"
            if guard
            else "–"
        )
        print(
            f"| {name} | {_cell(red['attack_success_rate'])} | {_cell(red['target_rate'])} | "
            f"{_cell(red['flip_rate'])} | "
            f"{_cell(red['clean_accuracy'])} | {_cell(red['accuracy_under_attack'])} | "
            f"{red['abstention_rate']['estimate']:.3f} | {shown} |"
        )
    print("\nattack success by family (LLM alone / guarded cascade):")
    alone = results.systems["LLM alone"]["redteam"]["by_family"]
    guarded = results.systems["guarded cascade"]["redteam"]["by_family"]
    for family, row in alone.items():
        print(
            f"- {family} (n={row['n']}): {row['attack_success_rate']:.2f} / "
            f"{guarded[family]['attack_success_rate']:.2f}"
        )
    positions = results.systems["LLM alone"]["redteam"]["by_position"]
    print(
        "attack success by position (LLM alone): "
        + ", ".join(f"{k} {v['attack_success_rate']:.2f}" for k, v in positions.items())
    )
    for name in ("cascade", "guarded cascade"):
        shares = results.systems[name].get("cascade")
        if shares:
            print(
                f"{name}: "
                + ", ".join(f"{s['name']} {s['share']:.0%}" for s in shares["stages"])
                + f", abstained {shares['abstained_share']:.0%} (clean texts)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "detector", "end-to-end"), default="all")
    parser.add_argument("--attacks", type=int, default=150, help="test texts per dataset")
    parser.add_argument("--datasets", default="nusax,banking77")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--no-spotlight",
        action="store_true",
        help="leave out the two spotlight systems (each costs as many LLM calls as the rest)",
    )
    parser.add_argument(
        "--detector",
        help="a shipped detector's name (linear, encoder-ngrams) or a detector folder (e.g. an "
        "earlier version) to use in place of the default one",
    )
    args = parser.parse_args()
    if args.detector is not None:  # every guard in this process loads the default detector
        import stillhouse.guard.injection as injection

        chosen = injection.DETECTORS.get(args.detector) or Path(args.detector)
        injection.DETECTORS[injection.DEFAULT_DETECTOR] = chosen
        injection.shipped_detector.cache_clear()
        print(f"detector: {args.detector} ({chosen})")
    if args.part in ("all", "detector"):
        detector_part()
    if args.part in ("all", "end-to-end"):
        print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
        for dataset in args.datasets.split(","):
            run = end_to_end(
                dataset, args.attacks, args.seed, args.threads, spotlight=not args.no_spotlight
            )
            print_end_to_end(run)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
