"""Agreement on the overlap: Cohen's kappa against scikit-learn, Krippendorff's alpha against the
`krippendorff` package (given the raw reliability matrix, another route than ours), per label,
with bootstrap intervals."""

from __future__ import annotations

import random

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from stillhouse.data.records import Annotation, Span
from stillhouse.review.agreement import REJECTED, agreement

LABELS = ["positive", "neutral", "negative"]


def answer(example_id: str, who: str, label: str | None) -> Annotation:
    if label is None:
        return Annotation(
            example_id, f"human:{who}", "", None, {"decision": "reject", "invalid": True}
        )
    return Annotation(example_id, f"human:{who}", label, None, {"decision": "correct"})


def simulated(n: int, reviewers: list[str], seed: int, missing: float = 0.0):
    """Each reviewer agrees with a hidden truth 75% of the time; some answers are rejects."""
    rng = random.Random(seed)
    people: dict[str, dict[str, Annotation]] = {}
    for row in range(n):
        truth = rng.choice(LABELS)
        for who in reviewers:
            if rng.random() < missing:
                continue
            roll = rng.random()
            label = truth if roll < 0.75 else (None if roll > 0.97 else rng.choice(LABELS))
            people.setdefault(f"e{row}", {})[f"human:{who}"] = answer(f"e{row}", who, label)
    return people


def category(annotation: Annotation) -> str:
    return annotation.answer if annotation.info["decision"] != "reject" else REJECTED


def test_two_reviewers_kappa_and_alpha_match_the_libraries():
    people = simulated(120, ["alice", "bob"], seed=3, missing=0.1)
    found = agreement(people, {}, "classify", LABELS, n_resamples=500, seed=0)
    both = [a for a in people.values() if len(a) == 2]
    first = [category(a["human:alice"]) for a in both]
    second = [category(a["human:bob"]) for a in both]
    assert found.items == len(both) and found.annotators == ["alice", "bob"]
    assert found.kappa.value == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
    codes = {name: n for n, name in enumerate([*LABELS, REJECTED])}
    matrix = np.array([[codes[v] for v in first], [codes[v] for v in second]], dtype=float)
    assert found.alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"), abs=1e-12
    )
    assert found.observed == pytest.approx(np.mean(np.array(first) == np.array(second)))
    for estimate in (found.kappa, found.alpha):
        assert estimate.low < estimate.value < estimate.high
        assert estimate.high - estimate.low < 0.4
    # per label: that label against all others
    for label in LABELS:
        binary = ([v == label for v in first], [v == label for v in second])
        row = found.per_label[label]
        assert row["kappa"].value == pytest.approx(cohen_kappa_score(*binary), abs=1e-12)
        assert row["alpha"].value == pytest.approx(
            krippendorff.alpha(
                reliability_data=np.array(binary, dtype=float), level_of_measurement="nominal"
            ),
            abs=1e-12,
        )
        assert row["count"] == binary[0].count(True) + binary[1].count(True)


def test_three_reviewers_alpha_with_missing_answers_and_no_kappa():
    people = simulated(80, ["a", "b", "c"], seed=5, missing=0.3)
    found = agreement(people, {}, "classify", LABELS, n_resamples=300, seed=0)
    codes = {name: n for n, name in enumerate([*LABELS, REJECTED])}
    ids = sorted(people)
    matrix = np.array(
        [
            [
                codes[category(people[i][f"human:{w}"])] if f"human:{w}" in people[i] else np.nan
                for i in ids
            ]
            for w in ("a", "b", "c")
        ]
    )
    assert found.kappa is None
    assert found.alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"), abs=1e-12
    )
    assert found.items == sum(1 for i in ids if len(people[i]) >= 2)


def test_intervals_are_seeded_and_skips_are_no_answers():
    people = simulated(60, ["alice", "bob"], seed=7)
    one = agreement(people, {}, "classify", LABELS, n_resamples=200, seed=1)
    two = agreement(people, {}, "classify", LABELS, n_resamples=200, seed=1)
    other = agreement(people, {}, "classify", LABELS, n_resamples=200, seed=2)
    assert one.kappa == two.kappa and one.kappa != other.kappa
    people["e0"]["human:bob"] = Annotation(
        "e0", "human:bob", "", None, {"decision": "skip", "invalid": True}
    )
    assert agreement(people, {}, "classify", LABELS, n_resamples=10).items == one.items - 1
    assert (
        agreement({"e": {"human:a": answer("e", "a", "positive")}}, {}, "classify", LABELS) is None
    )


def test_perfect_agreement_on_one_label_only_is_undefined_not_one():
    people = {
        f"e{n}": {f"human:{w}": answer(f"e{n}", w, "positive") for w in ("a", "b")}
        for n in range(5)
    }
    found = agreement(people, {}, "classify", LABELS, n_resamples=50)
    assert found.observed == 1.0 and found.kappa.value is None and found.alpha.value is None


def test_multilabel_and_span_units():
    def labels(example_id: str, who: str, *chosen: str) -> Annotation:
        return Annotation(example_id, f"human:{who}", tuple(chosen), None, {"decision": "correct"})

    people = {
        "e1": {"human:a": labels("e1", "a", "x", "y"), "human:b": labels("e1", "b", "x")},
        "e2": {"human:a": labels("e2", "a", "y"), "human:b": labels("e2", "b", "y")},
        "e3": {"human:a": labels("e3", "a"), "human:b": labels("e3", "b", "x")},
    }
    found = agreement(people, {}, "multilabel", ["x", "y"], n_resamples=50)
    first = ["yes", "no", "no", "yes", "yes", "no"]  # (x, y) per example for a
    second = ["yes", "no", "yes", "no", "yes", "no"]
    assert found.units == 6
    assert found.kappa.value == pytest.approx(cohen_kappa_score(first, second))
    assert found.per_label["x"]["kappa"].value == pytest.approx(
        cohen_kappa_score(["yes", "no", "no"], ["yes", "no", "yes"])
    )

    text = "Anna met Bob in Paris"
    spans_a = (Span(0, 4, "PER", "Anna"), Span(16, 21, "LOC", "Paris"))
    spans_b = (Span(0, 4, "PER", "Anna"), Span(9, 12, "PER", "Bob"))
    people = {
        "s": {
            "human:a": Annotation("s", "human:a", spans_a, None, {"decision": "correct"}),
            "human:b": Annotation("s", "human:b", spans_b, None, {"decision": "correct"}),
        }
    }
    found = agreement(people, {"s": text}, "spans", ["PER", "LOC"], n_resamples=20)
    tokens_a = ["PER", "O", "O", "O", "LOC"]
    tokens_b = ["PER", "O", "PER", "O", "O"]
    assert found.units == 5
    assert found.kappa.value == pytest.approx(cohen_kappa_score(tokens_a, tokens_b))
