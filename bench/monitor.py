"""Benchmark: does `stillhouse monitor` see a shift, and how close is its estimated accuracy
(from calibrated confidences, the idea of NannyML's CBPE) to the true one?

A banking77 `linear` model (trained on the whole train split, cached) answers several streams;
every answer is logged through the serve app's :class:`PredictionLog` (policy ``all``, texts
logged) into a fresh store, one system name per stream, then `stillhouse monitor` compares each
stream with the baseline: the first half of banking77's shuffled test split (its labels and the model's
predictions on it, as `stillhouse predict` writes them). The streams:

- ``unshifted``: the other half of the (shuffled) test split (texts the baseline never saw);
- ``label-shift``: test texts of 10 card-related intents only (the label mix moves, the texts
  of each intent do not: calibration should hold);
- ``typos``: the unshifted texts with 15% of the letters replaced at random (covariate shift
  inside the domain);
- ``drift-to-nusax``: over 12 (synthetic) hours, a growing share of NusaX English sentiment
  texts (restaurant and product reviews) among banking77 ones; no intent is right for them, so
  each counts as an error;
- ``nusax``: NusaX English texts only (true accuracy 0 by that definition).

For each: the true accuracy (Wilson 95% interval), the estimate with its interval, label PSI
(and its sampling-noise level), chi-square p, confidence KS, the share outside English, and the
alarms monitor.json raises. Prints a markdown table; run with ``nice -n 10``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    NUSAX,
    bench_cache_dir,
    classification_splits,
    example_task_file,
    machine_description,
    read_pairs,
    shuffled,
    table_head,
)

from stillhouse.evaluate.intervals import wilson_interval
from stillhouse.monitor.run import run_monitor, write_monitor_outputs
from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog
from stillhouse.task import Task, load_task
from stillhouse.train import TrainSettings, load_model, train

CARD_INTENTS = (
    "card_arrival",
    "card_delivery_estimate",
    "card_not_working",
    "lost_or_stolen_card",
    "card_payment_fee_charged",
    "declined_card_payment",
    "card_swallowed",
    "activate_my_card",
    "compromised_card",
    "order_physical_card",
)
HOURS = 12
# the streams' (synthetic) first time: 12 hours ago, on a full hour (monitor's buckets are
# aligned to UTC, so each falls in one 2-hour group below)
START = (time.time() // 3600 - HOURS) * 3600


def model_folder(task: Task, rows: list[tuple[str, str]]) -> Path:
    """The cached `linear` model on banking77's train split (trained once)."""
    folder = bench_cache_dir() / "monitor-banking77-linear"
    if (folder / "card.json").is_file():
        return folder
    data = Path(tempfile.mkdtemp()) / "train.jsonl"
    data.write_text(
        "".join(json.dumps({task.input.text: t, task.input.label: y}) + "\n" for t, y in rows),
        encoding="utf-8",
    )
    shutil.rmtree(folder, ignore_errors=True)
    train(task, folder, TrainSettings(latency_texts=20, throughput_texts=100), data=data)
    return folder


def typos(text: str, rng: random.Random, share: float = 0.15) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(letters) if c.isalpha() and rng.random() < share else c for c in text)


def streams(
    test: list[tuple[str, str]], nusax: list[str], seed: int
) -> dict[str, list[tuple[str, str | None, float]]]:
    """name -> [(text, gold or None for out-of-domain, hours since the start)]."""
    rng = random.Random(seed)
    half = test[len(test) // 2 :]

    def spread(items: list[tuple[str, str | None]]) -> list[tuple[str, str | None, float]]:
        return [(t, y, HOURS * i / len(items)) for i, (t, y) in enumerate(items)]

    drift = []
    pool_in, pool_out = list(half), list(nusax)
    rng.shuffle(pool_in)
    rng.shuffle(pool_out)
    for i in range(len(half)):
        hours = HOURS * i / len(half)
        # the out-of-domain share grows linearly from 0 to 60% over the window
        if pool_out and rng.random() < 0.6 * hours / HOURS:
            drift.append((pool_out.pop(), None, hours))
        else:
            drift.append((*pool_in.pop(), hours))
    return {
        "unshifted": spread(list(half)),
        "label-shift": spread([(t, y) for t, y in half if y in CARD_INTENTS]),
        "typos": spread([(typos(t, rng), y) for t, y in half]),
        "drift-to-nusax": drift,
        "nusax": spread([(t, None) for t in nusax]),
    }


def log_stream(
    task: Task, model, name: str, items: list[tuple[str, str | None, float]], version: str
) -> np.ndarray:
    """Predict every text, log it under system ``name``; return which answers were right."""
    texts = [text for text, _, _ in items]
    started = START
    probs = model.probabilities(texts)
    labels = model.labels
    right = []
    records = []
    for (text, gold, hours), row in zip(items, probs, strict=True):
        best = int(row.argmax())
        right.append(gold is not None and labels[best] == gold)
        records.append(
            LoggedPrediction(
                time=started + hours * 3600,
                system=name,
                version=version,
                text=text,
                answer=labels[best],
                probs=None,
                confidence=float(row[best]),
                stage=None,
                abstained=False,
                latency_ms=0.0,
            )
        )
    with PredictionLog(task, policy="all", log_texts=True) as log:
        log.record(records)
    stats = log.stats()
    assert stats["written"] == len(records) and stats["failed"] == 0, stats
    return np.array(right)


def print_over_time(buckets: list[dict], right: np.ndarray, hours: list[float]) -> None:
    """drift-to-nusax per 2 hours: monitor.json's buckets (estimated accuracy, weighted by their
    predictions) against the true accuracy of the same texts."""
    hours_of_bucket = np.array([(b["start"] - START) / 3600 for b in buckets])
    print()
    print("drift-to-nusax over time, per 2 hours of the 12:")
    print()
    print(*table_head("hours", "n", "estimated", "true"), sep="\n")
    at = np.array(hours)
    for start in range(0, HOURS, 2):
        chosen = [
            b for b, h in zip(buckets, hours_of_bucket, strict=True) if start <= h < start + 2
        ]
        n = sum(b["n"] for b in chosen)
        estimate = sum(b["n"] * b["estimated_accuracy"] for b in chosen) / max(n, 1)
        mask = (at >= start) & (at < start + 2)
        print(f"| {start}–{start + 2} | {n} | {estimate:.3f} | {right[mask].mean():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="Keep the reports here.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stillhouse-bench-monitor-"))
    shutil.copyfile(example_task_file("banking77"), work / "task.toml")
    task = load_task(work / "task.toml")
    train_rows, test_rows = classification_splits(["banking77"])["banking77"]
    test_rows = shuffled(test_rows, args.seed)  # test.csv is sorted by intent: halves must mix
    folder = model_folder(task, train_rows)
    model = load_model(folder)
    version = json.loads((folder / "card.json").read_text())["model_sha256"][:16]
    nusax = [t for t, _ in read_pairs(NUSAX / "english" / "test.csv", "label")]
    nusax += [t for t, _ in read_pairs(NUSAX / "english" / "train.csv", "label")]

    # the baseline: the first half of the test split and the model's predictions on it
    base = test_rows[: len(test_rows) // 2]
    base_file, preds_file = work / "baseline.jsonl", work / "baseline-preds.jsonl"
    base_probs = model.probabilities([t for t, _ in base])
    with base_file.open("w", encoding="utf-8") as handle, preds_file.open("w") as preds:
        for i, ((text, label), row) in enumerate(zip(base, base_probs, strict=True)):
            handle.write(
                json.dumps({"id": f"b{i}", task.input.text: text, task.input.label: label}) + "\n"
            )
            probs = {name: round(float(p), 6) for name, p in zip(model.labels, row, strict=True)}
            answer = model.labels[int(row.argmax())]
            preds.write(json.dumps({"id": f"b{i}", "label": answer, "probs": probs}) + "\n")
    base_right = np.array(
        [model.labels[int(r.argmax())] == y for (_, y), r in zip(base, base_probs, strict=True)]
    )

    print(f"Machine: {machine_description()}.")
    print(
        f"Baseline: {len(base)} banking77 test texts, true accuracy {base_right.mean():.3f}, "
        f"mean confidence {base_probs.max(axis=1).mean():.3f}."
    )
    print()
    print(
        *table_head(
            "stream",
            "n",
            "true accuracy (95%)",
            "estimated (95%)",
            "est. − true",
            "label PSI (noise)",
            "χ² p",
            "conf. KS",
            "not English",
            "alarms",
            "monitor s",
        ),
        sep="\n",
    )
    for name, items in streams(test_rows, nusax, args.seed).items():
        right = log_stream(task, model, name, items, version)
        started = time.perf_counter()
        document = run_monitor(task, system=name, baselines=[base_file, preds_file])
        seconds = time.perf_counter() - started
        if args.out is not None:
            write_monitor_outputs(document, args.out / name)
        low, high = wilson_interval(int(right.sum()), right.size)
        estimate, shift = document["estimated_accuracy"], document["label_shift"]
        ks = document["confidence_shift"]["ks"]
        language = document["text"]["language"]
        alarms = ", ".join(alarm["what"] for alarm in document["alarms"]) or "none"
        print(
            f"| {name} | {right.size} | {right.mean():.3f} ({low:.3f}–{high:.3f}) "
            f"| {estimate['estimate']:.3f} ({estimate['low']:.3f}–{estimate['high']:.3f}) "
            f"| {estimate['estimate'] - right.mean():+.3f} "
            f"| {shift['psi']:.3f} ({shift['expected_without_shift']:.3f}) "
            f"| {shift['chi_square']['p_value']:.2g} | {ks['statistic']:.3f} "
            f"| {language['outside_task_languages']:.1%} | {alarms} | {seconds:.1f} |",
            flush=True,
        )
        if name == "drift-to-nusax":
            drift = (document["over_time"]["buckets"], right, [hours for _, _, hours in items])
    print_over_time(*drift)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
