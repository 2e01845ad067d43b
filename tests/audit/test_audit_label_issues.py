"""Likely label errors (K-fold LR on MiniLM embeddings + cleanlab) and kNN outliers on real
banking77 texts with planted label noise and planted off-topic texts."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from audit_data import banking77_rows, nusax_rows

from stillhouse.audit.label_issues import check_label_issues, find_issues
from stillhouse.audit.outliers import check_outliers
from stillhouse.data.records import Example
from stillhouse.llm.fewshot import embed


@dataclass(frozen=True)
class Noisy:
    examples: list[Example]
    labels: list[str | None]
    label_names: list[str]
    flipped: set[str]
    planted_outliers: set[str]
    embeddings: np.ndarray


@pytest.fixture(scope="module")
def noisy() -> Noisy:
    """400 banking77 texts of 10 intents, 10% of labels flipped, plus 4 Javanese reviews."""
    rows = banking77_rows(3000, seed=3)
    names = sorted({r["category"] for r in rows})[:10]
    picked = [r for r in rows if r["category"] in names][:400]
    rng = random.Random(0)
    flipped = set(rng.sample([r["id"] for r in picked], 40))
    labels: list[str | None] = []
    for row in picked:
        label = row["category"]
        if row["id"] in flipped:
            label = rng.choice([n for n in names if n != label])
        labels.append(label)
    examples = [Example(r["id"], r["text"]) for r in picked]
    strange = nusax_rows("javanese", count=4)
    examples += [Example(r["id"], r["text"]) for r in strange]
    labels += [None] * len(strange)
    vectors = embed([e.text for e in examples])
    return Noisy(examples, labels, names, flipped, {r["id"] for r in strange}, vectors)


@pytest.mark.slow
def test_flipped_labels_are_found_ranked_with_the_right_suggestion(noisy: Noisy) -> None:
    result = check_label_issues(
        noisy.examples, noisy.labels, noisy.label_names, embeddings=noisy.embeddings
    )
    flagged = {issue.id for issue in result.issues}
    true_positives = len(flagged & noisy.flipped)
    assert true_positives / len(flagged) >= 0.7  # precision
    assert true_positives / len(noisy.flipped) >= 0.7  # recall
    qualities = [issue.quality for issue in result.issues]
    assert qualities == sorted(qualities)
    assert result.check.metrics["labelled_rows"] == 400
    assert np.isnan(result.quality[-1]) and not np.isnan(result.quality[0])
    truth = {r["id"]: r["category"] for r in banking77_rows(3000, seed=3)}
    right = [i for i in result.issues if i.id in noisy.flipped and i.suggested == truth[i.id]]
    assert len(right) >= 0.8 * true_positives


@pytest.mark.slow
def test_off_topic_texts_are_the_outliers(noisy: Noisy) -> None:
    result = check_outliers(noisy.examples, noisy.labels, noisy.embeddings)
    top = {outlier.id for outlier in result.findings[:6]}
    assert top >= noisy.planted_outliers
    distances = [o.distance for o in result.findings]
    assert distances == sorted(distances, reverse=True)
    assert all(d > result.metrics["cutoff"] for d in distances)


def test_given_probabilities_are_used_as_they_are() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1])
    probabilities = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    probabilities[2] = [0.02, 0.98]  # labelled 0, confidently 1
    mask, quality = find_issues(labels, probabilities)
    assert np.flatnonzero(mask).tolist() == [2]
    assert quality.argmin() == 2


def test_one_label_only_is_skipped_with_a_reason() -> None:
    examples = [Example(str(i), f"text {i}") for i in range(20)]
    result = check_label_issues(examples, ["a"] * 20, ["a", "b"], embeddings=np.eye(20))
    assert result.check.status == "skipped" and "at least two labels" in result.check.summary


def test_neighbour_votes_leave_the_row_itself_out() -> None:
    from stillhouse.audit.label_issues import neighbour_probabilities

    features = np.array([[1.0, 0.0], [0.99, 0.1], [0.98, 0.2], [0.0, 1.0], [0.1, 0.99]])
    labels = np.array([0, 0, 1, 1, 1])
    votes = neighbour_probabilities(features, labels, 2, k=2)
    assert votes[2].tolist() == [1.0, 0.0]  # its neighbours are rows 0 and 1, both class 0
    assert votes[3].tolist() == [0.0, 1.0]
    assert np.allclose(votes.sum(axis=1), 1.0)


def test_a_label_with_one_example_leaves_a_fold_with_one_class_and_no_crash() -> None:
    # What an LLM that says "negative" once in a small pool gives (the demo at a tiny size):
    # the fold that holds that example out has only "positive" left to learn from.
    from stillhouse.audit.label_issues import out_of_sample_probabilities

    features = np.random.default_rng(0).normal(size=(12, 4))
    labels = np.array([0] * 11 + [1])

    probabilities = out_of_sample_probabilities(features, labels, 3, folds=5)

    assert probabilities.shape == (12, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[11, 0] == 1.0  # held out alone: its fold knew only class 0
