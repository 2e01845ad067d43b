"""A fast label retriever for many-label tasks: which labels a text is probably about.

Each label is embedded from its name and description (all-MiniLM-L6-v2, see fewshot.py); a
text's score for a label is the cosine between the text and the label's description, plus,
when a labelled seed exists, the cosine to the label's nearest seed text (kNN over the seed).
Scores become probabilities by a softmax whose temperature is fitted on the seed by
leave-one-out (each seed text scored without itself); the same leave-one-out pass measures how
often the gold label lands in the top K (the shortlist's coverage).

In: the task's labels, optional seed :class:`Example` s; out: score rows, probabilities, the
leave-one-out coverage, and demonstrations drawn to cover a text's shortlisted labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stillhouse.data.records import Example
from stillhouse.llm.fewshot import embed
from stillhouse.task import Task

# Weight of the label-description cosine beside the nearest-seed-text cosine: example texts
# match far better than a one-line description, which mostly breaks ties between labels.
DESCRIPTION_WEIGHT = 0.5
# Softmax temperature when there is no seed to fit it on (an assumption, recorded as such).
DEFAULT_TEMPERATURE = 0.05
_TEMPERATURES = np.geomspace(0.005, 0.5, 41)


def label_text(name: str, description: str) -> str:
    """What a label is embedded from: its name in words, then its description."""
    words = name.replace("_", " ").replace("-", " ")
    return f"{words}: {description}" if description else words


@dataclass(frozen=True)
class LeaveOneOut:
    """The retriever on its own seed, each text scored without itself."""

    n: int
    ranks: np.ndarray  # per seed text: the gold label's rank (0 = top)
    temperature: float

    def coverage(self, k: int) -> float:
        """Share of seed texts whose gold label is in the top ``k``, add-one smoothed (a seed
        where every text hits does not claim certainty)."""
        return float((np.sum(self.ranks < k) + 1) / (self.n + 2))


class LabelRetriever:
    """Scores every label of ``task`` for texts; ``seed`` (labelled examples) adds kNN."""

    def __init__(self, task: Task, seed: Sequence[Example] = ()) -> None:
        self.labels = list(task.label_names)
        index = {label: i for i, label in enumerate(self.labels)}
        self.label_vectors = embed([label_text(n, d) for n, d in task.labels.items()])
        self.seed = [e for e in seed if isinstance(e.gold, str) and e.gold in index]
        self.seed_labels = np.array([index[str(e.gold)] for e in self.seed], dtype=int)
        self.seed_vectors = (
            embed([e.text for e in self.seed]) if self.seed else np.zeros((0, 384), np.float32)
        )
        self.leave_one_out = self._leave_one_out() if len(self.seed) >= 2 else None
        self.temperature = (
            self.leave_one_out.temperature if self.leave_one_out else DEFAULT_TEMPERATURE
        )

    def _combine(self, text_vectors: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        """Scores ``(n texts, n labels)``; ``exclude[i]`` is the seed row text i may not use
        (itself), -1 for none."""
        scores = text_vectors @ self.label_vectors.T
        if not self.seed:
            return scores
        similarity = text_vectors @ self.seed_vectors.T
        if exclude is not None:
            rows = np.flatnonzero(exclude >= 0)
            similarity[rows, exclude[rows]] = -np.inf
        nearest = np.full(scores.shape, -np.inf)
        for label in np.unique(self.seed_labels):
            nearest[:, label] = similarity[:, self.seed_labels == label].max(axis=1)
        # a label without seed texts (or whose only one is the text itself) falls back to its
        # description cosine in the kNN part too
        missing = ~np.isfinite(nearest)
        nearest[missing] = scores[missing]
        return nearest + DESCRIPTION_WEIGHT * scores

    def _leave_one_out(self) -> LeaveOneOut:
        scores = self._combine(self.seed_vectors, np.arange(len(self.seed)))
        gold = scores[np.arange(len(self.seed)), self.seed_labels]
        ranks = (scores > gold[:, None]).sum(axis=1)
        # the temperature with the lowest leave-one-out log loss
        losses = []
        for temperature in _TEMPERATURES:
            logp = _log_softmax(scores / temperature)
            losses.append(-logp[np.arange(len(self.seed)), self.seed_labels].mean())
        return LeaveOneOut(len(self.seed), ranks, float(_TEMPERATURES[int(np.argmin(losses))]))

    @staticmethod
    def embed_texts(texts: Sequence[str]) -> np.ndarray:
        return embed(list(texts)) if texts else np.zeros((0, 384), np.float32)

    def scores(self, vectors: np.ndarray, ids: Sequence[str] | None = None) -> np.ndarray:
        """Score rows ``(len(vectors), n labels)`` for text embeddings (:meth:`embed_texts`);
        a text whose id is a seed example's does not see that example (so annotating the seed
        itself is not answered by its own label)."""
        exclude = None
        if ids is not None and self.seed:
            where = {e.id: i for i, e in enumerate(self.seed)}
            exclude = np.array([where.get(i, -1) for i in ids], dtype=int)
        return self._combine(vectors, exclude)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Softmax of score rows at the fitted (or assumed) temperature."""
        return np.exp(_log_softmax(scores / self.temperature))

    def demonstrations(
        self,
        vector: np.ndarray,
        text_id: str | None,
        shortlist: Sequence[int],
        k: int,
        cover: int = 3,
    ) -> list[Example]:
        """``k`` seed examples for a text's prompt: the nearest seed text of each of its top
        ``cover`` shortlisted labels first, then the nearest others; most similar last (nearest
        the text), never the text's own example."""
        if not self.seed or k == 0:
            return []
        similarity = self.seed_vectors @ vector
        usable = np.array([e.id != text_id for e in self.seed])
        chosen: list[int] = []
        for label in list(shortlist)[: min(cover, k)]:
            rows = np.flatnonzero((self.seed_labels == label) & usable)
            if rows.size:
                chosen.append(int(rows[np.argmax(similarity[rows])]))
        for row in np.argsort(-similarity, kind="stable"):
            if len(chosen) >= k:
                break
            if usable[row] and int(row) not in chosen:
                chosen.append(int(row))
        chosen.sort(key=lambda row: similarity[row])
        return [self.seed[row] for row in chosen]


def _log_softmax(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=-1, keepdims=True)
    return values - (top + np.log(np.exp(values - top).sum(axis=-1, keepdims=True)))
