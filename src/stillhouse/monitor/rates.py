"""Rates of the window: abstention, fallback (answers from a later cascade stage), latency, the
versions that answered, and all of them over time.

**Which stage is first.** The log names the stage that answered, not the cascade's order. A
text that reaches a later stage has also paid for every earlier one, so the first stage is the
one whose answers have the lowest median latency, unless ``--first-stage`` names it. The
fallback rate is the share of predictions answered (or abstained on) by any other stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from stillhouse.data.store import PredictionRecord
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.intervals import wilson_interval

# Bucket sizes over time, the smallest that gives at most MAX_BUCKETS buckets is used.
BUCKET_SECONDS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
MAX_BUCKETS = 48


def share(count: int, total: int) -> dict[str, float]:
    """A share with its 95% Wilson interval."""
    low, high = wilson_interval(count, total)
    return {"estimate": count / total if total else 0.0, "low": low, "high": high}


def abstention(records: Sequence[PredictionRecord]) -> dict[str, Any]:
    count = sum(record.abstained for record in records)
    return {"count": count, "rate": share(count, len(records))}


def first_stage(records: Sequence[PredictionRecord], chosen: str | None) -> tuple[str, str] | None:
    """The first cascade stage and how it was found (``--first-stage`` or ``lowest median
    latency``); None when no prediction names a stage. E840 for a ``chosen`` stage that
    answered nothing in the window."""
    latencies: dict[str, list[float]] = {}
    for record in records:
        if record.stage is not None:
            latencies.setdefault(record.stage, []).append(record.latency_ms)
    if not latencies:
        if chosen is not None:
            raise fail(Errors.E840, stage=chosen, stages="none (no prediction names a stage)")
        return None
    if chosen is not None:
        if chosen not in latencies:
            raise fail(Errors.E840, stage=chosen, stages=", ".join(sorted(latencies)))
        return chosen, "--first-stage"
    fastest = min(sorted(latencies), key=lambda stage: float(np.median(latencies[stage])))
    return fastest, "lowest median latency"


def fallback(records: Sequence[PredictionRecord], first: tuple[str, str] | None) -> dict[str, Any]:
    stages = Counter(record.stage for record in records if record.stage is not None)
    assert first is not None
    later = sum(1 for record in records if record.stage is not None and record.stage != first[0])
    return {
        "first_stage": first[0],
        "first_stage_from": first[1],
        "stages": dict(stages.most_common()),
        "rate": share(later, len(records)),
    }


def latency(records: Sequence[PredictionRecord]) -> dict[str, float]:
    values = np.array([record.latency_ms for record in records], dtype=float)
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(values.mean()),
    }


def versions(records: Sequence[PredictionRecord]) -> dict[str, int]:
    return dict(Counter(record.version for record in records).most_common())


def bucket_seconds(start: float, end: float) -> int:
    span = max(end - start, 1.0)
    return next((size for size in BUCKET_SECONDS if span / size <= MAX_BUCKETS), BUCKET_SECONDS[-1])


def over_time(
    records: Sequence[PredictionRecord], first: tuple[str, str] | None, *, confidences: bool
) -> dict[str, Any]:
    """Per time bucket (aligned to the bucket size in UTC): predictions, abstention rate,
    fallback rate (with a cascade), estimated accuracy and mean confidence (when every answer
    has a confidence) and p95 latency. Buckets without predictions are left out."""
    times = np.array([record.time for record in records])
    size = bucket_seconds(float(times.min()), float(times.max()))
    keys = np.floor(times / size).astype(np.int64)
    buckets = []
    for key in np.unique(keys):
        chosen = [records[i] for i in np.flatnonzero(keys == key)]
        row: dict[str, Any] = {
            "start": float(key * size),
            "n": len(chosen),
            "abstention_rate": sum(r.abstained for r in chosen) / len(chosen),
            "fallback_rate": None,
            "estimated_accuracy": None,
            "mean_confidence": None,
            "p95_latency_ms": float(np.percentile([r.latency_ms for r in chosen], 95)),
        }
        if first is not None:
            later = sum(1 for r in chosen if r.stage is not None and r.stage != first[0])
            row["fallback_rate"] = later / len(chosen)
        if confidences:
            values = np.array([r.confidence for r in chosen], dtype=float)
            answered = ~np.array([r.abstained for r in chosen])
            row["estimated_accuracy"] = float(np.where(answered, values, 0.0).mean())
            row["mean_confidence"] = float(values[answered].mean()) if answered.any() else None
        buckets.append(row)
    return {"bucket_seconds": size, "buckets": buckets}
