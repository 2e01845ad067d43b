"""`stillhouse review --stats [--json]`: per-reviewer numbers and agreement, read from the store."""

from __future__ import annotations

import json
from pathlib import Path

from review_helpers import distinct_texts, fill_classify, write_task
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from stillhouse.cli import app
from stillhouse.data.store import Store
from stillhouse.review.decisions import Decision
from stillhouse.review.queue import build_queue
from stillhouse.review.session import Review

ODD_NAME = "[bold]bea[/bold]"  # rich markup in a name is printed as it is


def test_stats_report_reviewers_agreement_and_conflicts(tmp_path: Path) -> None:
    task = write_task(tmp_path / "task")
    fill_classify(task, distinct_texts(12), seed=3)
    plan = {
        "human:al": ["positive", "neutral", "negative"] * 4,
        f"human:{ODD_NAME}": ["positive", "neutral", "neutral", "negative"] * 3,
    }
    with Store.for_task(task, create=True) as store:
        review = Review(task, store, build_queue(task, store, overlap=1.0), hold_s=0.0)
        for who, answers in plan.items():
            for n, label in enumerate(answers):
                lead = 2000 if who == "human:al" else 4000
                review.decide(who, "s", Decision(f"ex{n:03d}", "answer", label, lead_time_ms=lead))
        review.decide("human:al", "s", Decision("ex000", "skip"))  # a skip is no answer
    runner = CliRunner()
    result = runner.invoke(app, ["review", "--task", str(task.path), "--stats", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    first = plan["human:al"][1:]
    second = plan[f"human:{ODD_NAME}"][1:]
    assert found["agreement"]["items"] == 11
    assert found["agreement"]["kappa"]["value"] == cohen_kappa_score(first, second)
    kappa = found["agreement"]["kappa"]
    assert kappa["low"] < kappa["value"] < kappa["high"]
    assert set(found["agreement"]["per_label"]) == {"positive", "neutral", "negative"}
    reviewers = {row["name"]: row for row in found["reviewers"]}
    assert reviewers["al"]["done"] == 11 and reviewers["al"]["decisions"]["skip"] == 1
    assert reviewers["al"]["per_hour"] == 1800.0 and reviewers[ODD_NAME]["per_hour"] == 900.0
    assert found["conflicts"] == sum(a != b for a, b in zip(first, second, strict=True))
    text = runner.invoke(
        app, ["review", "--task", str(task.path), "--stats"], env={"COLUMNS": "200"}
    )
    assert text.exit_code == 0, text.output
    assert ODD_NAME in text.output and "Cohen's kappa" in text.output
    assert f"{found['agreement']['kappa']['value']:.3f}" in text.output
