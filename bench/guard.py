"""Prompt-injection detector: recall at 1% false positives, ROC AUC and latency per text.

Data: the test split of ``stillhouse.guard.injection_corpus`` — held-out attack families (the
templates never trained on: fake assistant turns, delimiter escapes, authority impersonation,
hex/ROT13/reversed/spaced encodings; BIPIA's test-split text and code attacks) put at the start,
middle or end of held-out texts of three tasks (banking77 test, NusaX English test, BIPIA test
e-mails not among its train ones), next to the same texts clean. Per task: recall at 1% FPR
(the threshold that flags at most 1% of that task's clean texts), ROC AUC, and recall and
false-positive rate at the shipped threshold (one for all tasks, chosen on the valid split).

Latency: ``Detector.scan([text])`` one text at a time (batch 1, one thread) on 300 texts per
task, clean and attacked alternating, after 20 warm-up calls; throughput: batches of 256.

Anchors (published, not rerun here: their weights are not on this machine): Meta Prompt Guard 2
86M, 97.5% recall at 1% FPR on its own evaluation set; ProtectAI deberta-v3-base-prompt-injection
v2 (llm-guard's default scanner) caught 24% of an unseen synthetic set; llm-guard's scanner
~100–200 ms per text on CPU.

Run: ``.venv/bin/python bench/guard.py`` (prints a Markdown table).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

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


def main() -> None:
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


if __name__ == "__main__":
    main()
