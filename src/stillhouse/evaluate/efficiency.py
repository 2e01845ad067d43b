"""Efficiency and reproducibility of a system that predicts in this process.

Measured on a bounded, seeded sample of the test texts (``EfficiencySettings.sample``):

1. **Warm-up**: the first ``warmup`` sample texts are predicted once, untimed (lazy loading,
   caches, JIT).
2. **Latency at batch size 1**: every sample text alone, ``time.perf_counter`` around
   ``predict([text])``; p50/p95/p99 and mean in milliseconds (numpy's linear quantiles).
3. **Throughput**: the sample predicted in batches of each size in ``batch_sizes`` (sizes
   larger than the sample are skipped; batch size 1 reuses step 2); items per second, and the
   best batch size.
4. **Peak memory**: the peak resident set size (RSS) of the process during steps 2 and 3 minus
   its RSS just before step 2, in bytes. On Linux the kernel keeps the peak itself (``VmHWM``
   in ``/proc/self/status``, reset by writing ``5`` to ``/proc/self/clear_refs``): exact, no
   sampling. Elsewhere a thread reads the RSS (psutil) every 5 ms, which can miss a short-lived
   peak. RSS sees memory allocated by native code (llama.cpp, onnxruntime, torch), which
   ``tracemalloc`` would not; it is counted in pages and 0 when nothing new was allocated.
5. **Size and parameters** from the predictor's ``describe()``: ``size_bytes`` (else the size of
   the file or folder at ``path``) and ``parameters``; None when not reported.
6. **Tokens per item** (LLM systems and cascades with an LLM stage): the mean over the timed
   predictions of ``tokens_in`` (prompt), ``tokens_in_new`` (prompt tokens after the part the
   runtime keeps decoded), ``tokens_out`` (generated) and ``tokens_decoded`` (all tokens the
   runtime decoded, label tokens scored included) in the predictions' ``info``, as
   :mod:`stillhouse.llm.predictor` records them; each None when not reported, the whole None
   when none is.

**Reproducibility**: the answers of step 2 (a second prediction of each sample text, at batch
size 1) are compared with the system's answers in the main run: the share of identical labels
and, with probabilities, the share whose every probability is within 1e-6, and the largest
difference. Timings on a machine shared with other work are noisy; compare systems measured in
one run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.data.records import Prediction
from stillhouse.predictors import Predictor

PROBABILITY_TOLERANCE = 1e-6
MEMORY_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class EfficiencySettings:
    """``sample``: texts timed (0 turns efficiency and reproducibility off); ``warmup``: untimed
    predictions first; ``batch_sizes``: candidates for throughput; ``seed``: picks the sample."""

    sample: int = 100
    warmup: int = 5
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    seed: int = 0


def sample_positions(n: int, settings: EfficiencySettings) -> np.ndarray:
    """Which test items are timed: ``min(sample, n)`` positions, seeded, in test order."""
    size = min(settings.sample, n)
    return np.sort(np.random.default_rng(settings.seed).choice(n, size=size, replace=False))


def measure_efficiency(
    predictor: Predictor, texts: Sequence[str], settings: EfficiencySettings
) -> tuple[dict[str, Any], list[Prediction]]:
    """The ``efficiency`` section for ``texts`` (the sample), and the batch-1 predictions of
    step 2 (for :func:`reproducibility`)."""
    for text in texts[: settings.warmup]:
        predictor.predict([text])
    latencies, predictions = [], []
    with PeakMemory() as memory:
        for text in texts:
            started = time.perf_counter()
            (prediction,) = predictor.predict([text])
            latencies.append((time.perf_counter() - started) * 1000)
            predictions.append(prediction)
        latency = np.array(latencies)
        throughput = {1: len(texts) / (latency.sum() / 1000)} if latency.sum() > 0 else {}
        for size in settings.batch_sizes:
            if size == 1 or size > len(texts):
                continue
            started = time.perf_counter()
            for start in range(0, len(texts), size):
                predictor.predict(texts[start : start + size])
            throughput[size] = len(texts) / (time.perf_counter() - started)
    best = max(throughput, key=throughput.__getitem__) if throughput else None
    description = predictor.describe()
    return {
        "sample": len(texts),
        "warmup": min(settings.warmup, len(texts)),
        "latency_ms": {
            "p50": float(np.quantile(latency, 0.50)),
            "p95": float(np.quantile(latency, 0.95)),
            "p99": float(np.quantile(latency, 0.99)),
            "mean": float(latency.mean()),
        },
        "throughput": {
            "items_per_second": throughput[best] if best is not None else None,
            "best_batch_size": best,
            "by_batch_size": {str(size): rate for size, rate in throughput.items()},
        },
        "peak_memory_bytes": memory.peak_delta,
        "memory_method": f"peak RSS ({memory.method}) during the timed runs "
        "minus RSS before them (after warm-up)",
        "size_bytes": size_on_disk(description),
        "parameters": _whole_number(description.get("parameters")),
        "tokens_per_item": _tokens(predictions),
    }, predictions


def reproducibility(first: Sequence[Prediction], second: Sequence[Prediction]) -> dict[str, Any]:
    """How far two predictions of the same texts agree (see the module docstring)."""
    same = [a.answer == b.answer for a, b in zip(first, second, strict=True)]
    result: dict[str, Any] = {
        "sample": len(same),
        "identical_answers": float(np.mean(same)) if same else None,
        "identical_probabilities": None,
        "max_probability_difference": None,
        "tolerance": PROBABILITY_TOLERANCE,
    }
    pairs = list(zip(first, second, strict=True))
    if pairs and all(a.probs is not None and b.probs is not None for a, b in pairs):
        differences = [
            max(abs(a.probs[label] - b.probs[label]) for label in a.probs)  # type: ignore[index]
            for a, b in pairs
        ]
        result["identical_probabilities"] = float(
            np.mean([d <= PROBABILITY_TOLERANCE for d in differences])
        )
        result["max_probability_difference"] = float(max(differences))
    return result


def size_on_disk(description: dict[str, Any]) -> int | None:
    """``size_bytes`` from a ``describe()``, else the bytes of the file or folder at ``path``."""
    size = _whole_number(description.get("size_bytes"))
    if size is not None:
        return size
    path = description.get("path")
    if not isinstance(path, str) or not Path(path).exists():
        return None
    target = Path(path)
    if target.is_file():
        return target.stat().st_size
    return sum(item.stat().st_size for item in target.rglob("*") if item.is_file())


def _whole_number(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _tokens(predictions: Sequence[Prediction]) -> dict[str, float | None] | None:
    counts: dict[str, float | None] = {}
    for key in ("tokens_in", "tokens_in_new", "tokens_out", "tokens_decoded"):
        values = [p.info[key] for p in predictions if isinstance(p.info.get(key), int | float)]
        counts[key.removeprefix("tokens_")] = float(np.mean(values)) if values else None
    return counts if any(value is not None for value in counts.values()) else None


class PeakMemory:
    """Context manager: the peak RSS of this process above its RSS on entry, in ``peak_delta``.

    Read from the kernel's high-water mark where it can be reset (Linux); polled by a thread
    every ``MEMORY_POLL_SECONDS`` elsewhere."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0
        self._start = 0
        self.peak_delta = 0
        self.method = "kernel high-water mark"

    def _poll(self) -> None:
        while not self._stop.wait(MEMORY_POLL_SECONDS):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._start = self._peak = self._process.memory_info().rss
        if not _reset_kernel_peak():
            self.method = f"psutil, sampled every {MEMORY_POLL_SECONDS * 1000:g} ms"
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is None:
            self._peak = max(self._peak, _kernel_peak())
        else:
            self._stop.set()
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        self.peak_delta = int(self._peak - self._start)


def _reset_kernel_peak() -> bool:
    """Reset the kernel's peak RSS of this process to its current RSS; False where it can't."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _kernel_peak() > 0
    except OSError:
        return False


def _kernel_peak() -> int:
    """``VmHWM`` of this process in bytes (0 when the kernel does not report it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
