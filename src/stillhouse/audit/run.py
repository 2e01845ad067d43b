"""Run the audit: load the data, run the chosen checks, build the review queue; the report is
written by :mod:`stillhouse.audit.report` and the cleaned copy by :mod:`stillhouse.audit.fix`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stillhouse.audit import (
    balance,
    disagreement,
    duplicates,
    label_issues,
    language,
    leakage,
    near_duplicates,
    outliers,
    pii,
    text_health,
)
from stillhouse.audit.inputs import AuditData, load_audit_data
from stillhouse.audit.normalize import normalize_text
from stillhouse.audit.result import CheckResult, skipped
from stillhouse.audit.review_queue import build_review_queue, store_review_queue
from stillhouse.data.io import data_fingerprint
from stillhouse.data.store import ReviewItem
from stillhouse.errors import Errors, fail
from stillhouse.task import Task

if TYPE_CHECKING:
    from stillhouse.scale.engine import Engine

# In the order they run and are reported.
CHECKS = (
    "duplicates",
    "near_duplicates",
    "leakage",
    "label_issues",
    "disagreement",
    "outliers",
    "balance",
    "language",
    "pii",
    "text",
)
LABEL_CHECKS = ("label_issues", "disagreement", "balance")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class AuditSettings:
    """Everything that changes what the audit finds (recorded in audit.json)."""

    checks: tuple[str, ...] = CHECKS
    near_threshold: float = 0.8
    paraphrases: bool = False
    cosine_threshold: float = 0.95
    folds: int = label_issues.FOLDS
    filter_by: str = label_issues.FILTER_BY
    pii_threshold: float = pii.SCORE_THRESHOLD
    language_fast: bool | None = None
    seed: int = 0


@dataclass(frozen=True)
class AuditReport:
    task: Task
    data: AuditData
    settings: AuditSettings
    checks: dict[str, CheckResult]
    review_queue: list[ReviewItem]
    warnings: list[str] = field(default_factory=list)
    queue_store: Path | None = None

    def findings(self, check: str) -> Sequence[Any]:
        result = self.checks.get(check)
        return result.findings if result is not None else ()

    def describe_data(self) -> dict[str, Any]:
        data = self.data
        return {
            "path": str(data.path),
            "rows": len(data.examples),
            "fingerprint": data_fingerprint(data.examples),
            "labelled_rows": sum(label is not None for label in data.labels),
            "label_source": data.label_source,
            "empty_rows": len(data.empty_rows),
            "skipped_rows": data.skipped_rows,
            "test": None
            if data.test is None
            else {
                "path": str(data.test_path),
                "rows": len(data.test),
                "fingerprint": data_fingerprint(data.test),
            },
            "llm": None if data.llm is None else data.llm.annotator,
            "reference": data.reference_source,
        }

    def settings_json(self) -> dict[str, Any]:
        return {**asdict(self.settings), "checks": list(self.settings.checks)}


def parse_checks(spec: str) -> tuple[str, ...]:
    """``all`` or a comma-separated list of check names, in :data:`CHECKS` order (E601)."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise fail(Errors.E601, name=spec, choices=", ".join(CHECKS))
    if names == ["all"]:
        return CHECKS
    for name in names:
        if name not in CHECKS:
            raise fail(Errors.E601, name=name, choices=", ".join(CHECKS))
    return tuple(name for name in CHECKS if name in names)


def validate_settings(settings: AuditSettings) -> None:
    """Range checks of the numeric settings (E605)."""
    bounded = {
        "--near-threshold": (settings.near_threshold, 0.0, 1.0),
        "--cosine-threshold": (settings.cosine_threshold, 0.0, 1.0),
        "--pii-threshold": (settings.pii_threshold, 0.0, 1.0),
    }
    for what, (value, low, high) in bounded.items():
        if not low < value <= high:
            raise fail(Errors.E605, what=what, expected=f"in ({low:g}, {high:g}]", value=value)
    if settings.folds < 2:
        raise fail(Errors.E605, what="--folds", expected="at least 2", value=settings.folds)
    filters = (
        "prune_by_noise_rate",
        "prune_by_class",
        "both",
        "confident_learning",
        "predicted_neq_given",
    )
    if settings.filter_by not in filters:
        raise fail(
            Errors.E605,
            what="--filter-by",
            expected=f"one of {', '.join(filters)}",
            value=settings.filter_by,
        )


def run_audit(
    task: Task,
    data_path: str | Path,
    *,
    test_path: str | Path | None = None,
    annotator: str | None = None,
    settings: AuditSettings = AuditSettings(),
    skip_invalid: bool = False,
    write_queue: bool = True,
    progress: Progress | None = None,
    engine: Engine | None = None,
) -> AuditReport:
    """Audit ``data_path`` (and its split ``test_path``) for ``task``; see docs/audit.md.
    ``engine`` ``ray``: the sentence embeddings are computed by Ray actors."""
    validate_settings(settings)
    if annotator is not None and task.kind != "classify":
        raise fail(Errors.E607, path=task.path, kind=task.kind)
    say = progress or (lambda _: None)
    data = load_audit_data(
        task, data_path, test=test_path, annotator=annotator, skip_invalid=skip_invalid
    )
    warnings = list(data.warnings) + _degenerate_data_warnings(data, task)
    wanted = set(settings.checks)
    labels = data.labels if task.kind == "classify" else [None] * len(data.examples)
    checks: dict[str, CheckResult] = {}
    embeddings = _embeddings_if_needed(data, wanted, settings, say, engine)

    if "duplicates" in wanted:
        say("exact duplicates")
        checks["duplicates"] = duplicates.check_duplicates(data.examples, labels)
    if "near_duplicates" in wanted:
        say("near duplicates")
        checks["near_duplicates"] = near_duplicates.check_near_duplicates(
            data.examples,
            labels,
            threshold=settings.near_threshold,
            embeddings=embeddings if settings.paraphrases else None,
            cosine_threshold=settings.cosine_threshold,
        )
    if "leakage" in wanted:
        if data.test is None:
            checks["leakage"] = skipped(leakage.NAME, leakage.TITLE, "no --test split given.")
        else:
            say("train/test leakage")
            checks["leakage"] = leakage.check_leakage(
                data.examples, data.test, threshold=settings.near_threshold, train_labels=labels
            )
    issues: list[label_issues.LabelIssue] = []
    if "label_issues" in wanted:
        say("likely label errors")
        result = _label_issues(task, data, labels, embeddings, settings)
        checks["label_issues"], issues = result.check, result.issues
    found_disagreements: Sequence[disagreement.Disagreement] = ()
    if "disagreement" in wanted:
        checks["disagreement"] = _disagreement(task, data)
        found_disagreements = checks["disagreement"].findings
    if "outliers" in wanted:
        say("outliers")
        assert embeddings is not None
        checks["outliers"] = outliers.check_outliers(data.examples, labels, embeddings)
    if "balance" in wanted:
        if task.kind != "classify" or not data.labelled:
            checks["balance"] = skipped(balance.NAME, balance.TITLE, _no_labels(task, data))
        else:
            test_labels = None if data.test is None else [_gold(e.gold) for e in data.test]
            checks["balance"] = balance.check_balance(task.label_names, labels, test_labels)
    if "language" in wanted:
        say("language")
        checks["language"] = language.check_language(
            data.examples, labels, task.languages, fast=settings.language_fast
        )
    if "pii" in wanted:
        say("personal data")
        checks["pii"], _ = pii.check_pii(data.examples, score_threshold=settings.pii_threshold)
    if "text" in wanted:
        checks["text"] = text_health.check_text_health(data.examples, data.empty_rows)

    queue = build_review_queue(data, issues, found_disagreements)
    stored = None
    if write_queue and queue:
        store_review_queue(task, data, queue)
        stored = task.store_path
    return AuditReport(task, data, settings, checks, queue, warnings, stored)


def _gold(answer: object) -> str | None:
    return answer if isinstance(answer, str) else None


def _no_labels(task: Task, data: AuditData) -> str:
    if task.kind != "classify":
        return f"label checks handle `classify` tasks; this task is `{task.kind}`."
    return "the data has no labels (no label field values, no stored annotations to audit)."


def _degenerate_data_warnings(data: AuditData, task: Task) -> list[str]:
    warnings = []
    distinct = len({normalize_text(e.text) for e in data.examples})
    if distinct == 1 and len(data.examples) > 1:
        warnings.append(
            f"All {len(data.examples)} texts are the same after normalisation: only the "
            "duplicate and text checks say anything useful."
        )
    present = {label for label in data.labels if label is not None}
    if task.kind == "classify" and len(present) == 1:
        warnings.append(
            f"Every labelled row has the label {next(iter(present))!r}: a classifier cannot be "
            "trained on it and the label-error check is skipped."
        )
    if data.test is not None and task.kind == "classify":
        missing = sorted(
            {_gold(e.gold) for e in data.test if e.gold is not None} - present - {None}
        )  # type: ignore[operator]
        if present and missing:
            warnings.append(
                f"The test set has label(s) the training data lacks: {', '.join(missing)}; a "
                "model trained on it can never predict them."
            )
    if data.skipped_rows:
        warnings.append(
            f"Skipped {len(data.skipped_rows)} invalid row(s); first: {data.skipped_rows[0]}"
        )
    return warnings


def _embeddings_if_needed(
    data: AuditData,
    wanted: set[str],
    settings: AuditSettings,
    say: Progress,
    engine: Engine | None = None,
) -> np.ndarray | None:
    needs = "outliers" in wanted or settings.paraphrases
    learnable = len({label for label in data.labels if label is not None}) >= 2
    if "label_issues" in wanted and learnable and _llm_probabilities(data) is None:
        needs = True
    if not needs:
        return None
    say(f"embedding {len(data.examples)} texts (all-MiniLM-L6-v2)")
    if engine is not None and engine.is_ray:
        from stillhouse.scale.embed import embed_on_ray

        return embed_on_ray([example.text for example in data.examples], engine)
    import torch

    from stillhouse.llm.fewshot import embed

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    return embed([example.text for example in data.examples])


def _llm_probabilities(data: AuditData) -> np.ndarray | None:
    """The LLM's stored probabilities when they cover every audited row and the audited labels
    are not the LLM's own (an LLM cannot be its own judge)."""
    if data.llm is None or data.label_source.startswith("llm:"):
        return None
    labelled = [row for row, label in enumerate(data.labels) if label is not None]
    if not labelled or np.isnan(data.llm.probs[labelled]).any():
        return None
    return data.llm.probs


def _label_issues(
    task: Task,
    data: AuditData,
    labels: list[str | None],
    embeddings: np.ndarray | None,
    settings: AuditSettings,
) -> label_issues.LabelIssueResult:
    if task.kind != "classify" or not data.labelled:
        result = skipped(label_issues.NAME, label_issues.TITLE, _no_labels(task, data))
        return label_issues.LabelIssueResult(result, [], np.full(len(labels), np.nan))
    probabilities = _llm_probabilities(data)
    source = (
        f"LLM ({data.llm.annotator})"
        if probabilities is not None and data.llm
        else "embedding (K-fold regression + kNN)"
    )
    return label_issues.check_label_issues(
        data.examples,
        labels,
        task.label_names,
        embeddings=embeddings,
        probabilities=probabilities,
        source=source,
        folds=settings.folds,
        filter_by=settings.filter_by,
    )


def _disagreement(task: Task, data: AuditData) -> CheckResult:
    if task.kind != "classify" or data.llm is None or data.reference is None:
        reason = "needs LLM labels in the store and gold or human labels for the same examples."
        return skipped(disagreement.NAME, disagreement.TITLE, reason)
    return disagreement.check_disagreement(
        data.examples,
        data.llm.labels,
        data.llm.probs,
        data.reference,
        task.label_names,
        llm_source=data.llm.annotator,
        reference_source=data.reference_source or "reference",
    )
