"""Agreement between reviewers on the examples two or more of them answered (the overlap).

Cohen's kappa for two reviewers (scikit-learn's ``cohen_kappa_score``) and Krippendorff's alpha,
nominal, for any number (the ``krippendorff`` package), overall and per label (that label against
all others), each with a 95% percentile bootstrap interval over examples (seeded). The
resamples use the closed forms below, vectorised over resamples; they give the libraries' value
on the observed data (tested).

What is compared, by task kind: ``classify``, the label of each example (a reject is an answer
of its own, "none of the labels"); ``multilabel``, each label's yes/no on each example;
``spans``, each token's label (``O`` outside every span; tokens from :func:`span_tokens`, which
the page is also sent, so reviewers select exactly the tokens compared here). Skips, flags and
undone decisions are no answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stillhouse.data.records import Annotation, Kind, Span
from stillhouse.evaluate.bootstrap import resample_counts, resample_indices
from stillhouse.review.decisions import decision_of, gives_answer, reviewer_name

REJECTED = "(none of the labels)"
OUTSIDE = "O"
TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
N_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A coefficient with its bootstrap interval; None where it is undefined (one category
    only, or no pairs of answers)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Agreement:
    """``items``: examples with answers from two or more reviewers; ``annotators``: reviewer
    names among them; ``kappa`` (exactly two reviewers, else None) and ``alpha``; per label the
    same and ``count``, how many answers used it; ``observed``: the share of answer pairs that
    agree."""

    annotators: list[str]
    items: int
    units: int
    observed: float | None
    kappa: Estimate | None
    alpha: Estimate
    per_label: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_resamples: int = N_RESAMPLES
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "annotators": self.annotators,
            "items": self.items,
            "units": self.units,
            "observed": self.observed,
            "kappa": None if self.kappa is None else self.kappa.as_dict(),
            "alpha": self.alpha.as_dict(),
            "per_label": {
                label: {
                    "count": row["count"],
                    "kappa": None if row["kappa"] is None else row["kappa"].as_dict(),
                    "alpha": row["alpha"].as_dict(),
                }
                for label, row in self.per_label.items()
            },
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "confidence": CONFIDENCE,
        }


# Per-item summaries that the coefficients are sums of (so resampling items is a matrix product).
@dataclass(frozen=True)
class _Sums:
    # two reviewers: units both answered, of which agreeing, and each one's category counts
    pair_units: np.ndarray  # (n,)
    pair_agree: np.ndarray  # (n,)
    first: np.ndarray  # (n, k)
    second: np.ndarray  # (n, k)
    # Krippendorff: pairable values, their coincidences on the diagonal, category counts
    values: np.ndarray  # (n,)
    diagonal: np.ndarray  # (n,)
    marginals: np.ndarray  # (n, k)
    unit_counts: np.ndarray  # (units, k): every pairable unit's value counts (for the package)


def units_of(
    answers: Mapping[str, Annotation], kind: Kind, labels: Sequence[str], text: str
) -> list[dict[str, str]]:
    """One example's units of comparison, each ``{reviewer: category}`` (see the module
    docstring); reviewers without an answer are left out."""
    given = {who: a for who, a in answers.items() if _counts(a, kind)}
    if kind == "classify":
        return [{who: str(a.answer) if gives_answer(a) else REJECTED for who, a in given.items()}]
    if kind == "multilabel":
        return [
            {who: "yes" if label in set(a.answer) else "no" for who, a in given.items()}
            for label in labels
        ]
    tokens = span_tokens(text)
    per_reviewer = {who: _token_labels(a.answer, tokens) for who, a in given.items()}  # type: ignore[arg-type]
    return [
        {who: found[position] for who, found in per_reviewer.items()}
        for position in range(len(tokens))
    ]


def _counts(annotation: Annotation, kind: Kind) -> bool:
    if gives_answer(annotation):
        return True
    return kind == "classify" and decision_of(annotation) == "reject"


def span_tokens(text: str) -> list[tuple[int, int]]:
    """The tokens of a span task's text as ``(start, end)`` code-point offsets: runs of word
    characters and single other non-space characters. The one tokenisation of review: the page
    gets these with each item (a browser's own regex would follow its own Unicode version)."""
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


def _token_labels(spans: Sequence[Span], tokens: Sequence[tuple[int, int]]) -> list[str]:
    found = [OUTSIDE] * len(tokens)
    for position, (start, end) in enumerate(tokens):
        for span in spans:
            if span.start < end and start < span.end:
                found[position] = span.label
                break
    return found


def agreement(
    people: Mapping[str, Mapping[str, Annotation]],
    texts: Mapping[str, str],
    kind: Kind,
    labels: Sequence[str],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Agreement | None:
    """Agreement over the examples of ``people`` (example id → annotator → annotation) that two
    or more reviewers answered; None when there are none. ``texts`` by id (for span tokens)."""
    items: list[list[dict[str, str]]] = []
    reviewers: set[str] = set()
    for example_id, answers in people.items():
        units = units_of(answers, kind, labels, texts.get(example_id, ""))
        units = [unit for unit in units if len(unit) >= 2]
        if units:
            items.append(units)
            reviewers.update(who for unit in units for who in unit)
    if not items:
        return None
    annotators = sorted(reviewers)
    categories = _categories(kind, labels)
    overall_sums = _sums(items, annotators, categories, lambda value: value)
    kappa_items = _kappa_data(items, annotators) if len(annotators) == 2 else None
    indices = resample_indices(len(items), n_resamples, seed)
    counts = resample_counts(indices)
    per_label: dict[str, dict[str, Any]] = {}
    for label in labels:
        used = sum(
            1
            for units in items
            for unit in units
            for value in unit.values()
            if _is(value, label, kind)
        )
        if not used:
            continue
        if kind == "multilabel":
            scoped = [[units[labels.index(label)]] for units in items]
            mapping = _identity
        else:
            scoped = items
            mapping = _binary(label)
        sums = _sums(scoped, annotators, ["no", "yes"], mapping)
        label_kappa = None
        if kappa_items is not None:
            pairs = _kappa_data(scoped, annotators, mapping)
            label_kappa = _estimate(_kappa_library(pairs), sums, counts, _kappa_closed)
        per_label[label] = {
            "count": used,
            "kappa": label_kappa,
            "alpha": _estimate(_alpha_library(sums), sums, counts, _alpha_closed),
        }
    kappa = None
    if kappa_items is not None:
        kappa = _estimate(_kappa_library(kappa_items), overall_sums, counts, _kappa_closed)
    pairs = float(overall_sums.values.sum())
    observed = float(overall_sums.diagonal.sum()) / pairs if pairs else None
    return Agreement(
        annotators=[reviewer_name(a) for a in annotators],
        items=len(items),
        units=sum(len(units) for units in items),
        observed=observed,
        kappa=kappa,
        alpha=_estimate(_alpha_library(overall_sums), overall_sums, counts, _alpha_closed),
        per_label=per_label,
        n_resamples=n_resamples,
        seed=seed,
    )


def _identity(value: str) -> str:
    return value


def _binary(label: str):  # type: ignore[no-untyped-def]
    return lambda value: "yes" if value == label else "no"


def _is(value: str, label: str, kind: Kind) -> bool:
    return value == "yes" if kind == "multilabel" else value == label


def _categories(kind: Kind, labels: Sequence[str]) -> list[str]:
    if kind == "classify":
        return [*labels, REJECTED]
    if kind == "multilabel":
        return ["no", "yes"]
    return [*labels, OUTSIDE]


def _sums(items, annotators, categories, mapping) -> _Sums:  # type: ignore[no-untyped-def]
    index = {category: position for position, category in enumerate(categories)}
    n, k = len(items), len(categories)
    first, second = annotators[0], annotators[1] if len(annotators) > 1 else None
    sums = {name: np.zeros(n) for name in ("pair_units", "pair_agree", "values", "diagonal")}
    first_counts, second_counts, marginals = np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k))
    unit_counts = []
    for row, units in enumerate(items):
        for unit in units:
            values = [index[mapping(value)] for value in unit.values()]
            m = len(values)
            if m < 2:
                continue
            tally = np.bincount(values, minlength=k)
            unit_counts.append(tally)
            sums["values"][row] += m
            sums["diagonal"][row] += float((tally * (tally - 1)).sum()) / (m - 1)
            marginals[row] += tally
            if second is not None and first in unit and second in unit:
                a, b = index[mapping(unit[first])], index[mapping(unit[second])]
                sums["pair_units"][row] += 1
                sums["pair_agree"][row] += a == b
                first_counts[row, a] += 1
                second_counts[row, b] += 1
    return _Sums(
        sums["pair_units"],
        sums["pair_agree"],
        first_counts,
        second_counts,
        sums["values"],
        sums["diagonal"],
        marginals,
        np.array(unit_counts, dtype=float).reshape(-1, k),
    )


def _kappa_data(items, annotators, mapping=_identity) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    first, second = annotators
    a, b = [], []
    for units in items:
        for unit in units:
            if first in unit and second in unit:
                a.append(mapping(unit[first]))
                b.append(mapping(unit[second]))
    return a, b


def _kappa_library(pairs: tuple[list[str], list[str]]) -> float | None:
    import warnings

    from sklearn.metrics import cohen_kappa_score

    first, second = pairs
    if len(first) < 1:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one category only: nan, said as None
        value = float(cohen_kappa_score(first, second))
    return value if math.isfinite(value) else None


def _alpha_library(sums: _Sums) -> float | None:
    """Krippendorff's alpha (nominal) from the ``krippendorff`` package, on the value counts of
    every unit; None where it is undefined (one category only)."""
    import krippendorff

    if len(sums.unit_counts) == 0 or np.count_nonzero(sums.unit_counts.sum(axis=0)) < 2:
        return None
    value = krippendorff.alpha(
        value_counts=sums.unit_counts,
        value_domain=list(range(sums.unit_counts.shape[1])),
        level_of_measurement="nominal",
    )
    return _finite(float(value))


def _kappa_closed(
    units: np.ndarray, agree: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Cohen's kappa from resampled sums: units (B,), agreeing units (B,), each reviewer's
    category counts (B, k)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = agree / units
        expected = (first * second).sum(axis=-1) / units**2
        return (observed - expected) / (1.0 - expected)


def _alpha_closed(values: np.ndarray, diagonal: np.ndarray, marginals: np.ndarray) -> np.ndarray:
    """Nominal alpha = 1 − (n − 1)·(n − Σ o_cc) / (n² − Σ n_c²) from resampled sums: pairable
    values n, the coincidence matrix's diagonal Σ o_cc, category totals n_c (last axis)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (values - 1.0) * (values - diagonal) / (
            values**2 - (marginals**2).sum(axis=-1)
        )


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _estimate(observed: float | None, sums: _Sums, counts: np.ndarray, closed) -> Estimate:  # type: ignore[no-untyped-def]
    if observed is None:
        return Estimate(None)
    if closed is _kappa_closed:
        resampled = _kappa_closed(
            counts @ sums.pair_units,
            counts @ sums.pair_agree,
            counts @ sums.first,
            counts @ sums.second,
        )
    else:
        resampled = _alpha_closed(
            counts @ sums.values, counts @ sums.diagonal, counts @ sums.marginals
        )
    finite = resampled[np.isfinite(resampled)]
    if len(finite) < len(resampled) / 2:
        return Estimate(observed)
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return Estimate(observed, float(low), float(high))
