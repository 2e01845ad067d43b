"""`stillhouse demo`: the whole road (annotate, audit, train, evaluate, gate, serve, review) on the
bundled NusaX sample, end to end with the real parts at a tiny size (SmolLM2, 24 pool texts, 20
test texts), and a rerun from a later step that takes everything before it from the workspace."""

from __future__ import annotations

import csv
import json
import re
import subprocess

import pytest

import stillhouse.guard
from stillhouse.data.store import ABSTAINED_QUEUE, INJECTION_QUEUE, Store
from stillhouse.demo.serving import INJECTION_TEXT
from stillhouse.demo.workspace import STUDENTS, DemoWorkspace
from stillhouse.guard.injection import shipped_detector
from stillhouse.task import load_task

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
SYSTEMS = {"llm", "cascade", *STUDENTS}
STEPS = ("annotate", "audit", "train", "evaluate", "gate", "serve", "review")


def _store_counts(workspace: DemoWorkspace) -> tuple[int, int, int, list[str]]:
    """LLM cache entries, annotations, examples and the commands of the runs, from the store."""
    task = load_task(workspace.task_path)
    with Store.for_task(task, create=False) as store:
        return (
            store.cache_size(),
            len(store.annotations(task.kind)),
            store.count_examples(),
            [run.command for run in store.runs()],
        )


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, run_cli
) -> tuple[DemoWorkspace, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("demo") / "ws"
    result = run_cli(
        root.parent,
        *("demo", "--workspace", str(root), "--model", MODEL, "--pool", "24"),
        *("--test-limit", "20"),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return DemoWorkspace(root), result


def test_every_step_runs_and_leaves_its_outputs_in_the_workspace(demo_run) -> None:
    workspace, result = demo_run

    headers = re.findall(r"^(\d) · (\w+) · \d+ s", result.stdout, re.MULTILINE)
    assert headers == [(str(n), step) for n, step in enumerate(STEPS, start=1)]
    for step in STEPS[:5]:
        for path in workspace.outputs_of(step):
            assert path.exists(), path
    assert (workspace.audit_dir / "audit.html").read_text(encoding="utf-8").startswith("<!")
    results = json.loads(workspace.results_path.read_text(encoding="utf-8"))
    assert set(results["systems"]) == SYSTEMS
    assert results["data"]["n_items"] == 20
    assert set(results["settings"]["perturbations"]) == {"misspellings", "gender"}
    cascade = results["systems"]["cascade"]["cascade"]
    assert [stage["name"].split(":")[0] for stage in cascade["stages"]] == ["model", "llm"]
    assert "report.html" in result.stdout and "<html" in workspace.report_path.read_text()
    gate = json.loads(workspace.gate_path.read_text(encoding="utf-8"))
    assert set(gate) == SYSTEMS and all(isinstance(v["passed"], bool) for v in gate.values())
    for name in STUDENTS:
        card = json.loads((workspace.model_path(name) / "card.json").read_text())
        assert card["recipe"] == STUDENTS[name][0]
        assert card["training_data"]["mix"].keys() <= {"llm", "gold", "unlabelled"}
        assert STUDENTS[name][1] in card["training_data"]["mix"]
    assert json.loads(workspace.state_path.read_text())["settings"] == {
        "model": MODEL,
        "pool": 24,
        "test_limit": 20,
    }


def test_the_llm_labelled_the_pool_and_held_back_what_the_screen_flags(demo_run) -> None:
    workspace, result = demo_run
    task = load_task(workspace.task_path)
    with workspace.pool_path.open(encoding="utf-8", newline="") as handle:
        pool = list(csv.DictReader(handle))
    flagged = {
        row["id"]
        for row, verdict in zip(
            pool,
            stillhouse.guard.scan([r["text"] for r in pool], task.guard.threshold),
            strict=True,
        )
        if verdict.injection
    }

    with Store.for_task(task, create=False) as store:
        labelled = {
            a.example_id for a in store.annotations(task.kind) if a.annotator.startswith("llm:")
        }
        held = {item.example_id for item in store.review_queue(INJECTION_QUEUE)}
    assert held == flagged  # whatever the detector's threshold is today
    assert labelled == {row["id"] for row in pool} - flagged
    assert f"held back {len(flagged)} text(s)" in result.stdout


def test_serve_answered_real_requests_and_the_abstention_went_to_review(demo_run) -> None:
    workspace, result = demo_run
    task = load_task(workspace.task_path)

    log = (workspace.root / "serve.log").read_text(encoding="utf-8")
    assert re.search(r"listening on http://127\.0\.0\.1:\d+ ", log)
    assert len(re.findall(r"→ (cascade|llm): ", result.stdout)) >= 4
    injection = stillhouse.guard.scan(
        [INJECTION_TEXT],
        task.guard.threshold,
    )[0]
    assert injection.injection, "the demo's injection attempt is no longer flagged"
    # the review survives the cut of the flagged sentence, so the cascade's student reads it
    assert shipped_detector().remainders([INJECTION_TEXT], task.guard.threshold)[0].strip()
    assert re.search(r"an injection attempt → cascade: .*injection flagged", result.stdout)
    assert re.search(
        r"the same, to the LLM alone → llm: abstained .*injection flagged", result.stdout
    )
    with Store.for_task(task, create=False) as store:
        queued = len(store.review_queue(ABSTAINED_QUEUE))
    assert queued >= 1
    assert f"`abstained` now holds {queued} text(s)" in result.stdout
    assert f"stillhouse review --task {workspace.task_path} --queue abstained" in result.stdout


def test_the_closing_table_lists_every_system_with_its_gate_verdict(demo_run) -> None:
    _, result = demo_run
    table = result.stdout.partition("the road's end")[2]

    for name in SYSTEMS:
        row = re.search(rf"^│ {re.escape(name)} +│ (0\.\d+|1\.000) \(", table, re.MULTILINE)
        assert row, f"{name} missing from the closing table:\n{table}"
    assert len(re.findall(r"│ (pass|fail)", table)) == len(SYSTEMS)


def test_a_rerun_from_gate_reuses_the_workspace_and_labels_nothing_again(demo_run, run_cli) -> None:
    workspace, _ = demo_run
    before = _store_counts(workspace)
    results_before = workspace.results_path.read_bytes()

    again = run_cli(
        workspace.root.parent, "demo", "--workspace", str(workspace.root), "--step", "gate"
    )

    assert again.returncode == 0, again.stderr
    headers = re.findall(r"^\d · (\w+) · ", again.stdout, re.MULTILINE)
    assert headers == ["gate", "serve", "review"]
    cache, annotations, _, runs = _store_counts(workspace)
    assert (cache, annotations) == before[:2]  # no new LLM answer, no new label
    assert runs == before[3]  # no annotate run
    assert workspace.results_path.read_bytes() == results_before
    assert MODEL in again.stdout  # the model recorded in demo.json, not the default
