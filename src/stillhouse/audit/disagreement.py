"""LLM vs. people: agreement of the LLM's labels with gold or human labels on the same examples
(accuracy, Cohen's kappa, per label), and the disagreements ranked by the LLM's confidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stillhouse.audit.result import CheckResult, skipped
from stillhouse.data.records import Example

NAME, TITLE = "disagreement", "LLM vs. people"


@dataclass(frozen=True)
class Disagreement:
    id: str
    text: str
    reference: str
    llm: str
    llm_confidence: float | None


def check_disagreement(
    examples: Sequence[Example],
    llm_labels: Sequence[str | None],
    llm_probabilities: np.ndarray | None,
    reference: Sequence[str | None],
    label_names: Sequence[str],
    *,
    llm_source: str,
    reference_source: str,
) -> CheckResult:
    """Compare ``llm_labels`` with ``reference`` where both exist (aligned with ``examples``)."""
    from sklearn.metrics import cohen_kappa_score

    rows = [
        r for r in range(len(examples)) if llm_labels[r] is not None and reference[r] is not None
    ]
    if len(rows) < 2:
        reason = (
            f"needs examples labelled by both the LLM and {reference_source}; found {len(rows)}."
        )
        return skipped(NAME, TITLE, reason)
    ours = [llm_labels[r] for r in rows]
    theirs = [reference[r] for r in rows]
    agree = np.array([a == b for a, b in zip(ours, theirs, strict=True)])
    kappa = float(cohen_kappa_score(theirs, ours, labels=list(label_names)))
    per_label = {}
    for label in label_names:
        mask = np.array([t == label for t in theirs])
        predicted = np.array([o == label for o in ours])
        if mask.any() or predicted.any():
            per_label[label] = {
                "reference_count": int(mask.sum()),
                "llm_count": int(predicted.sum()),
                "recall": float(agree[mask].mean()) if mask.any() else None,
                "precision": float(agree[predicted].mean()) if predicted.any() else None,
            }
    found = []
    for r, same in zip(rows, agree, strict=True):
        if same:
            continue
        confidence = None
        if llm_probabilities is not None and not np.isnan(llm_probabilities[r]).any():
            confidence = round(float(llm_probabilities[r].max()), 4)
        found.append(
            Disagreement(examples[r].id, examples[r].text, reference[r], llm_labels[r], confidence)  # type: ignore[arg-type]
        )
    found.sort(key=lambda d: -(d.llm_confidence if d.llm_confidence is not None else 0.0))
    metrics = {
        "compared": len(rows),
        "accuracy": float(agree.mean()),
        "cohen_kappa": kappa if np.isfinite(kappa) else None,
        "per_label": per_label,
        "llm": llm_source,
        "reference": reference_source,
    }
    summary = (
        f"The LLM ({llm_source}) agrees with {reference_source} on {agree.mean():.1%} of "
        f"{len(rows)} shared examples (Cohen's kappa {kappa:.3f}); {len(found)} disagreement(s)."
    )
    advice = (
        "Confident disagreements are either LLM blind spots (fix the prompt or few-shot examples) "
        "or wrong reference labels: review them first."
    )
    status = "ok" if not found else ("problem" if agree.mean() < 0.8 else "warning")
    return CheckResult(NAME, TITLE, status, len(found), summary, advice, metrics, found)
