"""evaluate: score every system on one labelled test set, with intervals and paired comparisons.

Classification tasks only in this version. One array of bootstrap resample indices is drawn
and reused for every metric, slice and system, so all intervals come from the same resamples
and the comparisons between systems are paired. The result is a :class:`Results` (see
:mod:`stillhouse.evaluate.results` for every key and unit).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.cascade import ABSTAINED, Cascade, stage_shares
from stillhouse.data.io import data_fingerprint, read_examples
from stillhouse.data.predictions import check_prediction
from stillhouse.data.records import Example, Prediction, Span, answer_to_json, text_id
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.accuracy import classification_metrics, label_indices
from stillhouse.evaluate.bootstrap import (
    Interval,
    bootstrap_interval,
    confusion_per_resample,
    divide_or_zero,
    f1_from_confusion,
    observed_indices,
    percentile_interval,
    resample_indices,
    resampled_values,
)
from stillhouse.evaluate.calibration import (
    brier_score,
    expected_calibration_error,
    held_out_temperature_scaling,
    negative_log_likelihood,
    reliability_bins,
)
from stillhouse.evaluate.efficiency import (
    EfficiencySettings,
    measure_efficiency,
    reproducibility,
    sample_positions,
)
from stillhouse.evaluate.paired import describe_difference, holm, mcnemar_exact, paired_bootstrap
from stillhouse.evaluate.perturb import parse_perturbations
from stillhouse.evaluate.redteam import (
    build_attacks,
    check_attack_count,
    measure_redteam,
    redteam_sources,
)
from stillhouse.evaluate.results import Results
from stillhouse.evaluate.robustness import measure_perturbations
from stillhouse.evaluate.selective import (
    coverage_at_precision,
    risk_coverage_curve,
    selective_per_resample,
)
from stillhouse.evaluate.structured import multilabel_results, span_results, strict_hits
from stillhouse.guard.screen import count_screened
from stillhouse.predictors import PredictionsFile, Predictor
from stillhouse.provenance import package_versions
from stillhouse.task import Task

CONFIDENCE = 0.95
ALPHA = 0.05
DEFAULT_TARGET_PRECISION = 0.99
TOP_SHARE = 0.10
CALIBRATION_BINS = 10
MISSING_SLICE = "(missing)"
ERRORS_SHOWN = 20
CLASSIFY_ONLY = "classification tasks only in this version"
NO_SPAN_SCORES = "span tasks: only when every predicted span has a score"
CURVE_POINTS = 101
FILE_CANNOT_PREDICT = "a predictions file answers only the texts it was written for"
ALL_ABSTAINED = "the system abstained on every item"
# The confidence given an abstention in selective prediction: answered at no threshold.
ABSTAIN_CONFIDENCE = -1.0


def evaluate(
    task: Task,
    test_path: str | Path,
    systems: Mapping[str, Predictor],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    slices: Sequence[str] = (),
    target_precision: float | None = None,
    perturbations: Sequence[str] = (),
    efficiency: EfficiencySettings | None = None,
    redteam: int | None = None,
) -> Results:
    """Evaluate ``systems`` (name → Predictor) on the gold-labelled examples of ``test_path``.

    ``slices``: meta fields (task.toml ``[input].meta``) to report accuracy per value of.
    ``target_precision``: the accuracy ``coverage_at_precision`` must reach; None takes the
    ``precision`` of the task's ``min_coverage_at_precision`` gate rule, else 0.99.
    ``perturbations``: names from :mod:`stillhouse.evaluate.perturb` (seeded with ``seed``);
    each system that can predict texts (not a predictions file) answers every perturbed text.
    ``efficiency``: how such systems are timed (default :class:`EfficiencySettings`, a sample
    of 100 texts; ``sample=0`` turns efficiency and reproducibility off).
    ``redteam``: how many test texts to attack (:mod:`stillhouse.evaluate.redteam`, seeded
    with ``seed``; None: no red team); each system that can predict texts answers them.
    Multilabel and span tasks get the metrics of :mod:`stillhouse.evaluate.structured`, slices,
    comparisons on whole-answer correctness, efficiency and reproducibility; calibration,
    selective prediction, confusion matrices and perturbations are classification only.
    Bad input raises a StillhouseError: E504 (no system), E515 (bad setting), E930 (a bad
    ``redteam`` count), E516 (unknown slice field), E537 (a span outside its text), the read errors of :func:`read_examples` (an
    empty test set is E104) and the prediction errors of
    :class:`stillhouse.predictors.PredictionsFile` and
    :func:`stillhouse.data.predictions.check_prediction`.
    """
    if not systems:
        raise fail(Errors.E504)
    target = default_target_precision(task) if target_precision is None else target_precision
    _check_settings(n_resamples, seed, target)
    if redteam is not None:
        check_attack_count(redteam, "redteam")
    examples = read_examples(test_path, task, require_gold=True, offers_skip_invalid=False).examples
    _check_slices(examples, slices)
    perturbations = parse_perturbations(perturbations)
    timing = replace(efficiency or EfficiencySettings(), seed=seed)
    _check_efficiency(timing)
    timed = sample_positions(len(examples), timing)
    labels = task.label_names
    classify = task.kind == "classify"
    gold = label_indices([example.gold for example in examples], labels) if classify else None
    indices = resample_indices(len(examples), n_resamples, seed)
    source = f"the test set {test_path}"
    attacks = (
        build_attacks(
            [example.text for example in examples],
            [example.gold for example in examples],  # type: ignore[misc]
            labels,
            redteam,
            seed=seed,
        )
        if redteam is not None and classify
        else []
    )
    measured: dict[str, dict[str, Any]] = {}
    for name, predictor in systems.items():
        predictions = _predictions(name, predictor, examples, task, source)
        not_measured: dict[str, str] = {}
        if classify:
            assert gold is not None
            predicted = answer_codes(predictions, labels)
            correct = (predicted == gold).astype(np.int64)
            core = _system_results(predictions, predicted, gold, labels, indices, target, seed)
            if core["abstention"]["abstained"] == len(examples):
                not_measured["calibration"] = not_measured["selective"] = ALL_ABSTAINED
        else:
            core, correct = _structured_results(name, task, examples, predictions, indices, seed)
            not_measured["selective"] = CLASSIFY_ONLY
            if core["calibration"] is None:
                not_measured["calibration"] = (
                    NO_SPAN_SCORES if task.kind == "spans" else CLASSIFY_ONLY
                )
        robustness = None
        if perturbations and not classify:
            not_measured["robustness"] = CLASSIFY_ONLY
        elif perturbations and isinstance(predictor, PredictionsFile):
            not_measured["robustness"] = FILE_CANNOT_PREDICT
        elif perturbations:
            assert gold is not None
            robustness = measure_perturbations(
                [example.text for example in examples],
                predicted,
                gold,
                perturbations,
                partial(_predict_labels, name, predictor, task),
                seed=seed,
                indices=indices,
                confidence=CONFIDENCE,
            )
        redteam_results = None
        if redteam is not None and not classify:
            not_measured["redteam"] = CLASSIFY_ONLY
        elif redteam is not None and isinstance(predictor, PredictionsFile):
            not_measured["redteam"] = FILE_CANNOT_PREDICT
        elif attacks:
            assert gold is not None
            redteam_results = measure_redteam(
                attacks,
                predictions,
                predicted,
                gold,
                labels,
                partial(_texts_predictions, name, predictor, task),
                n_resamples=n_resamples,
                seed=seed,
                clean_indices=indices,
                ids=[example.id for example in examples],
                confidence=CONFIDENCE,
            )
        efficiency_results = reproducibility_results = None
        if isinstance(predictor, PredictionsFile):
            not_measured["efficiency"] = not_measured["reproducibility"] = FILE_CANNOT_PREDICT
        elif timing.sample > 0:
            efficiency_results, again = measure_efficiency(
                predictor, [examples[i].text for i in timed], timing
            )
            reproducibility_results = reproducibility([predictions[i] for i in timed], again)
        if isinstance(predictor, Cascade):
            core["cascade"] = stage_shares(predictions, predictor)
        screened = count_screened([prediction.info for prediction in predictions])
        if screened is not None:  # [guard]: texts screened for injection, flagged, kept
            core["guard"] = {
                "injection": task.guard.injection,
                "detector": task.guard.detector,
                **screened,
            }
        measured[name] = {
            "description": predictor.describe(),
            **core,
            "slices": _slice_results(examples, correct, indices, slices)
            | _routed_slices(predictor, examples, predictions, correct, indices),
            "most_confident_errors": _most_confident_errors(examples, predictions, correct, task),
            "robustness": robustness,
            "redteam": redteam_results,
            "efficiency": efficiency_results,
            "reproducibility": reproducibility_results,
            "not_measured": not_measured,
            "correct": correct.tolist(),
        }
    return Results(
        task={
            "name": task.name,
            "kind": task.kind,
            "labels": labels,
            "fingerprint": task.fingerprint(),
        },
        data={
            "path": str(test_path),
            "fingerprint": data_fingerprint(examples),
            "n_items": len(examples),
            "ids": [example.id for example in examples],
        },
        settings={
            "n_resamples": n_resamples,
            "seed": seed,
            "confidence": CONFIDENCE,
            "target_precision": target,
            "slices": list(slices),
            "perturbations": list(perturbations),
            "redteam": None
            if redteam is None
            else {"texts": redteam, "attacked": len(attacks), **redteam_sources()},
            "efficiency": {
                "sample": timing.sample,
                "warmup": timing.warmup,
                "batch_sizes": list(timing.batch_sizes),
            },
        },
        provenance={
            "model_hashes": {
                name: model_hash(system["description"]) for name, system in measured.items()
            },
            "package_versions": package_versions(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        systems=measured,
        comparisons=_comparisons(measured, indices),
    )


def default_target_precision(task: Task) -> float:
    """The precision of the task's ``min_coverage_at_precision`` gate rule, else 0.99."""
    rule = task.gate.get("min_coverage_at_precision")
    precision = rule.get("precision") if isinstance(rule, dict) else None
    if isinstance(precision, int | float) and not isinstance(precision, bool):
        return float(precision)
    return DEFAULT_TARGET_PRECISION


def _check_settings(n_resamples: int, seed: int, target: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise fail(Errors.E515, what="n_resamples", expected="an integer ≥ 1", value=n_resamples)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise fail(Errors.E515, what="seed", expected="an integer ≥ 0", value=seed)
    if not 0 < target <= 1:
        raise fail(Errors.E515, what="target_precision", expected="in (0, 1]", value=target)


def model_hash(description: dict[str, Any]) -> str | None:
    """The sha256 a system's ``describe()`` reports for its model or file, if any."""
    for key in ("sha256", "model_sha256"):
        if isinstance(description.get(key), str):
            return description[key]
    return None


def _check_efficiency(settings: EfficiencySettings) -> None:
    if settings.sample < 0 or settings.warmup < 0:
        raise fail(Errors.E515, what="efficiency sample and warmup", expected="≥ 0", value=settings)
    if not settings.batch_sizes or any(size < 1 for size in settings.batch_sizes):
        detail = "a non-empty list of integers ≥ 1"
        raise fail(
            Errors.E515, what="efficiency batch sizes", expected=detail, value=settings.batch_sizes
        )


def _check_slices(examples: Sequence[Example], slices: Sequence[str]) -> None:
    present = sorted({key for example in examples for key in example.meta})
    for field in slices:
        if field not in present:
            shown = ", ".join(f"`{key}`" for key in present) or "none"
            raise fail(Errors.E516, field=field, present=shown)


def _predictions(
    name: str, predictor: Predictor, examples: Sequence[Example], task: Task, source: str
) -> list[Prediction]:
    """The predictor's predictions for ``examples``, validated; all with probabilities or none."""
    if isinstance(predictor, PredictionsFile):
        return predictor.for_examples(examples, source=source)
    # a predictor that reads meta (a by-lang system: the `lang` field) gets each example's
    metas = [e.meta for e in examples] if getattr(predictor, "reads_meta", False) else None
    return _checked_predictions(
        name,
        predictor,
        task,
        [example.text for example in examples],
        [e.id for e in examples],
        metas,
    )


def _checked_predictions(
    name: str,
    predictor: Predictor,
    task: Task,
    texts: Sequence[str],
    ids: Sequence[str],
    metas: Sequence[dict[str, Any]] | None = None,
) -> list[Prediction]:
    """``predictor.predict(texts)`` (with ``metas=`` when given), one valid prediction per text
    (E513, E514 otherwise)."""
    predictions = (
        predictor.predict(texts) if metas is None else predictor.predict(texts, metas=metas)  # type: ignore[call-arg]
    )
    if len(predictions) != len(texts):
        raise fail(Errors.E513, name=name, got=len(predictions), expected=len(texts))
    for prediction, identifier in zip(predictions, ids, strict=True):
        check_prediction(prediction, task, name, identifier)
        if (prediction.probs is None) != (predictions[0].probs is None):
            detail = "some predictions have probabilities and others not; give all or none"
            raise fail(Errors.E514, name=name, id=identifier, detail=detail)
    return predictions


def _texts_predictions(
    name: str, predictor: Predictor, task: Task, texts: Sequence[str]
) -> list[Prediction]:
    """``predictor``'s validated predictions for new texts (named by their hash)."""
    return _checked_predictions(name, predictor, task, texts, [text_id(t) for t in texts])


def _predict_labels(
    name: str, predictor: Predictor, task: Task, texts: Sequence[str]
) -> np.ndarray:
    """The label indices ``predictor`` gives ``texts`` (perturbed texts are named by their hash)."""
    predictions = _checked_predictions(name, predictor, task, texts, [text_id(t) for t in texts])
    return answer_codes(predictions, task.label_names)


def answer_codes(predictions: Sequence[Prediction], labels: Sequence[str]) -> np.ndarray:
    """Each answer's index in ``labels``; an abstention (a cascade's ``""``) gets
    ``len(labels)``, a code no gold label has: it counts as an error."""
    answers = [prediction.answer for prediction in predictions]
    if ABSTAINED not in answers:
        return label_indices(answers, labels)
    codes = {label: i for i, label in enumerate(labels)} | {ABSTAINED: len(labels)}
    return np.array([codes[answer] for answer in answers], dtype=np.int64)  # type: ignore[index]


def _system_results(
    predictions: Sequence[Prediction],
    predicted: np.ndarray,
    gold: np.ndarray,
    labels: list[str],
    indices: np.ndarray,
    target: float,
    seed: int,
) -> dict[str, Any]:
    """Metrics with intervals, per-label scores, confusion, calibration, selective prediction.

    ``predicted``, ``gold``: shape (n,), label indices into ``labels`` (``len(labels)`` for an
    abstention: an error in every accuracy metric, a miss of its gold label's recall, no
    label's false positive, not in the confusion matrix; calibration is measured on the
    answered items; selective prediction as in :mod:`stillhouse.evaluate.selective`).
    """
    n_labels = len(labels)
    correct = (predicted == gold).astype(np.int64)
    abstained = predicted == n_labels
    codes = list(range(n_labels))
    if abstained.any():
        report = _abstaining_metrics(gold, predicted, codes)
    else:
        report = classification_metrics(gold, predicted, codes)
    # an abstention column (never a gold label) keeps recall's denominators whole
    width = n_labels + int(abstained.any())
    confusion = confusion_per_resample(gold, predicted, indices, n_labels=width)
    f1 = f1_from_confusion(confusion)[..., :n_labels]
    support = confusion.sum(axis=-1)[..., :n_labels]  # gold count of each label in each resample
    accuracy = resampled_values(correct, indices)
    micro = accuracy  # one gold and one predicted label per item: micro-F1 = accuracy
    if abstained.any():  # micro-F1 = 2·right / (answered + all)
        micro = divide_or_zero(
            2 * accuracy, resampled_values((~abstained).astype(np.int64), indices) + 1
        )
    per_resample = {
        "accuracy": accuracy,
        "macro_f1": f1.mean(axis=-1),
        "micro_f1": micro,
        "weighted_f1": divide_or_zero((f1 * support).sum(axis=-1), support.sum(axis=-1)),
    }
    has_probabilities = predictions[0].probs is not None
    results: dict[str, Any] = {
        "has_probabilities": has_probabilities,
        "metrics": {
            metric: _interval(percentile_interval(report[metric], values, CONFIDENCE))
            for metric, values in per_resample.items()
        },
        "per_label": {labels[int(code)]: scores for code, scores in report["per_label"].items()},
        "confusion_matrix": report["confusion_matrix"],
        "calibration": None,
        "selective": None,
        "abstention": _abstention(abstained, correct, indices),
    }
    shown = ~abstained
    if has_probabilities and shown.any():
        probs = np.array([[p.probs[label] for label in labels] for p in predictions])  # type: ignore[index]
        confidence = probs[np.arange(len(predicted)), np.minimum(predicted, n_labels - 1)]
        confidence[abstained] = ABSTAIN_CONFIDENCE
        results["calibration"] = _calibration(
            probs[shown], confidence[shown], correct[shown], gold[shown], predicted[shown], seed
        )
        results["selective"] = _selective(confidence, correct, indices, target)
    return results


def _abstaining_metrics(
    gold: np.ndarray, predicted: np.ndarray, codes: list[int]
) -> dict[str, Any]:
    """:func:`classification_metrics` for answers with abstentions (codes outside ``codes``):
    scikit-learn restricted to the task's labels, accuracy over all items."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=codes, average=None, zero_division=0
    )
    averages = {
        f"{average}_f1": float(
            f1_score(gold, predicted, labels=codes, average=average, zero_division=0)
        )
        for average in ("macro", "micro", "weighted")
    }
    return {
        "accuracy": float(np.mean(gold == predicted)),
        **averages,
        "per_label": {
            code: {
                "precision": float(precision[code]),
                "recall": float(recall[code]),
                "f1": float(f1[code]),
                "support": int(support[code]),
            }
            for code in codes
        },
        "confusion_matrix": confusion_matrix(gold, predicted, labels=codes).tolist(),
    }


def _abstention(abstained: np.ndarray, correct: np.ndarray, indices: np.ndarray) -> dict[str, Any]:
    """How many items were abstained on; ``coverage`` (share answered, an interval) and
    ``accuracy_answered`` (accuracy on the answered items; null when none was)."""
    answered = (~abstained).astype(np.int64)
    coverage = (
        bootstrap_interval(answered, indices, CONFIDENCE)
        if abstained.any()
        else Interval(1.0, 1.0, 1.0)  # every resample answers everything
    )
    return {
        "abstained": int(abstained.sum()),
        "coverage": _interval(coverage),
        "accuracy_answered": float(correct[~abstained].mean()) if answered.any() else None,
    }


def _calibration(
    probs: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    gold: np.ndarray,
    predicted: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    return {
        "ece_10_equal_mass": expected_calibration_error(
            confidence, correct, CALIBRATION_BINS, scheme="mass"
        ),
        "ece_10_equal_width": expected_calibration_error(
            confidence, correct, CALIBRATION_BINS, scheme="width"
        ),
        "brier": brier_score(probs, gold),
        "nll": negative_log_likelihood(probs, gold),
        "temperature_scaling": held_out_temperature_scaling(
            probs, gold, predicted, seed=seed, bins=CALIBRATION_BINS
        ),
        "reliability_bins": [
            dict(b._asdict()) for b in reliability_bins(confidence, correct, CALIBRATION_BINS)
        ],
    }


def _selective(
    confidence: np.ndarray, correct: np.ndarray, indices: np.ndarray, target: float
) -> dict[str, Any]:
    # one counting pass per system serves all three metrics, observed and resampled
    observed = selective_per_resample(
        confidence, correct, observed_indices(len(correct)), share=TOP_SHARE, target=target
    )
    resampled = selective_per_resample(confidence, correct, indices, share=TOP_SHARE, target=target)
    intervals = {
        metric: _interval(percentile_interval(float(observed[metric][0]), values, CONFIDENCE))
        for metric, values in resampled.items()
    }
    at_precision = coverage_at_precision(confidence, correct, target)
    curve = risk_coverage_curve(confidence, correct)
    # at most CURVE_POINTS points, always the first and the last, for plots
    shown = np.unique(np.linspace(0, len(curve.coverages) - 1, CURVE_POINTS).round().astype(int))
    return {
        "risk_coverage": {
            "coverage": curve.coverages[shown].tolist(),
            "risk": curve.risks[shown].tolist(),
            "threshold": curve.thresholds[shown].tolist(),
        },
        "aurc": intervals["aurc"],
        "accuracy_at_top_10pct": intervals["accuracy_at_top"],
        "coverage_at_precision": {
            "target": target,
            "coverage": intervals["coverage_at_precision"],
            "threshold": at_precision.threshold,
            "accuracy": at_precision.accuracy,
        },
    }


def _most_confident_errors(
    examples: Sequence[Example], predictions: Sequence[Prediction], correct: np.ndarray, task: Task
) -> list[dict[str, Any]]:
    """The wrong answers given with the highest confidence (test order among ties; without
    probabilities, and for multilabel and span tasks, the first wrong answers in test order).
    Abstentions are not answers: they are counted in ``abstention``, not listed here."""
    answered = np.array([not p.info.get("abstained") for p in predictions], dtype=bool)
    wrong = np.flatnonzero((correct == 0) & answered)

    def confidence(i: int) -> float | None:
        probs = predictions[i].probs
        return probs.get(predictions[i].answer) if probs and task.kind == "classify" else None  # type: ignore[call-overload]

    shown = np.array([confidence(i) or 0.0 for i in wrong])
    order = wrong[np.argsort(-shown, kind="stable")][:ERRORS_SHOWN]
    return [
        {
            "id": examples[i].id,
            "text": examples[i].text,
            "gold": answer_to_json(examples[i].gold, task.kind),  # type: ignore[arg-type]
            "predicted": _with_span_texts(
                answer_to_json(predictions[i].answer, task.kind), examples[i].text
            ),
            "confidence": confidence(i),
        }
        for i in order
    ]


def _with_span_texts(answer: Any, text: str) -> Any:
    """Predicted spans (JSON) with the text they cover, where a predictions file left it out."""
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        return [{**span, "text": text[span["start"] : span["end"]]} for span in answer]
    return answer


def _structured_results(
    name: str,
    task: Task,
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    indices: np.ndarray,
    seed: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """The metrics of a multilabel or span system (see :mod:`stillhouse.evaluate.structured`);
    a span system whose every predicted span has a score also gets ``calibration``, over its
    predicted spans."""
    gold = [example.gold for example in examples]
    answers = [prediction.answer for prediction in predictions]
    if task.kind == "multilabel":
        core, correct = multilabel_results(gold, answers, task.label_names, indices, CONFIDENCE)  # type: ignore[arg-type]
    else:
        for example, answer in zip(examples, answers, strict=True):
            for span in answer:  # type: ignore[union-attr]
                if span.end > len(example.text):  # type: ignore[union-attr]
                    raise fail(
                        Errors.E537,
                        name=name,
                        id=example.id,
                        start=span.start,  # type: ignore[union-attr]
                        end=span.end,  # type: ignore[union-attr]
                        label=span.label,  # type: ignore[union-attr]
                        length=len(example.text),
                    )
        core, correct = span_results(gold, answers, indices, CONFIDENCE)  # type: ignore[arg-type]
    calibration = (
        _span_calibration(gold, answers, seed) if task.kind == "spans" else None  # type: ignore[arg-type]
    )
    has_probabilities = predictions[0].probs is not None or calibration is not None
    extra = {"calibration": calibration, "selective": None, "confusion_matrix": None}
    return {"has_probabilities": has_probabilities, **core, **extra}, correct


def _span_calibration(
    gold: Sequence[Sequence[Span]], answers: Sequence[Sequence[Span]], seed: int
) -> dict[str, Any] | None:
    """Calibration over predicted spans: a span's confidence is its ``score``, it is right when
    start, end and type match a gold span (strict). Each span is a two-column item [wrong,
    right], so ECE, Brier, NLL, the reliability bins and the temperature diagnostic mean what
    they mean for classification. None unless every predicted span (at least one) has a score."""
    spans = [span for answer in answers for span in answer]
    if not spans or any(span.score is None for span in spans):
        return None
    right = strict_hits(gold, answers).astype(np.int64)
    score = np.array([span.score for span in spans], dtype=float)
    probs = np.column_stack([1 - score, score])
    return {
        "unit": "predicted span",
        "items": len(spans),
        **_calibration(probs, score, right, right, np.ones(len(spans), dtype=np.int64), seed),
    }


def _routed_slices(
    predictor: Predictor,
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    correct: np.ndarray,
    indices: np.ndarray,
) -> dict[str, Any]:
    """For a by-lang system: accuracy per language it routed on (the slice ``lang (routed)``)."""
    from stillhouse.systems.by_lang import ROUTE_SLICE, RoutedSystem, routed_examples

    if not isinstance(predictor, RoutedSystem):
        return {}
    routed = routed_examples(examples, predictions)
    return _slice_results(routed, correct, indices, [ROUTE_SLICE])


def _slice_results(
    examples: Sequence[Example], correct: np.ndarray, indices: np.ndarray, fields: Sequence[str]
) -> dict[str, Any]:
    """Per meta field: accuracy of each value's examples with intervals, the worst, the best and
    the gap between them (its interval over the resamples that drew both groups)."""
    results = {}
    for field in fields:
        values = [str(example.meta.get(field, MISSING_SLICE)) for example in examples]
        names, codes = np.unique(np.array(values), return_inverse=True)
        accuracy, held = _resampled_group_accuracy(codes.reshape(-1), len(names), correct, indices)
        groups = {}
        for g, name in enumerate(names.tolist()):
            member = codes == g
            estimate = float(correct[member].mean())
            if held[:, g].any():
                interval = percentile_interval(estimate, accuracy[held[:, g], g], CONFIDENCE)
            else:  # a tiny slice no resample drew: nothing is known about its spread
                interval = Interval(estimate, 0.0, 1.0)
            groups[name] = {"n": int(member.sum()), "accuracy": _interval(interval)}
        ranked = sorted(range(len(names)), key=lambda g: groups[names[g]]["accuracy"]["estimate"])
        worst, best = ranked[0], ranked[-1]
        worst_accuracy = groups[names[worst]]["accuracy"]["estimate"]
        gap = groups[names[best]]["accuracy"]["estimate"] - worst_accuracy
        both = held[:, best] & held[:, worst]
        if both.any():
            differences = accuracy[both, best] - accuracy[both, worst]
            gap_interval = percentile_interval(gap, differences, CONFIDENCE)
        else:
            gap_interval = Interval(gap, -1.0, 1.0)
        results[field] = {
            "groups": groups,
            "worst": str(names[worst]),
            "best": str(names[best]),
            "worst_accuracy": worst_accuracy,
            "gap": gap,
            "gap_interval": _interval(gap_interval),
        }
    return results


def _resampled_group_accuracy(
    codes: np.ndarray, n_groups: int, correct: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per resample and group: accuracy (NaN where no member was drawn) and whether any member
    was drawn, shape (B, n_groups) each; one bincount over (resample, group) keys."""
    keys = (codes[indices] + (np.arange(len(indices)) * n_groups)[:, None]).ravel()
    size = len(indices) * n_groups
    drawn = np.bincount(keys, minlength=size).reshape(-1, n_groups)
    right = np.bincount(keys, weights=correct[indices].ravel(), minlength=size).reshape(
        -1, n_groups
    )
    held = drawn > 0
    return np.divide(right, drawn, out=np.full(drawn.shape, np.nan), where=held), held


def _comparisons(measured: dict[str, dict[str, Any]], indices: np.ndarray) -> list[dict[str, Any]]:
    """Every pair of systems: paired bootstrap and exact McNemar on accuracy, Holm over pairs."""
    rows = []
    for a, b in itertools.combinations(measured, 2):
        correct_a = np.array(measured[a]["correct"])
        correct_b = np.array(measured[b]["correct"])
        observed = float(correct_a.mean() - correct_b.mean())
        bootstrap = paired_bootstrap(
            resampled_values(correct_a, indices),
            resampled_values(correct_b, indices),
            observed,
            CONFIDENCE,
        )
        mcnemar = mcnemar_exact(correct_a, correct_b)
        rows.append(
            {
                "a": a,
                "b": b,
                "metric": "accuracy",
                "difference": bootstrap.difference,
                "low": bootstrap.low,
                "high": bootstrap.high,
                "p_bootstrap": bootstrap.p_value,
                "mcnemar": {"only_a": mcnemar.b, "only_b": mcnemar.c, "p": mcnemar.p_value},
            }
        )
    adjusted = holm(np.array([row["mcnemar"]["p"] for row in rows])) if rows else []
    for row, p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = float(p_holm)
        row["sentence"] = describe_difference(
            row["a"],
            row["b"],
            row["difference"],
            row["low"],
            row["high"],
            row["p_holm"],
            ALPHA,
            confidence=CONFIDENCE,
        )
    return rows


def _interval(interval: Interval) -> dict[str, float]:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}
