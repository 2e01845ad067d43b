"""Benchmark: evaluate's vectorised statistics vs. a naive per-resample loop, side by side.

3 systems × the 3,080 banking77 test items × 1,000 bootstrap resamples, every metric family
that needs no model inference: accuracy, macro/micro/weighted F1, per-label scores, confusion
matrix, calibration (ECE equal-mass and equal-width, Brier, NLL, reliability bins), selective
prediction (risk–coverage curve, AURC, accuracy at the top 10%, coverage at precision 0.9 with
its interval), a slice (message length) with worst slice and gap intervals, paired comparisons
(paired bootstrap, McNemar, Holm) and the most confident errors; then results.json and
report.html are written. Robustness and efficiency need the systems to predict and are left
out.

The systems' predictions are real, not simulated: three scikit-learn TF-IDF + logistic
regression models trained on banking77's train split (word unigrams on a quarter, word 1–2
grams on half, character 2–4 grams on a quarter), written as predictions files with their
probabilities. Training and writing them is not timed.

The naive peer computes the same interval-bearing metrics resample by resample with
scikit-learn and numpy (accuracy, three F1 averages via sklearn's f1_score, AURC, accuracy at
the top 10%, coverage at precision, slice accuracies, paired differences), on the same resample
indices; the table reports both times, their ratio, and the largest difference between the
two sets of interval bounds (they must agree).

Run: nice -n 10 .venv/bin/python bench/evaluate.py [--resamples 1000] [--naive-resamples 1000]
Prints a markdown table to paste into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import BANKING77, example_task_file, machine_description, read_csv, table_head
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from stillhouse.data.io import write_jsonl
from stillhouse.evaluate.bootstrap import resample_indices
from stillhouse.evaluate.efficiency import EfficiencySettings
from stillhouse.evaluate.report import write_report
from stillhouse.evaluate.results import write_results
from stillhouse.evaluate.run import evaluate
from stillhouse.predictors import PredictionsFile
from stillhouse.task import load_task

TARGET = 0.9
SYSTEMS = {
    "word-1gram-quarter": (dict(sublinear_tf=True), 4),
    "word-2gram-half": (dict(sublinear_tf=True, ngram_range=(1, 2)), 2),
    "char-2-4gram-quarter": (dict(sublinear_tf=True, analyzer="char_wb", ngram_range=(2, 4)), 4),
}


def prepare(folder: Path) -> tuple[Path, Path, dict[str, Path]]:
    """task.toml, test.jsonl (with a length slice) and one predictions file per system."""
    task_text = example_task_file("banking77").read_text(encoding="utf-8")
    task_path = folder / "task.toml"
    task_path.write_text(task_text.replace("[input]\n", '[input]\nmeta = ["length"]\n'), "utf-8")
    labels = load_task(task_path).label_names
    train, test = read_csv(BANKING77 / "train.csv"), read_csv(BANKING77 / "test.csv")
    rows = [
        {
            "id": f"t{i:04d}",
            "text": row["text"],
            "category": row["category"],
            "length": "short"
            if len(row["text"]) < 40
            else "medium"
            if len(row["text"]) < 90
            else "long",
        }
        for i, row in enumerate(test)
    ]
    test_path = folder / "test.jsonl"
    write_jsonl(test_path, rows)
    files = {}
    for name, (options, step) in SYSTEMS.items():
        subset = train[::step]  # the file is sorted by label: every k-th row keeps all 77
        model = make_pipeline(TfidfVectorizer(**options), LogisticRegression(C=20, max_iter=300))
        with threadpool_limits(1):
            model.fit([r["text"] for r in subset], [r["category"] for r in subset])
            probs = model.predict_proba([r["text"] for r in rows])
        columns = [list(model.classes_).index(label) for label in labels]
        predictions = []
        for row, p in zip(rows, probs[:, columns], strict=True):
            p = p / p.sum()
            predictions.append(
                {
                    "id": row["id"],
                    "label": labels[int(np.argmax(p))],
                    "probs": dict(zip(labels, np.round(p, 9).tolist(), strict=True)),
                }
            )
        files[name] = folder / f"{name}.jsonl"
        write_jsonl(files[name], predictions)
    return task_path, test_path, files


def ours(task_path: Path, test_path: Path, files: dict[str, Path], resamples: int, out: Path):
    task = load_task(task_path)
    started = time.perf_counter()
    systems = {name: PredictionsFile(path, task) for name, path in files.items()}
    results = evaluate(
        task,
        test_path,
        systems,
        n_resamples=resamples,
        seed=0,
        slices=["length"],
        target_precision=TARGET,
        efficiency=EfficiencySettings(sample=0),
    )
    write_results(results, out / "results.json")
    write_report(results, out / "report.html")
    return time.perf_counter() - started, results


def naive(results, files: dict[str, Path], labels: list[str], resamples: int) -> tuple[float, dict]:
    """The same interval metrics, one resample at a time (the loop a first version would be)."""
    ids = results.data["ids"]
    gold_by_id = {}
    with (Path(results.data["path"])).open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    gold_by_id = {row["id"]: row["category"] for row in rows}
    length = np.array([row["length"] for row in rows])
    started = time.perf_counter()
    index = {label: i for i, label in enumerate(labels)}
    gold = np.array([index[gold_by_id[i]] for i in ids])
    data = {}
    for name, path in files.items():
        by_id = {}
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                by_id[row["id"]] = row
        predicted = np.array([index[by_id[i]["label"]] for i in ids])
        confidence = np.array([by_id[i]["probs"][by_id[i]["label"]] for i in ids])
        data[name] = (predicted, confidence)
    indices = resample_indices(len(ids), resamples, 0)
    values: dict[str, list[float]] = {}
    for drawn in indices:
        y = gold[drawn]
        correct_by_system = {}
        for name, (predicted, confidence) in data.items():
            p, c = predicted[drawn], confidence[drawn]
            correct = (p == y).astype(float)
            correct_by_system[name] = correct
            values.setdefault(f"{name}/accuracy", []).append(correct.mean())
            for average in ("macro", "micro", "weighted"):
                score = f1_score(y, p, labels=range(len(labels)), average=average, zero_division=0)
                values.setdefault(f"{name}/{average}_f1", []).append(score)
            order = np.argsort(-c, kind="stable")
            ranked = correct[order]
            answered = np.arange(1, len(ranked) + 1)
            risks = 1 - np.cumsum(ranked) / answered
            values.setdefault(f"{name}/aurc_rough", []).append(risks.mean())
            top = max(1, round(0.1 * len(ranked)))
            values.setdefault(f"{name}/top10", []).append(ranked[:top].mean())
            accuracy_at = np.cumsum(ranked) / answered
            ok = np.flatnonzero(accuracy_at >= TARGET)
            values.setdefault(f"{name}/coverage", []).append(
                (ok[-1] + 1) / len(ranked) if ok.size else 0.0
            )
            for group in ("short", "medium", "long"):
                member = length[drawn] == group
                if member.any():
                    values.setdefault(f"{name}/slice/{group}", []).append(correct[member].mean())
        names = list(data)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                difference = correct_by_system[a].mean() - correct_by_system[b].mean()
                values.setdefault(f"{a}-{b}", []).append(difference)
    seconds = time.perf_counter() - started
    return seconds, {key: np.quantile(v, [0.025, 0.975]) for key, v in values.items()}


def agreement(results, bounds: dict) -> float:
    """Largest |difference| between our interval bounds and the naive loop's, on the metrics
    both define identically (accuracy, the three F1s, slice accuracies, paired differences)."""
    worst = 0.0
    for name, system in results.systems.items():
        for metric in ("accuracy", "macro_f1", "micro_f1", "weighted_f1"):
            interval = system["metrics"][metric]
            low, high = bounds[f"{name}/{metric}"]
            worst = max(worst, abs(interval["low"] - low), abs(interval["high"] - high))
        for group, values in system["slices"]["length"]["groups"].items():
            low, high = bounds[f"{name}/slice/{group}"]
            worst = max(
                worst, abs(values["accuracy"]["low"] - low), abs(values["accuracy"]["high"] - high)
            )
    for comparison in results.comparisons:
        low, high = bounds[f"{comparison['a']}-{comparison['b']}"]
        worst = max(worst, abs(comparison["low"] - low), abs(comparison["high"] - high))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--naive-resamples", type=int, default=1000)
    args = parser.parse_args()
    if not (BANKING77 / "test.csv").is_file():
        raise SystemExit(f"banking77 is not in {BANKING77}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task_path, test_path, files = prepare(folder)
        ours(task_path, test_path, files, 50, folder / "warm")  # imports, caches: not timed
        seconds, results = ours(task_path, test_path, files, args.resamples, folder / "out")
        labels = results.task["labels"]
        naive_seconds, bounds = naive(results, files, labels, args.naive_resamples)
        difference = agreement(results, bounds) if args.naive_resamples == args.resamples else None
        report_kb = (folder / "out" / "report.html").stat().st_size / 1000
    naive_full = naive_seconds * args.resamples / args.naive_resamples
    print(f"Machine: {machine_description()}. Python {platform.python_version()}.")
    print()
    print(*table_head("what", "systems × items × resamples", "seconds", "vs naive loop"), sep="\n")
    n = results.data["n_items"]
    print(
        f"| stillhouse evaluate (all inference-free families + results.json + report.html) | 3 × {n} × {args.resamples} | {seconds:.2f} | {naive_full / seconds:.1f}× faster |"
    )
    scaled = (
        ""
        if args.naive_resamples == args.resamples
        else f" (measured on {args.naive_resamples}, scaled)"
    )
    print(
        f"| naive per-resample loop (sklearn f1_score, numpy; interval metrics only){scaled} | 3 × {n} × {args.resamples} | {naive_full:.2f} | 1.0× |"
    )
    print()
    accuracies = ", ".join(
        f"{name} {s['metrics']['accuracy']['estimate']:.3f}" for name, s in results.systems.items()
    )
    print(f"Systems' accuracy: {accuracies}. report.html: {report_kb:.0f} kB.")
    if difference is not None:
        print(f"Largest difference between the two loops' interval bounds: {difference:.2e}.")


if __name__ == "__main__":
    main()
