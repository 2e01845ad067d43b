"""Accuracy metrics against definitions written out as loops."""

from __future__ import annotations

import numpy as np
import pytest

from stillhouse.evaluate.accuracy import (
    classification_metrics,
    label_indices,
    multilabel_metrics,
    span_match_counts,
    span_metrics,
)

LABELS = ["positive", "neutral", "negative", "mixed"]  # deliberately not alphabetical


def sentiment_predictions(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Imbalanced gold; a classifier right 75% of the time that confuses neighbours; no `mixed` gold."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS[:3], size=n, p=[0.5, 0.3, 0.2])
    wrong = rng.choice(LABELS, size=n, p=[0.3, 0.4, 0.25, 0.05])
    pred = np.where(rng.uniform(size=n) < 0.75, gold, wrong)
    return gold.tolist(), pred.tolist()


def brute_force_classification(gold: list[str], pred: list[str], labels: list[str]) -> dict:
    n = len(gold)
    per_label = {}
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return {
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / n,
        "macro_f1": sum(v["f1"] for v in per_label.values()) / len(labels),
        "weighted_f1": sum(v["f1"] * v["support"] for v in per_label.values()) / n,
        "per_label": per_label,
        "confusion_matrix": [
            [sum(g == t and p == q for g, p in zip(gold, pred, strict=True)) for q in labels]
            for t in labels
        ],
    }


def test_classification_metrics_match_the_definitions() -> None:
    gold, pred = sentiment_predictions(400, seed=1)
    got = classification_metrics(gold, pred, LABELS)
    expected = brute_force_classification(gold, pred, LABELS)
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    assert got["micro_f1"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert got["confusion_matrix"] == expected["confusion_matrix"]
    assert got["labels"] == LABELS
    for label in LABELS:
        for key, value in expected["per_label"][label].items():
            assert got["per_label"][label][key] == pytest.approx(value, abs=1e-12), (label, key)
    # `mixed` is never gold: support 0, recall 0, and it still counts in the macro average
    assert got["per_label"]["mixed"]["support"] == 0


def test_classification_metrics_rejects_values_outside_the_labels() -> None:
    with pytest.raises(ValueError, match="sarcastic"):
        classification_metrics(["positive", "neutral"], ["positive", "sarcastic"], LABELS)


def test_label_indices_follow_the_label_order() -> None:
    assert label_indices(np.array(["negative", "positive", "mixed"]), LABELS).tolist() == [2, 0, 3]


def test_multilabel_metrics_match_the_definitions() -> None:
    rng = np.random.default_rng(2)
    n, k = 300, 5
    y_true = (rng.uniform(size=(n, k)) < [0.4, 0.2, 0.1, 0.05, 0.3]).astype(int)
    y_pred = np.where(rng.uniform(size=(n, k)) < 0.85, y_true, 1 - y_true)
    got = multilabel_metrics(y_true, y_pred)

    def f1(tp: int, fp: int, fn: int) -> float:
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0

    counts = [
        (
            sum(y_true[i, j] and y_pred[i, j] for i in range(n)),
            sum(not y_true[i, j] and y_pred[i, j] for i in range(n)),
            sum(y_true[i, j] and not y_pred[i, j] for i in range(n)),
        )
        for j in range(k)
    ]
    totals = [sum(c[m] for c in counts) for m in range(3)]
    assert got["subset_accuracy"] == pytest.approx(
        sum(all(y_true[i] == y_pred[i]) for i in range(n)) / n, abs=1e-12
    )
    assert got["micro_f1"] == pytest.approx(f1(*totals), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(sum(f1(*c) for c in counts) / k, abs=1e-12)
    assert got["hamming_loss"] == pytest.approx(
        sum(y_true[i, j] != y_pred[i, j] for i in range(n) for j in range(k)) / (n * k), abs=1e-12
    )


TYPES = ["PER", "ORG", "LOC"]


def random_documents(n_docs: int, seed: int) -> tuple[list[list[tuple]], list[list[tuple]]]:
    """Gold entities in text, and a tagger that copies, shifts, retypes, drops and invents them."""
    rng = np.random.default_rng(seed)
    gold, pred = [], []
    for _ in range(n_docs):
        doc_gold, doc_pred, position = [], [], int(rng.integers(0, 5))
        for _ in range(int(rng.integers(0, 6))):
            start = position + int(rng.integers(0, 10))
            end = start + int(rng.integers(1, 8))
            label = str(rng.choice(TYPES))
            doc_gold.append((start, end, label))
            position = end
            action = rng.choice(["copy", "shift", "retype", "drop"], p=[0.55, 0.2, 0.1, 0.15])
            if action == "copy":
                doc_pred.append((start, end, label))
            elif action == "shift":
                new_start = max(0, start + int(rng.integers(-2, 3)))
                doc_pred.append(
                    (new_start, max(new_start + 1, end + int(rng.integers(-2, 3))), label)
                )
            elif action == "retype":
                doc_pred.append((start, end, str(rng.choice([t for t in TYPES if t != label]))))
        if rng.uniform() < 0.3:
            start = int(rng.integers(0, position + 5))
            doc_pred.append((start, start + int(rng.integers(1, 6)), str(rng.choice(TYPES))))
        gold.append(doc_gold)
        pred.append(doc_pred)
    return gold, pred


def brute_force_span_scores(gold: list[list[tuple]], pred: list[list[tuple]]) -> dict:
    def overlaps(x: tuple, y: tuple) -> bool:
        return x[2] == y[2] and bool(set(range(x[0], x[1])) & set(range(y[0], y[1])))

    def scores(keep: set[str]) -> dict:
        result = {}
        for mode, match in (("strict", lambda x, y: x == y), ("partial", overlaps)):
            n_gold = n_pred = found = right = 0
            for doc_gold, doc_pred in zip(gold, pred, strict=True):
                doc_gold = [s for s in set(doc_gold) if s[2] in keep]
                doc_pred = [s for s in set(doc_pred) if s[2] in keep]
                n_gold += len(doc_gold)
                n_pred += len(doc_pred)
                found += sum(any(match(g, p) for p in doc_pred) for g in doc_gold)
                right += sum(any(match(g, p) for g in doc_gold) for p in doc_pred)
            precision = right / n_pred if n_pred else 0.0
            recall = found / n_gold if n_gold else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            result[mode] = (precision, recall, f1, n_gold)
        return result

    return {"all": scores(set(TYPES)), **{t: scores({t}) for t in TYPES}}


def test_span_metrics_match_strict_and_overlap_definitions() -> None:
    gold, pred = random_documents(150, seed=3)
    got = span_metrics(gold, pred)
    expected = brute_force_span_scores(gold, pred)
    for mode in ("strict", "partial"):
        keys = ("precision", "recall", "f1", "gold")
        assert [got[mode][key] for key in keys] == pytest.approx(expected["all"][mode], abs=1e-12)
        assert list(got[mode]["per_type"]) == sorted(TYPES)
        for t in TYPES:
            got_type = [got[mode]["per_type"][t][key] for key in keys]
            assert got_type == pytest.approx(expected[t][mode], abs=1e-12), (mode, t)
    assert got["partial"]["f1"] > got["strict"]["f1"]  # shifted boundaries only count as partial


def test_span_metrics_on_a_worked_example() -> None:
    gold = [[(0, 5, "PER"), (10, 15, "LOC")], [(3, 8, "ORG")]]
    pred = [[(0, 5, "PER"), (11, 15, "LOC"), (20, 25, "ORG")], [(3, 8, "LOC")]]
    got = span_metrics(gold, pred)
    # strict: only (0, 5, PER) is right; 1 of 4 predicted, 1 of 3 gold
    assert (got["strict"]["precision"], got["strict"]["recall"]) == pytest.approx((1 / 4, 1 / 3))
    # partial: (11, 15, LOC) overlaps (10, 15, LOC); (3, 8, LOC) has the wrong type
    assert (got["partial"]["precision"], got["partial"]["recall"]) == pytest.approx((2 / 4, 2 / 3))
    assert got["strict"]["per_type"]["ORG"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "gold": 1,
        "predicted": 1,
        "matched_gold": 0,
        "matched_predicted": 0,
    }


def test_spans_listed_twice_count_once_and_empty_spans_are_rejected() -> None:
    once = span_metrics([[(0, 4, "PER")]], [[(0, 4, "PER")]])
    twice = span_metrics([[(0, 4, "PER")]], [[(0, 4, "PER"), (0, 4, "PER")]])
    assert twice == once
    with pytest.raises(ValueError, match=r"pred document 0: span \(4, 4, 'PER'\)"):
        span_metrics([[(0, 4, "PER")]], [[(4, 4, "PER")]])


def test_span_match_counts_add_up_to_the_strict_totals() -> None:
    gold, pred = random_documents(60, seed=4)
    counts = span_match_counts(gold, pred)
    strict = span_metrics(gold, pred)["strict"]
    assert counts.shape == (60, 3)
    assert counts.sum(axis=0).tolist() == [
        strict["matched_predicted"],
        strict["predicted"],
        strict["gold"],
    ]
