"""What the card reports about a model: held-out quality with intervals and CPU speed.

Quality: accuracy and macro-F1 on the held-out split with 95% percentile bootstrap intervals
(:mod:`stillhouse.evaluate.bootstrap`, the same resampling evaluate uses). Speed: latency of
one text at a time (median and p95, after a warm-up) and throughput in batches, measured on
this machine with the loaded model, as a served model would run.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from stillhouse.evaluate.bootstrap import (
    bootstrap_interval,
    macro_f1_per_resample,
    resample_indices,
)

_WARM_UP = 3


def held_out_metrics(
    probs: np.ndarray, y_index: np.ndarray, *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Accuracy and macro-F1 of ``probs`` (shape (n, k)) against ``y_index`` with 95% CIs.

    Macro-F1 averages over the labels that occur in the held-out gold or predictions (as
    scikit-learn's ``f1_score`` does without ``labels``).
    """
    predicted = probs.argmax(axis=1)
    present = np.unique(np.concatenate([y_index, predicted]))
    compact = {int(label): column for column, label in enumerate(present)}
    y_true = np.array([compact[int(label)] for label in y_index])
    y_pred = np.array([compact[int(label)] for label in predicted])
    indices = resample_indices(len(y_index), n_resamples, seed)
    accuracy = bootstrap_interval((y_true == y_pred).astype(float), indices)
    macro = bootstrap_interval(
        functools.partial(macro_f1_per_resample, y_true, y_pred, n_labels=len(present)), indices
    )
    return {
        "n": len(y_index),
        "accuracy": accuracy._asdict(),
        "macro_f1": macro._asdict(),
        "confidence": 0.95,
        "n_resamples": n_resamples,
    }


def structured_held_out(
    score: Callable[[np.ndarray], tuple[dict[str, Any], Any]],
    n: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """The held-out entry of a multilabel or span model: ``score(indices)`` is evaluate's
    ``multilabel_results`` or ``span_results`` on the ``n`` held-out texts, whose metrics get
    95% bootstrap intervals over ``n_resamples`` resamples; ``extra`` entries go last."""
    core, _ = score(resample_indices(n, n_resamples, seed))
    return {
        "n": n,
        **core["metrics"],
        "per_label": core["per_label"],
        "confidence": 0.95,
        "n_resamples": n_resamples,
        **extra,
    }


def measure_speed(
    predict: Callable[[Sequence[str]], Any],
    texts: Sequence[str],
    *,
    latency_texts: int = 200,
    throughput_texts: int = 1000,
    batch_size: int = 64,
    threads: int | None = None,
) -> dict[str, Any]:
    """Latency at batch 1 over the first ``latency_texts`` texts (cycled if fewer) and throughput
    at ``batch_size`` over ``throughput_texts``; ``predict`` takes a list of texts."""
    if not texts:
        raise ValueError("no texts to measure speed on")
    for text in texts[:_WARM_UP]:
        predict([text])
    singles = [texts[i % len(texts)] for i in range(latency_texts)]
    latencies = []
    for text in singles:
        start = time.perf_counter()
        predict([text])
        latencies.append((time.perf_counter() - start) * 1000)
    batch = [texts[i % len(texts)] for i in range(throughput_texts)]
    start = time.perf_counter()
    for offset in range(0, len(batch), batch_size):
        predict(batch[offset : offset + batch_size])
    seconds = time.perf_counter() - start
    return {
        "latency_ms_batch1": {
            "median": float(np.median(latencies)),
            "p95": float(np.percentile(latencies, 95)),
            "n": len(latencies),
        },
        "throughput_per_s": float(len(batch) / seconds),
        "throughput_batch_size": batch_size,
        "throughput_n": len(batch),
        "threads": threads or os.cpu_count(),
        "cpu": cpu_model(),
        "machine_cores": os.cpu_count(),
    }


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
