"""Outliers / out-of-distribution texts: mean cosine distance to the k nearest other texts in
embedding space (scikit-learn), flagged by a robust cut-off (upper quartile + 3 IQR)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stillhouse.audit.neighbours import nearest_neighbours
from stillhouse.audit.result import CheckResult, share, skipped
from stillhouse.data.records import Example

NAME, TITLE = "outliers", "Outliers"
NEIGHBOURS = 10
IQR_FACTOR = 3.0


@dataclass(frozen=True)
class Outlier:
    id: str
    text: str
    label: str | None
    distance: float
    nearest_id: str


def knn_distances(embeddings: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Mean cosine distance of each row to its ``k`` nearest other rows, and the nearest one."""
    distances, neighbours = nearest_neighbours(embeddings, k)
    return distances.mean(axis=1), neighbours[:, 0]


def check_outliers(
    examples: Sequence[Example],
    labels: Sequence[str | None],
    embeddings: np.ndarray,
    *,
    k: int = NEIGHBOURS,
) -> CheckResult:
    if len(examples) < 3:
        return skipped(NAME, TITLE, f"needs at least 3 texts, got {len(examples)}.")
    distance, nearest = knn_distances(embeddings, k)
    upper, lower = np.percentile(distance, [75, 25])
    cutoff = float(upper + IQR_FACTOR * (upper - lower))
    rows = [int(row) for row in np.argsort(-distance) if distance[row] > cutoff]
    found = [
        Outlier(
            id=examples[row].id,
            text=examples[row].text,
            label=labels[row],
            distance=round(float(distance[row]), 4),
            nearest_id=examples[int(nearest[row])].id,
        )
        for row in rows
    ]
    metrics = {
        "k": min(k, len(examples) - 1),
        "cutoff": cutoff,
        "median_distance": float(np.median(distance)),
        "outliers": len(found),
        "outlier_share": share(len(found), len(examples)),
    }
    if not found:
        summary = f"No text is far from all others (mean {metrics['k']}-NN cosine distance ≤ {cutoff:.3f})."
        return CheckResult(NAME, TITLE, "ok", 0, summary, "", metrics)
    summary = (
        f"{len(found)} text(s) ({metrics['outlier_share']:.1%}) are far from every other text "
        f"(mean {metrics['k']}-NN cosine distance > {cutoff:.3f}; median {metrics['median_distance']:.3f})."
    )
    advice = (
        "Look at them: off-topic, garbled or another language are candidates to drop; rare but "
        "valid cases need more examples like them."
    )
    return CheckResult(NAME, TITLE, "warning", len(found), summary, advice, metrics, found)
