"""audit's embedding pass in Ray actors: all-MiniLM-L6-v2 loaded once per actor, the texts
embedded in chunks, the vectors put back together in order on the driver.

sentence-transformers sorts each call's texts by length before padding them into batches, so a
text's vector can differ from the one-process pass in the last float digits (its batch
neighbours and padding differ); the checks that use the vectors (outliers, paraphrases,
label issues) compare distances, not bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stillhouse.scale.engine import Engine, cluster_workers, connected
from stillhouse.scale.pool import WorkerPool

# texts per actor call: large enough that Ray's per-call cost is small next to the encoding
CHUNK = 512


def _load_encoder() -> Any:
    from stillhouse.llm.fewshot import sentence_encoder

    return sentence_encoder()


def _embed(_encoder: Any, texts: Sequence[str]) -> np.ndarray:
    from stillhouse.llm.fewshot import embed

    return embed(texts)


def embed_on_ray(texts: Sequence[str], engine: Engine) -> np.ndarray:
    """Unit-length embeddings of ``texts``, shape ``(len(texts), 384)``, computed by actors."""
    chunks = [list(texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK)]
    with connected(engine):
        pool = WorkerPool.start(
            _load_encoder,
            (),
            workers=cluster_workers(engine),
            threads=engine.threads,
            what="the sentence encoder all-MiniLM-L6-v2",
        )
        try:
            parts = list(pool.ordered(_embed, ((chunk,) for chunk in chunks)))
        finally:
            pool.close()
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
