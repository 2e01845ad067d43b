"""What the scripts in bench/ share: where the data is and how it is read and sampled, how a
classifier's test probabilities are scored, how a batched pass is timed, and how a table and its
machine line start.

The scripts run as ``.venv/bin/python bench/<script>.py``, which puts bench/ on ``sys.path``:
they import this module as ``_common``. stillhouse modules are imported inside the functions
that need them, so importing this module loads no more than numpy (bench/audit.py measures its
own peak memory).
"""

from __future__ import annotations

import csv
import functools
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
BANKING77 = DATASETS / "banking77"
NUSAX = DATASETS / "nusax_senti"
# the NusaX languages the benchmarks name by code (nusax-en, nusax-jav, nusax-bug)
NUSAX_LANGUAGES = {"en": "english", "jav": "javanese", "bug": "buginese"}
# tests/train's data builders (structured_data, train_data), shared with the benchmarks
TEST_HELPERS = ROOT / "tests" / "train"
# texts per call when a benchmark times a batched pass
BATCH = 64
# the one shuffle seed, so train.py's 10-shot set and distill.py's and annotate.py's samples agree
SAMPLE_SEED = 0

Rows = list[tuple[str, str]]
Item = TypeVar("Item")


# data -------------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of the UTF-8 CSV file at ``path``, one dict per row keyed by the header."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def read_pairs(path: Path, label: str, text: str = "text") -> Rows:
    """``(text, label)`` of each row of the CSV file at ``path``, from the columns named
    ``text`` and ``label``."""
    return [(row[text], row[label]) for row in read_csv(path)]


def write_csv(path: Path, rows: list[dict[str, str]], fieldnames: list[str] | None = None) -> None:
    """Write ``rows`` to ``path`` as UTF-8 CSV with a header: ``fieldnames``, or the first row's
    keys."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def shuffled(items: Iterable[Item], seed: int = SAMPLE_SEED) -> list[Item]:
    """A new list of ``items`` in the order ``random.Random(seed).shuffle`` puts them."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order


def first_per_label(
    items: Iterable[Item], per_label: int, label_of: Callable[[Item], str]
) -> list[Item]:
    """The first ``per_label`` items of each label (``label_of(item)``), in their given order."""
    taken: dict[str, int] = {}
    kept = []
    for item in items:
        label = label_of(item)
        if taken.get(label, 0) < per_label:
            taken[label] = taken.get(label, 0) + 1
            kept.append(item)
    return kept


def classification_splits(names: Sequence[str]) -> dict[str, tuple[Rows, Rows]]:
    """name -> (train, test) ``(text, label)`` rows for each of ``names`` it knows (others are
    left out): ``banking77``, ``banking77-10shot`` (the first 10 train texts of each intent after
    the seed-0 shuffle, in that order), ``nusax-en``, ``nusax-jav``, ``nusax-bug`` (NusaX
    sentiment). Otherwise every split is whole and in file order."""
    found: dict[str, tuple[Rows, Rows]] = {}
    for name in names:
        if name == "banking77-10shot":
            train_rows = shuffled(read_pairs(BANKING77 / "train.csv", "category"))
            few = first_per_label(train_rows, 10, label_of=lambda row: row[1])
            found[name] = (few, read_pairs(BANKING77 / "test.csv", "category"))
        elif name == "banking77":
            found[name] = (
                read_pairs(BANKING77 / "train.csv", "category"),
                read_pairs(BANKING77 / "test.csv", "category"),
            )
        elif name.startswith("nusax-"):
            folder = NUSAX / NUSAX_LANGUAGES[name.split("-")[1]]
            found[name] = (
                read_pairs(folder / "train.csv", "label"),
                read_pairs(folder / "test.csv", "label"),
            )
    return found


def example_task_file(example: str) -> Path:
    """The task.toml of ``examples/<example>/`` (its labels and prompt)."""
    return ROOT / "examples" / example / "task.toml"


def add_test_helpers_to_path() -> None:
    """Make tests/train's data builders (``structured_data``, ``train_data``) importable."""
    if str(TEST_HELPERS) not in sys.path:
        sys.path.insert(0, str(TEST_HELPERS))


def bench_cache_dir() -> Path:
    """Where benchmarks keep what is slow to make: ``$STILLHOUSE_HOME/bench`` (by default
    ``~/.cache/stillhouse/bench``)."""
    from stillhouse.llm.models import cache_dir

    return cache_dir() / "bench"


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at ``path`` (.npy), or ``compute()``'s, saved there first."""
    if path.is_file():
        return np.load(path)
    array = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return array


# scoring ----------------------------------------------------------------------------------------


def classification_scores(probs: np.ndarray, gold: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Scores of ``probs`` ((n, k) class probabilities) against ``gold`` ((n,) class indices):
    ``accuracy`` and ``macro_f1`` (bootstrap 95% intervals, 1,000 resamples of ``seed``),
    ``ece`` (10 equal-mass bins) and ``correct`` ((n,) bool, argmax == gold)."""
    from stillhouse.evaluate.bootstrap import (
        bootstrap_interval,
        macro_f1_per_resample,
        resample_indices,
    )
    from stillhouse.evaluate.calibration import expected_calibration_error

    predicted = probs.argmax(axis=1)
    indices = resample_indices(len(gold), 1000, seed)
    k = probs.shape[1]
    accuracy = bootstrap_interval((predicted == gold).astype(float), indices)
    macro = bootstrap_interval(
        functools.partial(macro_f1_per_resample, gold, predicted, n_labels=k), indices
    )
    ece = expected_calibration_error(probs.max(axis=1), predicted == gold, bins=10, scheme="mass")
    return {"accuracy": accuracy, "macro_f1": macro, "ece": ece, "correct": predicted == gold}


def score_cells(measured: dict[str, Any]) -> str:
    """``classification_scores``'s accuracy, macro-F1 (each with its interval) and ECE as three
    markdown table cells: ``0.912 (0.901–0.922) | 0.910 (0.899–0.921) | 0.031``."""
    a, f = measured["accuracy"], measured["macro_f1"]
    return (
        f"{a.estimate:.3f} ({a.low:.3f}–{a.high:.3f}) | {f.estimate:.3f} ({f.low:.3f}–{f.high:.3f}) "
        f"| {measured['ece']:.3f}"
    )


# progress and timing -----------------------------------------------------------------------------------------


class Progress:
    """A line on stderr every 25 texts: done/total, rate, ETA."""

    def __init__(self, what: str) -> None:
        self.what, self.started, self.last = what, time.perf_counter(), -25

    def __call__(self, done: int, total: int) -> None:
        if done - self.last >= 25 or done == total:
            self.last = done
            rate = done / max(time.perf_counter() - self.started, 1e-9)
            eta = (total - done) / rate if rate else float("nan")
            print(f"{self.what}: {done}/{total}, {rate:.2f}/s, ETA {eta:.0f} s", file=sys.stderr)


def fastest_seconds(run: Callable[[], object], repeats: int) -> float:
    """The shortest wall time, in seconds, of ``repeats`` calls of ``run`` (as timeit does:
    slower calls are noise from the shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def batched_pass_seconds(
    call: Callable[[Sequence[str]], object], texts: list[str], repeats: int, batch: int = BATCH
) -> float:
    """Seconds of the fastest of ``repeats`` passes of ``call`` over ``texts``, ``batch`` texts
    per call, after one untimed warm-up call on the first batch."""
    call(texts[:batch])

    def one_pass() -> None:
        for offset in range(0, len(texts), batch):
            call(texts[offset : offset + batch])

    return fastest_seconds(one_pass, repeats)


# tables -----------------------------------------------------------------------------------------


def machine_description() -> str:
    """``"<cores> cores, <CPU model>"`` for a results header: the model name from /proc/cpuinfo,
    else what ``platform`` knows."""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {cpu}"


def table_head(*columns: str) -> list[str]:
    """A markdown table's header line and separator line for ``columns``."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
