"""Likely label errors: out-of-sample probabilities (the mean of a K-fold logistic regression and
a leave-one-out k-nearest-neighbour vote on sentence embeddings, or the LLM's stored per-label
probabilities), then cleanlab's confident learning (``cleanlab.filter.find_label_issues``),
ranked by cleanlab's label quality score.

The two estimators err differently (the regression smooths over noisy labels, the neighbour
vote follows local structure); their mean beat either alone and cleanlab's Datalab default on
banking77 at every noise level of bench/audit.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stillhouse.audit.neighbours import nearest_neighbours
from stillhouse.audit.result import CheckResult, share, skipped
from stillhouse.data.records import Example

NAME, TITLE = "label_issues", "Likely label errors"
FOLDS = 5
# Weak regularisation suits unit-length MiniLM embeddings (tuned in bench/audit.py).
REGULARISATION_C = 10.0
NEIGHBOURS = 10
# Flag a label only when both of cleanlab's pruning rules agree (precision, measured in bench).
FILTER_BY = "both"


@dataclass(frozen=True)
class LabelIssue:
    id: str
    text: str
    given: str
    suggested: str
    quality: float  # cleanlab's label quality score (self-confidence): low = likely wrong
    suggested_probability: float


@dataclass(frozen=True)
class LabelIssueResult:
    check: CheckResult
    issues: list[LabelIssue]
    # Label quality score per example position (NaN where unlabelled or not scored).
    quality: np.ndarray


def out_of_sample_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    folds: int = FOLDS,
    regularisation_c: float = REGULARISATION_C,
    seed: int = 0,
) -> np.ndarray:
    """``(n, n_classes)`` probabilities, each row from a logistic regression that did not see it
    (stratified K-fold). ``labels`` are class indices ``0..n_classes-1``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=n_classes)
    splits = max(2, min(folds, int(counts.max())))
    probabilities = np.zeros((len(labels), n_classes))
    with warnings.catch_warnings():
        # Classes rarer than K make StratifiedKFold warn; they are still split as well as possible.
        warnings.simplefilter("ignore", UserWarning)
        folding = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
        for train_rows, held_rows in folding.split(features, labels):
            seen = np.unique(labels[train_rows])
            if len(seen) == 1:  # a label's only example is held out: the fold knows one class
                probabilities[held_rows, seen[0]] = 1.0
                continue
            model = LogisticRegression(C=regularisation_c, max_iter=1000)
            model.fit(features[train_rows], labels[train_rows])
            probabilities[np.ix_(held_rows, model.classes_)] = model.predict_proba(
                features[held_rows]
            )
    return probabilities


def neighbour_probabilities(
    features: np.ndarray, labels: np.ndarray, n_classes: int, *, k: int = NEIGHBOURS
) -> np.ndarray:
    """``(n, n_classes)``: the label shares among each row's ``k`` nearest other rows (cosine),
    so no row votes for itself (as cleanlab's Datalab does from features)."""
    _, neighbours = nearest_neighbours(features, k)
    votes = np.zeros((len(labels), n_classes))
    for column in range(neighbours.shape[1]):
        np.add.at(votes, (np.arange(len(labels)), labels[neighbours[:, column]]), 1.0)
    return votes / neighbours.shape[1]


def ensemble_probabilities(
    features: np.ndarray, labels: np.ndarray, n_classes: int, *, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """The mean of :func:`out_of_sample_probabilities` and :func:`neighbour_probabilities`."""
    regression = out_of_sample_probabilities(features, labels, n_classes, folds=folds, seed=seed)
    return (regression + neighbour_probabilities(features, labels, n_classes)) / 2


def find_issues(
    labels: np.ndarray, probabilities: np.ndarray, *, filter_by: str = FILTER_BY
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's boolean issue mask and label quality scores for class-index ``labels``."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    # cleanlab wants every row to sum to 1 and no class without probability mass anywhere.
    probabilities = np.clip(probabilities, 1e-6, None)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = find_label_issues(labels, probabilities, filter_by=filter_by)
    quality = get_label_quality_scores(labels, probabilities)
    return np.asarray(mask, dtype=bool), np.asarray(quality, dtype=float)


def check_label_issues(
    examples: Sequence[Example],
    labels: Sequence[str | None],
    label_names: Sequence[str],
    *,
    embeddings: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    source: str = "embeddings",
    folds: int = FOLDS,
    filter_by: str = FILTER_BY,
) -> LabelIssueResult:
    """Flag likely label errors among the labelled rows.

    ``probabilities`` (``n x len(label_names)``, e.g. the LLM's) are used as given; otherwise
    ``embeddings`` (``n x d``) feed a K-fold logistic regression.
    """
    quality_all = np.full(len(examples), np.nan)
    rows = np.array([row for row, label in enumerate(labels) if label is not None], dtype=int)
    present = sorted({labels[row] for row in rows}, key=list(label_names).index)  # type: ignore[arg-type]
    if len(present) < 2 or len(rows) < 2 * len(present) or len(rows) < 10:
        reason = (
            f"needs labelled data with at least two labels and ≥ 2 rows per label; got {len(rows)} "
            f"labelled row(s) with {len(present)} label(s)."
        )
        return LabelIssueResult(skipped(NAME, TITLE, reason), [], quality_all)
    index = {label: number for number, label in enumerate(present)}
    y = np.array([index[labels[row]] for row in rows])  # type: ignore[index]
    if probabilities is not None:
        columns = [list(label_names).index(label) for label in present]
        probs = probabilities[np.ix_(rows, columns)]
    else:
        assert embeddings is not None, "label issues need embeddings or probabilities"
        probs = ensemble_probabilities(embeddings[rows], y, len(present), folds=folds)
    mask, quality = find_issues(y, probs, filter_by=filter_by)
    quality_all[rows] = quality
    suggested = probs.argmax(axis=1)
    issues = [
        LabelIssue(
            id=examples[rows[i]].id,
            text=examples[rows[i]].text,
            given=present[y[i]],
            suggested=present[suggested[i]],
            quality=round(float(quality[i]), 4),
            suggested_probability=round(float(probs[i, suggested[i]]), 4),
        )
        for i in np.flatnonzero(mask)
    ]
    issues.sort(key=lambda issue: issue.quality)
    accuracy = float((suggested == y).mean())
    metrics = {
        "labelled_rows": len(rows),
        "issues": len(issues),
        "issue_share": share(len(issues), len(rows)),
        "probabilities": source,
        "filter_by": filter_by,
        "folds": folds if probabilities is None else None,
        "out_of_sample_accuracy": accuracy,
    }
    if not issues:
        summary = f"cleanlab flags no label as likely wrong ({len(rows)} labelled rows)."
        return LabelIssueResult(
            CheckResult(NAME, TITLE, "ok", 0, summary, "", metrics), [], quality_all
        )
    summary = (
        f"{len(issues)} of {len(rows)} labels ({metrics['issue_share']:.1%}) are likely wrong "
        f"(cleanlab confident learning on {source} probabilities; out-of-sample accuracy "
        f"{accuracy:.1%})."
    )
    advice = (
        "Review them in rank order (the review queue has them) and correct or confirm; a model "
        "learns these errors and test metrics on wrong labels mislead."
    )
    status = "problem" if metrics["issue_share"] > 0.02 else "warning"
    check = CheckResult(NAME, TITLE, status, len(issues), summary, advice, metrics, issues)
    return LabelIssueResult(check, issues, quality_all)
