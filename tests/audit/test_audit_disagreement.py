"""LLM vs. gold/human agreement from the store, the review queue built from it, --annotator."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from audit_data import NUSAX_TASK, copy_task, nusax_rows, write_jsonl
from sklearn.metrics import cohen_kappa_score

from stillhouse.audit.inputs import load_audit_data
from stillhouse.audit.run import AuditSettings, run_audit
from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.task import load_task

LABELS = ["positive", "neutral", "negative"]
LLM = "llm:qwen2.5-0.5b@0123abcd"


def llm_annotations(rows: list[dict[str, str]], seed: int = 0) -> list[Annotation]:
    """An LLM that agrees with gold on ~75% of rows; wrong answers get varied confidence."""
    rng = random.Random(seed)
    found = []
    for row in rows:
        answer = (
            row["label"]
            if rng.random() < 0.75
            else rng.choice([other for other in LABELS if other != row["label"]])
        )
        top = rng.uniform(0.4, 0.95)
        probs = {label: (top if label == answer else (1 - top) / 2) for label in LABELS}
        found.append(Annotation(row["id"], LLM, answer, probs, created_at=1.0))
    return found


@pytest.fixture()
def workspace(tmp_path: Path) -> tuple[Path, Path, list[dict[str, str]], list[Annotation]]:
    rows = nusax_rows("english", count=120)
    task_path = copy_task(NUSAX_TASK, tmp_path / "task")
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    annotations = llm_annotations(rows)
    with Store(tmp_path / "task" / "stillhouse.db") as store:
        store.add_examples([Example(r["id"], r["text"]) for r in rows], "classify")
        store.add_annotations(annotations, "classify")
    return task_path, data, rows, annotations


def test_agreement_kappa_and_disagreements_ranked_by_llm_confidence(workspace) -> None:
    task_path, data, rows, annotations = workspace
    settings = AuditSettings(checks=("disagreement",))
    report = run_audit(load_task(task_path), data, settings=settings)

    check = report.checks["disagreement"]
    gold = [r["label"] for r in rows]
    said = [a.answer for a in annotations]
    assert check.metrics["compared"] == 120
    assert check.metrics["accuracy"] == pytest.approx(
        np.mean([a == b for a, b in zip(gold, said, strict=True)])
    )
    assert check.metrics["cohen_kappa"] == pytest.approx(
        cohen_kappa_score(gold, said, labels=LABELS)
    )
    assert check.count == sum(a != b for a, b in zip(gold, said, strict=True))
    confidences = [d.llm_confidence for d in check.findings]
    assert confidences == sorted(confidences, reverse=True)
    positive = check.metrics["per_label"]["positive"]
    assert positive["reference_count"] == gold.count("positive")
    # Every disagreement is in the stored review queue, the most confident one first.
    with Store(task_path.parent / "stillhouse.db") as store:
        queue = store.review_queue("audit")
    assert {item.example_id for item in queue} >= {d.id for d in check.findings}
    assert queue[0].priority >= queue[-1].priority
    assert [item.rank for item in queue] == list(range(1, len(queue) + 1))


def test_annotator_llm_audits_the_stored_labels(workspace) -> None:
    task_path, data, _, annotations = workspace
    audited = load_audit_data(load_task(task_path), data, annotator="llm")
    assert audited.labels == [a.answer for a in annotations]
    assert audited.label_source == LLM
    assert audited.reference_source == "gold (train.jsonl)"


def test_an_annotator_the_store_lacks_is_a_clear_error(workspace) -> None:
    task_path, data, _, _ = workspace
    with pytest.raises(StillhouseError) as raised:
        load_audit_data(load_task(task_path), data, annotator="human")
    assert raised.value.code == "E604" and LLM in raised.value.message


def test_gold_labels_are_judged_with_the_llm_probabilities_when_the_store_has_them(
    workspace,
) -> None:
    task_path, data, _, _ = workspace
    settings = AuditSettings(checks=("label_issues",))
    report = run_audit(load_task(task_path), data, settings=settings, write_queue=False)
    check = report.checks["label_issues"]
    assert check.metrics["probabilities"] == f"LLM ({LLM})"
    assert check.metrics["folds"] is None
    # The LLM was right on ~75%: its confident disagreements are what cleanlab flags.
    assert check.count > 0 and all(issue.suggested != issue.given for issue in check.findings)
