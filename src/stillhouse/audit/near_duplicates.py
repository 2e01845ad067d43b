"""Near duplicates: MinHash LSH (datasketch) over character shingles, optionally embedding cosine
for paraphrases; pairs are verified and joined into groups with union-find."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stillhouse.audit.normalize import normalize_text
from stillhouse.audit.result import CheckResult, share
from stillhouse.data.records import Example

NAME, TITLE = "near_duplicates", "Near duplicates"
SHINGLE_SIZE = 5
NUM_PERM = 64
# The LSH buckets are tuned this far below the Jaccard threshold, so that pairs just above it
# still become candidates (recall); the exact Jaccard check then removes the extra ones.
LSH_MARGIN = 0.15


@dataclass(frozen=True)
class SimilarPair:
    """Rows ``first`` < ``second`` (positions) and how alike they are."""

    first: int
    second: int
    similarity: float
    method: str  # "minhash" (character-shingle Jaccard) or "embedding" (cosine)


@dataclass(frozen=True)
class NearDuplicateGroup:
    size: int
    ids: list[str]
    texts: list[str]
    labels: list[str | None]
    min_similarity: float
    method: str
    conflicting: bool


def shingles(normalized: str, size: int = SHINGLE_SIZE) -> set[bytes]:
    """The text's character ``size``-grams (the whole text when shorter), as UTF-8 bytes."""
    encoded = normalized
    if len(encoded) <= size:
        return {encoded.encode("utf-8")}
    return {encoded[i : i + size].encode("utf-8") for i in range(len(encoded) - size + 1)}


def jaccard(first: set[bytes], second: set[bytes]) -> float:
    union = len(first | second)
    return len(first & second) / union if union else 1.0


class MinHashIndex:
    """An LSH index over the character shingles of texts; query with other texts.

    Candidates from LSH buckets tuned :data:`LSH_MARGIN` below ``threshold`` are verified with
    the exact shingle Jaccard: the result has no false positives, and pairs near the threshold
    are rarely missed.
    """

    def __init__(self, texts: Sequence[str], threshold: float, num_perm: int = NUM_PERM) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self._normalized = [normalize_text(text) for text in texts]
        self._minhashes = _minhashes(self._normalized, num_perm)
        self._lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_MARGIN), num_perm=num_perm)
        with self._lsh.insertion_session() as session:
            for key, minhash in enumerate(self._minhashes):
                session.insert(key, minhash, check_duplication=False)

    def self_pairs(self) -> list[SimilarPair]:
        """Pairs of indexed texts with shingle Jaccard ≥ threshold (exact duplicates included)."""
        pairs = []
        for row, minhash in enumerate(self._minhashes):
            candidates = [other for other in self._lsh.query(minhash) if other > row]
            pairs.extend(self._verified(self._normalized[row], row, candidates))
        return pairs

    def query(self, texts: Sequence[str]) -> list[SimilarPair]:
        """Pairs (query position, indexed position) with Jaccard ≥ threshold."""
        normalized = [normalize_text(text) for text in texts]
        minhashes = _minhashes(normalized, self.num_perm)
        pairs = []
        for row, minhash in enumerate(minhashes):
            pairs.extend(self._verified(normalized[row], row, self._lsh.query(minhash)))
        return pairs

    def _verified(self, text: str, row: int, candidates: list[int]) -> list[SimilarPair]:
        if not candidates:
            return []
        own = shingles(text)
        found = []
        for other in candidates:
            similarity = jaccard(own, shingles(self._normalized[other]))
            if similarity >= self.threshold:
                found.append(SimilarPair(row, other, similarity, "minhash"))
        return found


def _minhashes(normalized: Sequence[str], num_perm: int) -> list[Any]:
    """One LeanMinHash (hash values only, no permutation tables) per text's shingles."""
    from datasketch import LeanMinHash, MinHash

    found = MinHash.generator((shingles(text) for text in normalized), num_perm=num_perm)
    return [LeanMinHash(minhash) for minhash in found]


def paraphrase_pairs(embeddings: np.ndarray, threshold: float) -> list[SimilarPair]:
    """Pairs of rows whose (L2-normalised) embeddings have cosine ≥ ``threshold``."""
    from sklearn.neighbors import NearestNeighbors

    if len(embeddings) < 2:
        return []
    index = NearestNeighbors(radius=1.0 - threshold, metric="cosine").fit(embeddings)
    distances, neighbours = index.radius_neighbors(embeddings)
    pairs = []
    for row, (row_distances, row_neighbours) in enumerate(zip(distances, neighbours, strict=True)):
        for distance, other in zip(row_distances, row_neighbours, strict=True):
            if other > row:
                pairs.append(SimilarPair(row, int(other), 1.0 - float(distance), "embedding"))
    return pairs


def union_find_groups(size: int, pairs: Sequence[SimilarPair]) -> list[list[int]]:
    """Connected components (of 2+ rows) of the pair graph, each sorted, largest first."""
    parent = list(range(size))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for pair in pairs:
        a, b = root(pair.first), root(pair.second)
        if a != b:
            parent[max(a, b)] = min(a, b)
    components: dict[int, list[int]] = {}
    for node in range(size):
        components.setdefault(root(node), []).append(node)
    groups = [rows for rows in components.values() if len(rows) > 1]
    return sorted(groups, key=lambda rows: (-len(rows), rows[0]))


def near_duplicate_groups(
    examples: Sequence[Example],
    labels: Sequence[str | None],
    *,
    threshold: float,
    embeddings: np.ndarray | None = None,
    cosine_threshold: float = 0.95,
) -> list[NearDuplicateGroup]:
    """Groups of rows that are alike but not equal after normalisation (exact duplicates are the
    duplicates check's): shingle Jaccard ≥ ``threshold``, or embedding cosine ≥
    ``cosine_threshold`` when ``embeddings`` are given."""
    keys = [normalize_text(example.text) for example in examples]
    first_of_key: dict[str, int] = {}
    unique_rows = [first_of_key.setdefault(key, row) for row, key in enumerate(keys)]
    representatives = sorted(set(unique_rows))
    index = MinHashIndex([examples[row].text for row in representatives], threshold)
    pairs = [
        SimilarPair(representatives[p.first], representatives[p.second], p.similarity, p.method)
        for p in index.self_pairs()
    ]
    if embeddings is not None:
        pairs += [
            p
            for p in paraphrase_pairs(embeddings, cosine_threshold)
            if keys[p.first] != keys[p.second]
        ]
    # Exact copies join their representative's group, so a group lists every row it covers.
    pairs += [
        SimilarPair(rep, row, 1.0, "exact") for row, rep in enumerate(unique_rows) if rep != row
    ]
    components = union_find_groups(len(examples), pairs)
    group_of = {row: number for number, rows in enumerate(components) for row in rows}
    pairs_in: list[list[SimilarPair]] = [[] for _ in components]
    for pair in pairs:
        if pair.method != "exact":
            pairs_in[group_of[pair.first]].append(pair)
    groups = []
    for rows, inside in zip(components, pairs_in, strict=True):
        if not inside:
            continue  # only exact copies: the duplicates check reports them
        group_labels = [labels[row] for row in rows]
        groups.append(
            NearDuplicateGroup(
                size=len(rows),
                ids=[examples[row].id for row in rows],
                texts=[examples[row].text for row in rows],
                labels=group_labels,
                min_similarity=round(min(p.similarity for p in inside), 4),
                method="+".join(sorted({p.method for p in inside})),
                conflicting=len({label for label in group_labels if label is not None}) > 1,
            )
        )
    return groups


def check_near_duplicates(
    examples: Sequence[Example],
    labels: Sequence[str | None],
    *,
    threshold: float,
    embeddings: np.ndarray | None = None,
    cosine_threshold: float = 0.95,
) -> CheckResult:
    groups = near_duplicate_groups(
        examples,
        labels,
        threshold=threshold,
        embeddings=embeddings,
        cosine_threshold=cosine_threshold,
    )
    rows = sum(group.size for group in groups)
    conflicting = sum(group.conflicting for group in groups)
    metrics = {
        "groups": len(groups),
        "rows_in_groups": rows,
        "share_in_groups": share(rows, len(examples)),
        "conflicting_groups": conflicting,
        "jaccard_threshold": threshold,
        "cosine_threshold": cosine_threshold if embeddings is not None else None,
    }
    how = f"character 5-gram Jaccard ≥ {threshold:g}"
    if embeddings is not None:
        how += f" or embedding cosine ≥ {cosine_threshold:g}"
    if not groups:
        return CheckResult(NAME, TITLE, "ok", 0, f"No near duplicates ({how}).", "", metrics)
    summary = (
        f"{len(groups)} group(s) of near-duplicate texts ({how}) cover {rows} rows "
        f"({metrics['share_in_groups']:.1%}); {conflicting} group(s) have conflicting labels."
    )
    advice = (
        "Near copies over-weight some phrasings and hide label inconsistencies: keep one per "
        "group where they add nothing, and make their labels agree."
    )
    status = "problem" if conflicting else "warning"
    sorted_groups = sorted(groups, key=lambda g: (not g.conflicting, -g.size))
    return CheckResult(NAME, TITLE, status, len(groups), summary, advice, metrics, sorted_groups)
