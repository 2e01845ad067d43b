"""Label balance: counts, shares, labels too rare to learn or test, test labels unseen in train."""

from __future__ import annotations

from collections import Counter

from audit_data import nusax_rows

from stillhouse.audit.balance import check_balance

LABELS = ["positive", "neutral", "negative"]


def test_counts_and_shares_match_the_data() -> None:
    labels = [r["label"] for r in nusax_rows("english", count=300)]
    result = check_balance(LABELS, labels)
    counts = Counter(labels)
    by_label = {row.label: row for row in result.findings}
    assert {label: row.count for label, row in by_label.items()} == {
        label: counts[label] for label in LABELS
    }
    assert abs(sum(row.share for row in result.findings) - 1.0) < 1e-3
    assert result.metrics["imbalance_ratio"] == max(counts.values()) / min(counts.values())


def test_rare_labels_and_test_only_labels_are_flagged() -> None:
    labels = ["positive"] * 50 + ["negative"] * 3
    test_labels = ["positive"] * 40 + ["neutral"] * 5
    result = check_balance(LABELS, labels, test_labels)
    by_label = {row.label: row for row in result.findings}
    assert "fewer than 10 training examples" in by_label["negative"].problem
    assert "not in the training data" in by_label["neutral"].problem
    assert result.metrics["test_labels_missing_in_train"] == ["neutral"]
    assert result.status == "problem"
    assert result.findings[0].problem  # flagged labels come first


def test_a_single_label_is_a_problem_not_a_crash() -> None:
    result = check_balance(LABELS, ["positive"] * 20)
    assert result.status == "problem" and "at least two" in result.summary
