"""Accuracy-type metrics for the three task kinds: single-label, multilabel and spans.

Every function returns plain Python numbers, lists and dicts (JSON-ready). Zero divisions
(a label never predicted, no spans at all) give 0, as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

Span = tuple[int, int, str]


def label_indices(
    values: Sequence[Hashable] | np.ndarray, labels: Sequence[Hashable]
) -> np.ndarray:
    """Position of each value in ``labels``: shape ``(n,)`` int64, for the bootstrap functions.

    Raises ``ValueError`` naming the values that are not in ``labels``.
    """
    position = {label: i for i, label in enumerate(labels)}
    if len(position) != len(labels):
        raise ValueError(f"labels must be distinct, got {list(labels)}")
    items = _as_list(values)
    unknown = sorted({str(value) for value in items if value not in position})
    if unknown:
        raise ValueError(f"values {unknown} are not among the labels {list(labels)}")
    return np.array([position[value] for value in items], dtype=np.int64)


def classification_metrics(
    y_true: Sequence[Hashable] | np.ndarray,
    y_pred: Sequence[Hashable] | np.ndarray,
    labels: Sequence[Hashable],
) -> dict[str, Any]:
    """Single-label metrics of predictions against gold, both shape ``(n,)`` of label values.

    Every value must be one of ``labels`` (which fixes the order of the per-label entries and of
    the confusion matrix). Returns ``accuracy``, ``macro_f1`` (unweighted mean over all
    ``labels``), ``micro_f1`` (equals accuracy here), ``weighted_f1`` (weighted by gold support),
    ``per_label`` (label → ``precision``, ``recall``, ``f1``, ``support``), ``labels`` and
    ``confusion_matrix`` (rows gold, columns predicted, both in ``labels`` order).
    """
    y_true_index = label_indices(y_true, labels)
    y_pred_index = label_indices(y_pred, labels)
    if y_true_index.shape != y_pred_index.shape:
        raise ValueError(f"y_true has {y_true_index.size} items but y_pred has {y_pred_index.size}")
    if y_true_index.size == 0:
        raise ValueError("y_true is empty: there is nothing to evaluate")
    codes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true_index, y_pred_index, labels=codes, average=None, zero_division=0
    )

    def f1_average(average: str) -> float:
        return float(
            f1_score(y_true_index, y_pred_index, labels=codes, average=average, zero_division=0)
        )

    return {
        "accuracy": float(accuracy_score(y_true_index, y_pred_index)),
        "macro_f1": f1_average("macro"),
        "micro_f1": f1_average("micro"),
        "weighted_f1": f1_average("weighted"),
        "per_label": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true_index, y_pred_index, labels=codes).tolist(),
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Multilabel metrics of binary indicator matrices, both shape ``(n, k)`` (1 = label applies).

    Returns ``subset_accuracy`` (share of rows exactly right), ``micro_f1`` (pooled over all
    cells), ``macro_f1`` (mean of per-label F1 over all ``k`` columns) and ``hamming_loss``
    (share of cells wrong).
    """
    y_true = _indicator(y_true, "y_true")
    y_pred = _indicator(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    return {
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
    }


def span_metrics(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> dict[str, Any]:
    """Entity-level precision, recall and F1 of predicted spans, strict and partial.

    ``gold`` and ``pred``: one list per document of ``(start, end, label)`` spans, ``end``
    exclusive (Python slicing), ``start < end``. A document's spans are a set: a span listed
    twice counts once.

    - ``strict`` (seqeval's entity-level scores): a predicted span is right iff the same
      document has a gold span with the same start, end and label. Precision = right / predicted,
      recall = right / gold.
    - ``partial``: a predicted span is right iff it overlaps (shares at least one position with)
      a gold span of the same label in the same document; a gold span is found iff some
      predicted span of its label overlaps it. Precision = predicted spans right / predicted,
      recall = gold spans found / gold. One span may match several, so partial ≥ strict.

    Each mode holds ``precision``, ``recall``, ``f1``, ``gold``, ``predicted``,
    ``matched_gold``, ``matched_predicted`` (the counts) and ``per_type``: label → the same
    keys except ``per_type``, for every label seen in gold or predictions, sorted.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} documents but pred has {len(pred)}")
    gold_sets = [_span_set(spans, "gold", d) for d, spans in enumerate(gold)]
    pred_sets = [_span_set(spans, "pred", d) for d, spans in enumerate(pred)]
    types = sorted({label for spans in gold_sets + pred_sets for _, _, label in spans})
    # counts[mode][type] = [gold, predicted, matched_gold, matched_predicted]
    counts = {
        mode: {t: np.zeros(4, dtype=np.int64) for t in types} for mode in ("strict", "partial")
    }
    for gold_spans, pred_spans in zip(gold_sets, pred_sets, strict=True):
        for label in {span[2] for span in gold_spans | pred_spans}:
            g = np.array([s[:2] for s in gold_spans if s[2] == label], dtype=np.int64).reshape(
                -1, 2
            )
            p = np.array([s[:2] for s in pred_spans if s[2] == label], dtype=np.int64).reshape(
                -1, 2
            )
            same = (g[:, None, 0] == p[None, :, 0]) & (g[:, None, 1] == p[None, :, 1])
            overlap = np.maximum(g[:, None, 0], p[None, :, 0]) < np.minimum(
                g[:, None, 1], p[None, :, 1]
            )
            for mode, match in (("strict", same), ("partial", overlap)):
                counts[mode][label] += [
                    len(g),
                    len(p),
                    match.any(axis=1).sum(),
                    match.any(axis=0).sum(),
                ]
    return {
        mode: {
            **_span_scores(sum(by_type.values(), np.zeros(4, dtype=np.int64))),
            "per_type": {label: _span_scores(c) for label, c in by_type.items()},
        }
        for mode, by_type in counts.items()
    }


def span_match_counts(gold: Sequence[Sequence[Span]], pred: Sequence[Sequence[Span]]) -> np.ndarray:
    """Strict matches per document: shape ``(n_documents, 3)``, columns matched, predicted, gold.

    Same matching as ``span_metrics(...)["strict"]``; feed the columns to
    :func:`stillhouse.evaluate.bootstrap.micro_f1_per_resample` for a bootstrap interval of
    the strict F1 over documents.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} documents but pred has {len(pred)}")
    rows = []
    for d, (gold_spans, pred_spans) in enumerate(zip(gold, pred, strict=True)):
        g, p = _span_set(gold_spans, "gold", d), _span_set(pred_spans, "pred", d)
        rows.append((len(g & p), len(p), len(g)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _span_scores(counts: np.ndarray) -> dict[str, float | int]:
    gold, predicted, matched_gold, matched_predicted = (int(c) for c in counts)
    precision = matched_predicted / predicted if predicted else 0.0
    recall = matched_gold / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "gold": gold,
        "predicted": predicted,
        "matched_gold": matched_gold,
        "matched_predicted": matched_predicted,
    }


def _span_set(spans: Sequence[Span], name: str, document: int) -> set[Span]:
    result = set()
    for start, end, label in spans:
        if not start < end:
            raise ValueError(
                f"{name} document {document}: span ({start}, {end}, {label!r}) is empty or reversed; "
                "spans are (start, end, label) with end exclusive and start < end"
            )
        result.add((int(start), int(end), label))
    return result


def _indicator(matrix: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"{name} must be a 2-d 0/1 indicator matrix (items × labels)")
    return matrix.astype(np.int64)


def _as_list(values: Sequence[Hashable] | np.ndarray) -> list[Hashable]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)
