"""The k nearest other rows of every row in embedding space (cosine), shared by the outlier and
label-error checks."""

from __future__ import annotations

import numpy as np


def nearest_neighbours(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)``, each ``(n, k)``, nearest first, the row itself left out.

    ``k`` is capped at ``n - 1``. Cosine distance (1 - cosine similarity) from scikit-learn.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(embeddings) - 1)
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(embeddings)
    distances, neighbours = index.kneighbors(embeddings)
    # The row itself is usually first, but an exact copy may take its place: drop it wherever
    # it is, else drop the farthest.
    own = neighbours == np.arange(len(embeddings))[:, None]
    keep = ~own
    keep[own.sum(axis=1) == 0, -1] = False
    n = len(embeddings)
    return distances[keep].reshape(n, k), neighbours[keep].reshape(n, k)
