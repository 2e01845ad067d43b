"""Label balance: counts and shares per label, and labels with too few examples to learn or test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.audit.result import CheckResult, share

NAME, TITLE = "balance", "Label balance"
# Below these counts a label cannot be learned / measured reliably (a rule of thumb, settable).
MIN_TRAIN_PER_LABEL = 10
MIN_TEST_PER_LABEL = 30


@dataclass(frozen=True)
class LabelCount:
    label: str
    count: int
    share: float
    test_count: int | None
    problem: str


def check_balance(
    label_names: Sequence[str],
    labels: Sequence[str | None],
    test_labels: Sequence[str | None] | None = None,
    *,
    min_train: int = MIN_TRAIN_PER_LABEL,
    min_test: int = MIN_TEST_PER_LABEL,
) -> CheckResult:
    """Per task label: count and share of the audited labels (and of the test set's gold)."""
    counts = Counter(label for label in labels if label is not None)
    total = sum(counts.values())
    test_counts = Counter(label for label in test_labels or [] if label is not None)
    rows = []
    for label in label_names:
        problems = []
        if counts[label] == 0:
            problems.append("no training example")
        elif counts[label] < min_train:
            problems.append(f"fewer than {min_train} training examples")
        if test_labels is not None:
            if test_counts[label] and not counts[label]:
                problems.append("in the test set but not in the training data")
            elif test_counts[label] < min_test:
                problems.append(f"fewer than {min_test} test examples")
        rows.append(
            LabelCount(
                label=label,
                count=counts[label],
                share=round(share(counts[label], total), 4),
                test_count=test_counts[label] if test_labels is not None else None,
                problem="; ".join(problems),
            )
        )
    present = [row.count for row in rows if row.count]
    ratio = max(present) / min(present) if present else None
    missing_in_train = sorted(label for label in test_counts if not counts[label])
    flagged = [row for row in rows if row.problem]
    metrics = {
        "labelled_rows": total,
        "labels_present": len(present),
        "labels_in_task": len(label_names),
        "imbalance_ratio": ratio,
        "test_labels_missing_in_train": missing_in_train,
        "min_train_per_label": min_train,
        "min_test_per_label": min_test,
    }
    ordered = sorted(rows, key=lambda row: (not row.problem, row.count))
    if len(present) < 2:
        summary = (
            f"Only {len(present)} label occur(s) in {total} labelled rows; a classifier needs at "
            "least two."
        )
        advice = "Label examples of the other classes before training."
        return CheckResult(NAME, TITLE, "problem", len(flagged), summary, advice, metrics, ordered)
    summary = (
        f"{len(present)} of {len(label_names)} labels present in {total} labelled rows; the most "
        f"frequent is {ratio:.1f}× the rarest; {len(flagged)} label(s) have too few examples."
    )
    if missing_in_train:
        summary += f" Test labels missing from the training data: {', '.join(missing_in_train)}."
    advice = (
        "Label more examples of the flagged labels (or merge them), and use macro-F1 and "
        "per-label metrics rather than accuracy alone."
    )
    status = "problem" if missing_in_train else ("warning" if flagged or ratio > 10 else "ok")
    return CheckResult(NAME, TITLE, status, len(flagged), summary, advice, metrics, ordered)
