"""Platt scaling of span confidences (the fitting, not spaCy: tests/train/test_train_spans.py
runs the whole recipe) and the score a Span carries."""

from __future__ import annotations

import numpy as np

from stillhouse.data.records import Span, answer_from_json, answer_to_json
from stillhouse.evaluate.calibration import expected_calibration_error
from stillhouse.train.recipes.parts.span_confidence import (
    SpanCalibration,
    calibrated,
    fit_span_calibration,
)


def overconfident(seed: int, texts: int = 120) -> tuple[list[tuple[Span, ...]], list[list[Span]]]:
    """Two spans per text; half of them have marginal 1.0 and are right 80% of the time, the
    rest have marginals in [0.5, 1) and are right half as often as they claim."""
    rng = np.random.default_rng(seed)
    predicted, gold = [], []
    for _ in range(texts):
        spans, truth = [], []
        for slot in range(2):
            marginal = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.5, 1.0))
            right = rng.random() < (0.8 if marginal == 1.0 else marginal / 2)
            span = Span(10 * slot, 10 * slot + 4, "PER", "name", marginal)
            spans.append(span)
            truth.append(span if right else Span(10 * slot, 10 * slot + 5, "PER", "name."))
        predicted.append(tuple(spans))
        gold.append(truth)
    return predicted, gold


def test_platt_scaling_lowers_the_out_of_fold_ece_of_overconfident_marginals() -> None:
    predicted, gold = overconfident(seed=0)
    fit = fit_span_calibration(predicted, gold, seed=0)
    assert fit.fitted and fit.spans == 240 and 0 < fit.right < 240
    assert fit.ece_before > 0.2 and fit.ece_after < fit.ece_before / 2
    assert fit.calibration.slope > 0  # more beam agreement still means more likely right
    # the scaling carries over to new spans of the same kind
    test, truth = overconfident(seed=1)
    flat = [span for answer in calibrated(test, fit.calibration) for span in answer]
    right = [
        (s.start, s.end) in {(t.start, t.end) for t in truth[i // 2]} for i, s in enumerate(flat)
    ]
    raw = [span.score for answer in test for span in answer]
    after = expected_calibration_error(
        np.array([s.score for s in flat]), np.array(right), 10, "mass"
    )
    before = expected_calibration_error(np.array(raw), np.array(right), 10, "mass")
    assert after < before / 2


def test_too_few_wrong_spans_keep_the_marginals() -> None:
    predicted, _ = overconfident(seed=2, texts=20)
    fit = fit_span_calibration(predicted, [list(answer) for answer in predicted], seed=0)
    assert not fit.fitted and fit.calibration == SpanCalibration()
    assert fit.right == fit.spans == 40
    scores = [s.score for answer in calibrated(predicted, fit.calibration) for s in answer]
    # identity up to the clipping of 1.0 to 1 − 1e-4 before the log-odds
    assert np.allclose(scores, [s.score for answer in predicted for s in answer], atol=1e-4)


def test_no_predicted_spans_give_an_unfitted_zero_ece() -> None:
    fit = fit_span_calibration([(), ()], [[Span(0, 3, "PER", "Ada")], []], seed=0)
    assert not fit.fitted and fit.spans == 0 and fit.ece_before == fit.ece_after == 0.0
    assert calibrated([(), ()], fit.calibration) == [(), ()]


def test_a_span_score_is_written_and_read_but_not_compared() -> None:
    scored = (Span(0, 3, "PER", "Ada", 0.8123456789),)
    plain = (Span(0, 3, "PER", "Ada"),)
    assert scored == plain and hash(scored[0]) == hash(plain[0])
    written = answer_to_json(scored, "spans")
    assert written == [{"start": 0, "end": 3, "label": "PER", "text": "Ada", "score": 0.812346}]
    assert answer_to_json(plain, "spans") == [{"start": 0, "end": 3, "label": "PER", "text": "Ada"}]
    assert answer_from_json(written, "spans")[0].score == 0.812346  # type: ignore[union-attr]
    assert answer_from_json(answer_to_json(plain, "spans"), "spans")[0].score is None  # type: ignore[union-attr]
