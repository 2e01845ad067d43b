"""Train/test leakage: test texts that also occur in the training data, exactly or nearly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.audit.near_duplicates import MinHashIndex
from stillhouse.audit.normalize import normalize_text
from stillhouse.audit.result import CheckResult, share
from stillhouse.data.records import Example

NAME, TITLE = "leakage", "Train/test leakage"


@dataclass(frozen=True)
class LeakedPair:
    test_id: str
    test_text: str
    train_id: str
    train_text: str
    kind: str  # "exact" (equal after normalisation) or "near" (shingle Jaccard ≥ threshold)
    similarity: float
    same_label: bool | None


def leaked_pairs(
    train: Sequence[Example],
    test: Sequence[Example],
    *,
    threshold: float,
    train_labels: Sequence[str | None] | None = None,
) -> list[LeakedPair]:
    """Every (test, train) pair that is equal after normalisation or has Jaccard ≥ threshold."""
    labels = train_labels or [example.gold for example in train]  # type: ignore[misc]
    train_keys = [normalize_text(example.text) for example in train]
    pairs = []
    for match in MinHashIndex([e.text for e in train], threshold).query([e.text for e in test]):
        held, seen = test[match.first], train[match.second]
        exact = normalize_text(held.text) == train_keys[match.second]
        gold, label = held.gold, labels[match.second]
        pairs.append(
            LeakedPair(
                test_id=held.id,
                test_text=held.text,
                train_id=seen.id,
                train_text=seen.text,
                kind="exact" if exact else "near",
                similarity=round(1.0 if exact else match.similarity, 4),
                same_label=None if gold is None or label is None else gold == label,
            )
        )
    # MinHash can miss an exact copy only through hashing of very short texts: add them.
    found = {(p.test_id, p.train_id) for p in pairs}
    rows_by_key: dict[str, list[int]] = {}
    for row, key in enumerate(train_keys):
        rows_by_key.setdefault(key, []).append(row)
    for held in test:
        for row in rows_by_key.get(normalize_text(held.text), []):
            if (held.id, train[row].id) not in found:
                gold, label = held.gold, labels[row]
                pairs.append(
                    LeakedPair(
                        held.id,
                        held.text,
                        train[row].id,
                        train[row].text,
                        "exact",
                        1.0,
                        None if gold is None or label is None else gold == label,
                    )
                )
    return sorted(pairs, key=lambda p: (p.kind != "exact", -p.similarity, p.test_id))


def check_leakage(
    train: Sequence[Example],
    test: Sequence[Example],
    *,
    threshold: float,
    train_labels: Sequence[str | None] | None = None,
) -> CheckResult:
    pairs = leaked_pairs(train, test, threshold=threshold, train_labels=train_labels)
    exact_tests = {p.test_id for p in pairs if p.kind == "exact"}
    leaked_tests = {p.test_id for p in pairs}
    leaked_train = {p.train_id for p in pairs}
    metrics = {
        "test_rows": len(test),
        "test_rows_leaked": len(leaked_tests),
        "test_share_leaked": share(len(leaked_tests), len(test)),
        "test_rows_exact": len(exact_tests),
        "train_rows_involved": len(leaked_train),
        "jaccard_threshold": threshold,
    }
    if not pairs:
        summary = f"No test text occurs in the training data (Jaccard ≥ {threshold:g})."
        return CheckResult(NAME, TITLE, "ok", 0, summary, "", metrics)
    summary = (
        f"{len(leaked_tests)} of {len(test)} test rows ({metrics['test_share_leaked']:.1%}) also "
        f"occur in the training data ({len(exact_tests)} exactly, the rest nearly); test metrics "
        "are inflated by them: a model is graded on texts it has seen."
    )
    advice = (
        "Drop the leaked training rows (--fix does) or move them to one side of the split, then "
        "evaluate again."
    )
    return CheckResult(NAME, TITLE, "problem", len(pairs), summary, advice, metrics, pairs)
