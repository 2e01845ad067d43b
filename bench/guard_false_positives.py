"""Prompt-injection detector: false positives on clean texts it never saw, before vs after.

Evaluation sets, used neither to train any detector here nor to choose a threshold (corpus
version 2, ``stillhouse.guard.injection_corpus``): NusaX English test (400 reviews, whole),
banking77 test (3,080 queries), BIPIA's test e-mails not among its train ones (whole, and the
clean pieces the held-out bench scores: whole e-mails and their halves), WNUT17 dev (1,009
posts), Presidio sentences of the test third of its templates. Three detectors: ``before``
(the earlier folder at its own threshold), ``before, new threshold`` (the same model, its
threshold chosen by today's rule on today's valid split: recalibration without retraining) and
``after``. Per detector and set: texts
flagged at that detector's own shipped threshold, the false-positive rate and its 95% Wilson
interval (scipy). Then, on the held-out attack families of the corpus's test split (the same
rows for both detectors): recall at the shipped threshold with its interval, and per task the
recall at 1% FPR (each task's own threshold) and ROC AUC. Last, batch-1 latency of the two side by
side: the same 600 texts (clean and attacked, of every task), the detectors taking turns
text by text, so that other load on the machine falls on both alike.

Run: ``.venv/bin/python bench/guard_false_positives.py --before DIR [--after DIR]``
(``--after`` defaults to the shipped detector; ``DIR`` a detector folder, e.g. the previous one
taken out of git: ``git archive HEAD src/stillhouse/guard/detector | tar -x -C /tmp/before``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT / "src"))

from stillhouse.guard.injection import (  # noqa: E402
    DETECTOR,
    Detector,
    choose_threshold,
    held_out_report,
)
from stillhouse.guard.injection_corpus import (  # noqa: E402
    _carriers,
    _unseen,
    build_corpus,
)


def _csv_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def evaluation_sets(test_rows: list[dict]) -> dict[str, list[str]]:
    """Clean texts per evaluation set (see the module docstring)."""
    held_out = _carriers(DATASETS, "test")
    unseen = _unseen(held_out, _carriers(DATASETS, "train"))
    emails = [carrier.text for carrier in unseen if carrier.source == "bipia_email"]
    email_pieces = [
        row["text"]
        for row in test_rows
        if row["source"] == "bipia_email" and row["label"] != "injection"
    ]
    return {
        "NusaX English test (whole reviews)": _csv_texts(
            DATASETS / "nusax_senti" / "english" / "test.csv"
        ),
        "banking77 test": _csv_texts(DATASETS / "banking77" / "test.csv"),
        "BIPIA test e-mails (whole)": emails,
        "BIPIA test e-mails (whole + halves)": email_pieces,
        "WNUT17 dev posts": [c.text for c in unseen if c.source == "wnut17"],
        "Presidio, test templates": [c.text for c in unseen if c.source == "presidio"],
    }


def interval(k: int, n: int) -> str:
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return f"{k / n:.4f} ({ci.low:.4f}–{ci.high:.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the earlier detector folder")
    parser.add_argument("--after", type=Path, default=DETECTOR, help="default: the shipped one")
    args = parser.parse_args()
    before = Detector.load(args.before)
    # the earlier model with only the calibration changed: its threshold chosen by today's rule
    # on today's valid split (what recalibrating alone, without retraining, would give)
    valid = [row for row in build_corpus(DATASETS, "valid") if row["label"] != "injection"]
    cut = choose_threshold(before.scores([r["text"] for r in valid]), [r["source"] for r in valid])
    detectors = {
        "before": before,
        "before, new threshold": Detector(before.model, cut, before.window),
        "after": Detector.load(args.after),
    }
    test_rows = build_corpus(DATASETS, "test")
    sets = evaluation_sets(test_rows)
    print(
        "thresholds: "
        + ", ".join(f"{name} {d.threshold:.4f}" for name, d in detectors.items())
        + "\n"
    )
    print(
        "| clean set | texts | "
        + " | ".join(f"{n}: flagged, FPR (95% CI)" for n in detectors)
        + " |"
    )
    print("|---|---|" + "---|" * len(detectors))
    for name, texts in sets.items():
        cells = []
        for detector in detectors.values():
            k = int((detector.scores(texts) >= detector.threshold).sum())
            cells.append(f"{k}, {interval(k, len(texts))}")
        print(f"| {name} | {len(texts)} | " + " | ".join(cells) + " |")
    reports = {name: held_out_report(d, test_rows) for name, d in detectors.items()}
    print("\nheld-out attack families (corpus v2 test split, the same rows for all):\n")
    print("| | " + " | ".join(detectors) + " |")
    print("|---|" + "---|" * len(detectors))
    attacked = reports["after"]["attacked"]
    recalls = [
        interval(round(r["recall"] * r["attacked"]), r["attacked"]) for r in reports.values()
    ]
    print(
        f"| recall at the shipped threshold, {attacked} attacked texts | "
        + " | ".join(recalls)
        + " |"
    )
    fprs = [f"{r['false_positive_rate']:.4f}" for r in reports.values()]
    print(
        f"| FPR at the shipped threshold, all {reports['after']['clean']} clean rows | "
        + " | ".join(fprs)
        + " |"
    )
    for family in reports["after"]["recall_per_family"]:
        values = [f"{r['recall_per_family'][family]:.3f}" for r in reports.values()]
        print(f"| recall, {family} | " + " | ".join(values) + " |")
    for task in reports["after"]["per_task"]:
        values = [
            f"{r['per_task'][task]['recall_at_1pct_fpr']:.3f} / {r['per_task'][task]['roc_auc']:.4f}"
            for r in reports.values()
        ]
        print(f"| {task}: recall at 1% FPR / ROC AUC | " + " | ".join(values) + " |")
    mixed = [row["text"] for row in test_rows if row["family"] != "hard_negative"]
    sample = [mixed[i] for i in np.random.default_rng(0).choice(len(mixed), 600, replace=False)]
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for text in sample[:20]:  # warm-up
        for detector in detectors.values():
            detector.scan([text])
    for text in sample:
        for name, detector in detectors.items():
            started = time.perf_counter()
            detector.scan([text])
            times[name].append((time.perf_counter() - started) * 1000)
    print(
        "\nbatch-1 latency, ms per text (p50 / p95 / p99), 600 test texts, turns taken: "
        + ", ".join(
            f"{name} {np.percentile(t, 50):.2f} / {np.percentile(t, 95):.2f} / "
            f"{np.percentile(t, 99):.2f}"
            for name, t in times.items()
        )
    )
    print("\n" + json.dumps({n: r["false_positive_rate_per_source"] for n, r in reports.items()}))


if __name__ == "__main__":
    main()
