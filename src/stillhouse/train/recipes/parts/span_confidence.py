"""A calibrated probability for every span the spaCy NER predicts.

spaCy's transition-based NER is decoded with a beam (``beam_parse``: ``BEAM_WIDTH`` parses,
pruned below ``BEAM_DENSITY`` of the best one's probability); the answer is the best parse, as
``nlp.pipe`` with spaCy's ``beam_ner`` would give it, and a span's raw confidence is its beam
marginal — the summed probability of the parses that contain exactly that span
(``EntityRecognizer.scored_ents``). A model trained greedily is overconfident there: every span
on which all parses agree gets 1.0, and the marginals' ECE over predicted spans was 0.21 on
presidio and 0.37 on wnut17 test texts, where 71% and 41% of the spans were right.

Platt scaling maps the marginal's log-odds z to ``sigmoid(slope · z + bias)``, fitted on the
held-out split's predicted spans (right = exactly a gold span: start, end and type). A
temperature alone cannot lower the cluster at 1.0: on three fit/score splits of the wnut17 test
texts a temperature on the beam's parse scores left an ECE of 0.25–0.26 and one on the log-odds
0.17–0.18, where Platt scaling reached 0.07–0.09 (presidio: 0.09–0.15, 0.09–0.12 and 0.05–0.10;
bench/span_confidence.py, bench/RESULTS.md). Beam decoding kept strict F1 (0.672 → 0.666
presidio, 0.317 → 0.323 wnut17) at 0.73–1.03× greedy throughput (three runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stillhouse.data.records import Span
from stillhouse.evaluate.calibration import expected_calibration_error
from stillhouse.evaluate.structured import strict_hits

BEAM_WIDTH = 16
BEAM_DENSITY = 1e-4
# log-odds of a marginal are taken within [CLIP, 1 − CLIP]: 1.0 (all parses agree) stays finite
CLIP = 1e-4
MIN_EACH = 3  # fewer right (or wrong) held-out spans than this fit no scaling
FOLDS = 2
ECE_BINS = 10


@dataclass(frozen=True)
class SpanCalibration:
    """``sigmoid(slope · logit(marginal) + bias)``; slope 1, bias 0 leaves the marginal as is."""

    slope: float = 1.0
    bias: float = 0.0

    def apply(self, marginals: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return expit(self.slope * _log_odds(marginals) + self.bias)


def beam_spans(
    nlp: Any, texts: Sequence[str], labels: set[str], batch_size: int = 64
) -> list[tuple[Span, ...]]:
    """The best beam parse's entities of a type in ``labels``, by character offsets, each with
    its beam marginal as ``score`` (uncalibrated)."""
    ner = nlp.get_pipe("ner")
    spans: list[tuple[Span, ...]] = []
    docs = [nlp.make_doc(text) for text in texts]
    for start in range(0, len(docs), batch_size):
        batch = docs[start : start + batch_size]
        if not any(len(doc) for doc in batch):  # beam_parse needs one token somewhere
            spans.extend(() for _ in batch)
            continue
        beams = ner.beam_parse(batch, beam_width=BEAM_WIDTH, beam_density=BEAM_DENSITY)
        ner.set_annotations(batch, beams)
        for doc, marginals in zip(batch, ner.scored_ents(beams), strict=True):
            spans.append(
                tuple(
                    Span(
                        entity.start_char,
                        entity.end_char,
                        entity.label_,
                        entity.text,
                        min(1.0, marginals.get((entity.start, entity.end, entity.label_), 0.0)),
                    )
                    for entity in doc.ents
                    if entity.label_ in labels
                )
            )
    return spans


def calibrated(
    spans: Sequence[tuple[Span, ...]], calibration: SpanCalibration
) -> list[tuple[Span, ...]]:
    """``spans`` with each ``score`` (a beam marginal) replaced by its calibrated probability."""
    flat = np.array([span.score for answer in spans for span in answer], dtype=float)
    scores = iter(calibration.apply(flat).tolist())
    return [tuple(replace(span, score=next(scores)) for span in answer) for answer in spans]


@dataclass(frozen=True)
class SpanCalibrationFit:
    """The scaling fitted on every held-out span, and what it is worth."""

    calibration: SpanCalibration
    fitted: bool  # False: too few right or wrong spans; the marginal is kept
    spans: int
    right: int
    ece_before: float
    ece_after: float  # out of fold: each text's spans scaled by a fit on the other fold


def fit_span_calibration(
    predicted: Sequence[tuple[Span, ...]],
    gold: Sequence[Sequence[Span]],
    seed: int,
) -> SpanCalibrationFit:
    """Platt-scale the beam marginals of ``predicted`` (scores from :func:`beam_spans`) against
    ``gold`` per text. ECE (10 equal-mass bins) before, and after out of fold: the texts are
    split in ``FOLDS`` seeded folds and each fold's spans are scaled by a fit on the others, so
    the figure is not measured on the spans that fitted it."""
    confidence = np.array([span.score for answer in predicted for span in answer], dtype=float)
    correct = strict_hits(gold, predicted)
    text_of = np.repeat(np.arange(len(predicted)), [len(answer) for answer in predicted])
    span_fold = (np.random.default_rng(seed).permutation(len(predicted)) % FOLDS)[text_of]
    after = np.empty_like(confidence)
    for k in range(FOLDS):
        inside = span_fold == k
        scaling = fit_platt(confidence[~inside], correct[~inside]) or SpanCalibration()
        after[inside] = scaling.apply(confidence[inside])
    calibration = fit_platt(confidence, correct)
    return SpanCalibrationFit(
        calibration=calibration or SpanCalibration(),
        fitted=calibration is not None,
        spans=int(confidence.size),
        right=int(correct.sum()),
        ece_before=expected_calibration_error(confidence, correct, ECE_BINS, scheme="mass"),
        ece_after=expected_calibration_error(after, correct, ECE_BINS, scheme="mass"),
    )


def fit_platt(confidence: np.ndarray, correct: np.ndarray) -> SpanCalibration | None:
    """Logistic regression of ``correct`` on the log-odds of ``confidence`` (unpenalised);
    None when fewer than ``MIN_EACH`` spans are right or wrong."""
    from sklearn.linear_model import LogisticRegression

    if min(int(correct.sum()), int((~correct).sum())) < MIN_EACH:
        return None
    model = LogisticRegression(C=np.inf).fit(_log_odds(confidence)[:, None], correct)
    return SpanCalibration(slope=float(model.coef_[0, 0]), bias=float(model.intercept_[0]))


def _log_odds(marginals: np.ndarray) -> np.ndarray:
    from scipy.special import logit

    return logit(np.clip(np.asarray(marginals, dtype=float), CLIP, 1 - CLIP))
