"""The whole road in order — annotate, audit, train, evaluate, gate, serve, review — from a
chosen step on, and the closing table (:class:`SystemRow` per system)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stillhouse.demo.serving import review_step, run_serve
from stillhouse.demo.steps import (
    Log,
    Progress,
    no_progress,
    run_annotate,
    run_audit,
    run_evaluate,
    run_gate,
    run_train,
)
from stillhouse.demo.workspace import (
    STEPS,
    DemoSettings,
    DemoWorkspace,
    prepare,
    resolve_settings,
)
from stillhouse.evaluate.results import read_results
from stillhouse.task import load_task


@dataclass(frozen=True)
class SystemRow:
    """One line of the closing table."""

    name: str
    spec: str
    accuracy: dict[str, float]  # estimate, low, high
    texts_per_second: float | None
    size_bytes: int | None
    gate_passed: bool | None
    failed_rules: list[str]


@dataclass(frozen=True)
class StepDone:
    """A finished step: its name, its typed result and how long it took."""

    step: str
    result: Any
    seconds: float


@dataclass(frozen=True)
class DemoReport:
    workspace: DemoWorkspace
    settings: DemoSettings
    started_at: str
    steps: list[StepDone] = field(default_factory=list)
    rows: list[SystemRow] = field(default_factory=list)
    seconds: float = 0.0


def run_demo(
    root: Path,
    *,
    step: str = "annotate",
    model: str | None = None,
    pool: int | None = None,
    test_limit: int | None = None,
    progress: Progress = no_progress,
    log: Log = lambda _: None,
    on_step: Callable[[StepDone], None] = lambda _: None,
    on_settings: Callable[[DemoSettings], None] = lambda _: None,
) -> DemoReport:
    """Run the demo in ``root`` from ``step`` on; ``on_step`` gets each step as it finishes.

    Options left out take the workspace's recorded values (demo.json), else the defaults.
    Everything is checked before anything is written (:func:`resolve_settings`: E407–E410).
    """
    workspace = DemoWorkspace(root)
    settings = resolve_settings(workspace, step, model=model, pool=pool, test_limit=test_limit)
    on_settings(settings)
    started = time.perf_counter()
    report = DemoReport(workspace, settings, time.strftime("%Y-%m-%d %H:%M:%S"))
    if step == "annotate":
        prepare(workspace, settings)
    task = load_task(workspace.task_path)
    state = workspace.read_state() or {}
    for name in STEPS[STEPS.index(step) :]:
        began = time.perf_counter()
        result: Any
        if name == "annotate":
            result = run_annotate(task, workspace, settings, progress)
            workspace.write_state(settings, annotator=result.summary.annotator)
            state["annotator"] = result.summary.annotator
        elif name == "audit":
            result = run_audit(task, workspace, state["annotator"], log)
        elif name == "train":
            result = run_train(task, workspace, progress)
        elif name == "evaluate":
            result = run_evaluate(task, workspace, settings.model, progress)
        elif name == "gate":
            result = run_gate(task, workspace)
        elif name == "serve":
            result = run_serve(task, workspace, settings.model, log)
        else:
            result = review_step(task, workspace)
        done = StepDone(name, result, time.perf_counter() - began)
        report.steps.append(done)
        on_step(done)
    report.rows.extend(system_rows(workspace))
    return DemoReport(
        workspace,
        settings,
        report.started_at,
        report.steps,
        report.rows,
        time.perf_counter() - started,
    )


def system_rows(workspace: DemoWorkspace) -> list[SystemRow]:
    """The closing table from evaluation/results.json and gate.json."""
    results = read_results(workspace.results_path)
    verdicts: dict[str, Any] = json.loads(workspace.gate_path.read_text(encoding="utf-8"))
    rows = []
    for name, system in results.systems.items():
        efficiency = system.get("efficiency") or {}
        verdict = verdicts.get(name)
        rows.append(
            SystemRow(
                name=name,
                spec=str(system["description"].get("spec", "")),
                accuracy=system["metrics"]["accuracy"],
                texts_per_second=(efficiency.get("throughput") or {}).get("items_per_second"),
                size_bytes=efficiency.get("size_bytes"),
                gate_passed=None if verdict is None else bool(verdict["passed"]),
                failed_rules=[]
                if verdict is None
                else [row["rule"] for row in verdict["rules"] if not row["passed"]],
            )
        )
    return rows
