"""Metrics with bootstrap intervals for multilabel and span tasks.

Both reduce to per-item counts (true/false positives per label; matched, predicted and gold
spans per type), so every resample's metric is a matrix product of how often each item was
drawn (:func:`stillhouse.evaluate.bootstrap.resample_counts`) with those counts: no loop over
resamples. The point estimates come from the same formulas with every item drawn once, and
equal scikit-learn's multilabel metrics and :func:`stillhouse.evaluate.accuracy.span_metrics`.

- **multilabel**: ``accuracy`` = subset accuracy (every label of the item right), ``micro_f1``,
  ``macro_f1`` (mean over all task labels; a label never given nor predicted scores 0, as
  scikit-learn with ``zero_division=0``), ``weighted_f1`` (by gold support), ``hamming_loss``
  (share of item × label cells wrong); ``per_label``: precision, recall, F1, support.
- **spans**: entity level. ``micro_f1``, ``precision``, ``recall``: strict (same start, end and
  type, as seqeval); ``partial_precision`` / ``partial_recall`` / ``partial_f1``: a span counts
  if it overlaps one of the same type; ``macro_f1`` / ``weighted_f1``: strict F1 per type
  averaged over the types seen in gold or predictions; ``accuracy``: share of documents whose
  spans are exactly right. ``per_label``: type → ``strict`` and ``partial`` scores and counts.

``correct`` (per item, 1 when the whole answer is right) feeds the paired comparisons and
slices as for classification.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stillhouse.data.records import Span
from stillhouse.evaluate.accuracy import span_metrics
from stillhouse.evaluate.bootstrap import (
    Interval,
    divide_or_zero,
    percentile_interval,
    resample_counts,
)


def multilabel_results(
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    labels: Sequence[str],
    indices: np.ndarray,
    confidence: float = 0.95,
) -> tuple[dict[str, Any], np.ndarray]:
    """``metrics`` (intervals) and ``per_label`` of a multilabel system, and ``correct``."""
    truth = _indicator(gold, labels)
    guess = _indicator(predicted, labels)
    per_item = {
        "tp": truth & guess,
        "fp": ~truth & guess,
        "fn": truth & ~guess,
        "support": truth,
    }
    exact = (truth == guess).all(axis=1)
    wrong_cells = (truth != guess).mean(axis=1)

    def scores(counts: np.ndarray) -> dict[str, np.ndarray]:
        n = counts.sum(axis=1)
        tp, fp, fn, support = (counts @ per_item[key].astype(float) for key in per_item)
        f1 = divide_or_zero(2 * tp, 2 * tp + fp + fn)
        return {
            "accuracy": counts @ exact / n,
            "micro_f1": divide_or_zero(2 * tp.sum(1), (2 * tp + fp + fn).sum(1)),
            "macro_f1": f1.mean(axis=1),
            "weighted_f1": divide_or_zero((f1 * support).sum(1), support.sum(1)),
            "hamming_loss": counts @ wrong_cells / n,
        }

    metrics = _intervals(scores, len(exact), indices, confidence)
    tp, fp, fn = (per_item[key].sum(axis=0) for key in ("tp", "fp", "fn"))
    precision, recall = divide_or_zero(tp, tp + fp), divide_or_zero(tp, tp + fn)
    f1 = divide_or_zero(2 * tp, 2 * tp + fp + fn)
    per_label = {
        label: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(truth[:, k].sum()),
        }
        for k, label in enumerate(labels)
    }
    return {"metrics": metrics, "per_label": per_label}, exact.astype(np.int64)


def span_results(
    gold: Sequence[Sequence[Span]],
    predicted: Sequence[Sequence[Span]],
    indices: np.ndarray,
    confidence: float = 0.95,
) -> tuple[dict[str, Any], np.ndarray]:
    """``metrics`` (intervals) and ``per_label`` (per type, strict and partial) of a span
    system, and ``correct`` (documents whose span set is exactly right)."""
    gold_sets = [_triples(spans) for spans in gold]
    pred_sets = [_triples(spans) for spans in predicted]
    overall = span_metrics(gold_sets, pred_sets)
    types = list(overall["strict"]["per_type"])
    # per document and type: gold, predicted, strict matches, partial gold found, partial right
    counts = np.zeros((5, len(gold_sets), max(len(types), 1)))
    column = {label: t for t, label in enumerate(types)}
    for d, (g, p) in enumerate(zip(gold_sets, pred_sets, strict=True)):
        if not g and not p:
            continue
        document = span_metrics([g], [p])
        for label, scores in document["strict"]["per_type"].items():
            partial = document["partial"]["per_type"][label]
            counts[:, d, column[label]] = (
                scores["gold"],
                scores["predicted"],
                scores["matched_predicted"],
                partial["matched_gold"],
                partial["matched_predicted"],
            )
    exact = np.array([g == p for g, p in zip(gold_sets, pred_sets, strict=True)])

    def scores(drawn: np.ndarray) -> dict[str, np.ndarray]:
        g, p, matched, found, right = (drawn @ counts[i] for i in range(5))
        f1 = divide_or_zero(2 * matched, g + p)
        precision = divide_or_zero(matched.sum(1), p.sum(1))
        recall = divide_or_zero(matched.sum(1), g.sum(1))
        partial_precision = divide_or_zero(right.sum(1), p.sum(1))
        partial_recall = divide_or_zero(found.sum(1), g.sum(1))
        return {
            "accuracy": drawn @ exact / drawn.sum(axis=1),
            "micro_f1": divide_or_zero(2 * matched.sum(1), (g + p).sum(1)),
            "macro_f1": f1.mean(axis=1) if types else np.zeros(len(drawn)),
            "weighted_f1": divide_or_zero((f1 * g).sum(1), g.sum(1)),
            "precision": precision,
            "recall": recall,
            "partial_precision": partial_precision,
            "partial_recall": partial_recall,
            "partial_f1": divide_or_zero(
                2 * partial_precision * partial_recall, partial_precision + partial_recall
            ),
        }

    metrics = _intervals(scores, len(exact), indices, confidence)
    per_label = {
        label: {
            "strict": overall["strict"]["per_type"][label],
            "partial": overall["partial"]["per_type"][label],
        }
        for label in types
    }
    return {"metrics": metrics, "per_label": per_label}, exact.astype(np.int64)


def _intervals(scores: Any, n: int, indices: np.ndarray, confidence: float) -> dict[str, Any]:
    observed = scores(np.ones((1, n)))
    resampled = scores(resample_counts(indices))
    return {
        metric: _interval(percentile_interval(float(observed[metric][0]), values, confidence))
        for metric, values in resampled.items()
    }


def _indicator(answers: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    column = {label: k for k, label in enumerate(labels)}
    matrix = np.zeros((len(answers), len(labels)), dtype=bool)
    for i, answer in enumerate(answers):
        matrix[i, [column[label] for label in answer]] = True
    return matrix


def strict_hits(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> np.ndarray:
    """Whether each predicted span (flattened in order) matches a gold span of its text exactly:
    start, end and type (the strict matching of :func:`span_results`)."""
    return np.array(
        [
            (span.start, span.end, span.label) in wanted
            for wanted, answer in zip(map(_triples, gold), predicted, strict=True)
            for span in answer
        ],
        dtype=bool,
    )


def _triples(spans: Sequence[Span]) -> frozenset[tuple[int, int, str]]:
    return frozenset((span.start, span.end, span.label) for span in spans)


def _interval(interval: Interval) -> dict[str, float]:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}
