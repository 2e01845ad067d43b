"""The demo's first five steps, each a call of the project's own function on the workspace:
:func:`stillhouse.annotate.annotate`, :func:`stillhouse.audit.run.run_audit`,
:func:`stillhouse.train.train`, :func:`stillhouse.evaluate.run.evaluate` and
:func:`stillhouse.gate.gate`. Each returns a frozen result for the CLI to print.
"""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stillhouse.annotate import AnnotateSummary, annotate
from stillhouse.data.io import read_examples, write_json
from stillhouse.data.store import INJECTION_QUEUE, Store
from stillhouse.demo.workspace import STUDENTS, DemoSettings, DemoWorkspace
from stillhouse.evaluate.results import Results, read_results
from stillhouse.gate import GateReport
from stillhouse.task import Task

Update = Callable[..., None]
Progress = Callable[[str], AbstractContextManager[Update]]
Log = Callable[[str], None]

# The cascade: the first student answers when its top probability is at least STUDENT_AT, the
# LLM gets the rest and the cascade abstains (to review) below LLM_AT.
STUDENT_AT = 0.7
LLM_AT = 0.5
CASCADE_STUDENT = "encoder-llm"  # the int8 encoder: the stronger student, 14 ms a text
# Robustness (misspellings) and fairness (gender) perturbations: they change about a quarter
# and a tenth of NusaX texts, so the LLM re-answers few texts; typos or lowercase would change
# every text and double the LLM's share of the run.
PERTURBATIONS = ("misspellings", "gender")
# Texts timed per system (latency, texts/s); each costs the LLM about 2.5 calls.
EFFICIENCY_SAMPLE = 16
N_RESAMPLES = 1000


# -- annotate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotateResult:
    summary: AnnotateSummary
    held_back: list[str]  # ids of pool texts the injection screen kept from the LLM
    samples: list[tuple[str, str, dict[str, float]]]  # text, gold label, LLM probabilities


def run_annotate(
    task: Task, workspace: DemoWorkspace, settings: DemoSettings, progress: Progress
) -> AnnotateResult:
    """The LLM labels pool.csv (label scoring: a probability per label), into the store; texts
    it labelled before come from the store (a rerun is fast)."""
    with progress("annotating the pool") as update:
        summary = annotate(task, workspace.pool_path, model=settings.model, progress=update)
    pool_ids = {e.id for e in read_examples(workspace.pool_path, task).examples}
    with Store.for_task(task, create=False) as store:
        mine = store.annotations(task.kind, summary.annotator)
        held = [item.example_id for item in store.review_queue(INJECTION_QUEUE)]
        shown = [a for a in mine if a.example_id in pool_ids][:4]
        texts = {e.id: e for e in store.examples(task.kind, [a.example_id for a in shown])}
    samples = [
        (texts[a.example_id].text, str(texts[a.example_id].gold), a.probs or {}) for a in shown
    ]
    labelled = {a.example_id for a in mine}  # a text flagged once and labelled since is not held
    return AnnotateResult(
        summary, [i for i in held if i in pool_ids and i not in labelled], samples
    )


# -- audit -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    counts: dict[str, int]  # check name → findings (duplicates, leakage, label_issues, pii, …)
    statuses: dict[str, str]
    summaries: dict[str, str]
    review_items: int
    json_path: Path
    html_path: Path
    annotator: str


def run_audit(task: Task, workspace: DemoWorkspace, annotator: str, log: Log) -> AuditResult:
    """Audit the LLM's labels of the pool (what the students learn from) against the test split:
    every check, with audit.json and audit.html in audit/; its review queue goes to the store."""
    from stillhouse.audit.outputs import check_audit_outputs, write_outputs
    from stillhouse.audit.run import run_audit as audit

    check_audit_outputs(task, workspace.pool_path, workspace.test_path, workspace.audit_dir, None)
    report = audit(
        task, workspace.pool_path, test_path=workspace.test_path, annotator=annotator, progress=log
    )
    outputs = write_outputs(report, workspace.audit_dir)
    checks = outputs.document["checks"]
    return AuditResult(
        counts={name: int(check["count"]) for name, check in checks.items()},
        statuses={name: check["status"] for name, check in checks.items()},
        summaries={name: check["summary"] for name, check in checks.items()},
        review_items=len(report.review_queue),
        json_path=outputs.json_path,
        html_path=outputs.html_path,
        annotator=annotator,
    )


# -- train -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudentResult:
    name: str
    recipe: str
    labels: str  # llm or gold
    path: Path
    examples: int
    held_out_accuracy: dict[str, float]
    size_bytes: int
    seconds: float
    quantization: str | None
    labels_without_examples: list[str]


@dataclass(frozen=True)
class TrainResult:
    students: list[StudentResult]


def run_train(task: Task, workspace: DemoWorkspace, progress: Progress) -> TrainResult:
    """Train every student of :data:`STUDENTS`: on the LLM's labels in the store, or on the gold
    labels of pool.csv. Each folder is written beside the old one and swapped in when complete."""
    from stillhouse.train import TrainSettings, train
    from stillhouse.train.recipe import busy_with

    students = []
    workspace.models_dir.mkdir(parents=True, exist_ok=True)
    for name, (recipe, labels) in STUDENTS.items():
        final = workspace.model_path(name)
        fresh = final.with_name(f".{name}.new")
        shutil.rmtree(fresh, ignore_errors=True)  # a leftover of an interrupted run
        started = time.perf_counter()
        with progress(f"{busy_with(recipe)} ({name})") as update:
            summary = train(
                task,
                fresh,
                # a label the LLM (almost) never gives would stop training (E704): the LLM's
                # students learn without it, and the card lists it under labels_without_examples
                TrainSettings(
                    recipe=recipe, labels=labels, min_per_label=0 if labels == "llm" else 3
                ),
                data=workspace.pool_path if labels == "gold" else None,
                from_store=labels == "llm",
                progress=update,
            )
        _swap_in(fresh, final)
        card = summary.card
        students.append(
            StudentResult(
                name=name,
                recipe=recipe,
                labels=labels,
                path=final,
                examples=int(card["training_data"]["examples"]),
                held_out_accuracy=card["held_out"]["accuracy"],
                size_bytes=int(card["size_bytes"]),
                seconds=time.perf_counter() - started,
                quantization=card.get("quantization"),
                labels_without_examples=list(card["training_data"]["labels_without_examples"]),
            )
        )
    return TrainResult(students)


def _swap_in(fresh: Path, final: Path) -> None:
    """Replace ``final`` by the complete folder ``fresh`` (the old one is removed after)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    fresh.rename(final)
    shutil.rmtree(old, ignore_errors=True)


# -- evaluate ----------------------------------------------------------------------------------


def system_specs(workspace: DemoWorkspace, model: str) -> dict[str, str]:
    """The systems evaluate compares, as `stillhouse evaluate --system` takes them."""
    student = workspace.model_path(CASCADE_STUDENT).resolve()
    specs = {"llm": f"llm:{model}"}
    specs.update({name: f"model:{workspace.model_path(name).resolve()}" for name in STUDENTS})
    specs["cascade"] = f"cascade:model:{student}@{STUDENT_AT},llm:{model}@{LLM_AT}"
    return specs


@dataclass(frozen=True)
class EvaluateResult:
    results: Results
    results_path: Path
    report_path: Path
    specs: dict[str, str]
    seconds: float


def run_evaluate(
    task: Task, workspace: DemoWorkspace, model: str, progress: Progress
) -> EvaluateResult:
    """Every system on test.csv with intervals, paired comparisons, calibration, robustness
    (:data:`PERTURBATIONS`) and efficiency: evaluation/results.json and report.html."""
    from stillhouse.evaluate.efficiency import EfficiencySettings
    from stillhouse.evaluate.perturb import perturb
    from stillhouse.evaluate.report import write_report
    from stillhouse.evaluate.results import write_results
    from stillhouse.evaluate.run import evaluate
    from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
    from stillhouse.predictors import open_systems, system_inputs

    specs = system_specs(workspace, model)
    given = [f"{name}={spec}" for name, spec in specs.items()]
    check_outputs(
        [
            Output("the demo's evaluation folder", workspace.evaluation_dir, folder=True),
            Output("the demo's evaluation folder", workspace.results_path),
            Output("the demo's evaluation folder", workspace.report_path),
        ],
        [
            *task_inputs(task.path, None),
            Input("the test data", workspace.test_path),
            *system_inputs(given, task),
        ],
    )
    texts = [e.text for e in read_examples(workspace.test_path, task).examples]
    timing = EfficiencySettings(sample=EFFICIENCY_SAMPLE)
    sample = min(timing.sample, len(texts))
    changed = sum(
        sum(new != old for new, old in zip(perturb(texts, name), texts, strict=True))
        for name in PERTURBATIONS
    )
    timed = min(timing.warmup, sample) + sample * (
        1 + sum(1 < size <= sample for size in timing.batch_sizes)
    )
    per_system = len(texts) + changed + timed
    started = time.perf_counter()
    with progress(f"evaluating {len(specs)} systems") as update:
        systems = open_systems(given, task)
        counted = _Counter(update, per_system * len(systems))
        for predictor in systems.values():
            counted.watch(predictor)
        results = evaluate(
            task,
            workspace.test_path,
            systems,
            n_resamples=N_RESAMPLES,
            perturbations=PERTURBATIONS,
            efficiency=timing,
        )
        del systems, counted  # the LLMs' memory, before serve loads them again
        gc.collect()
    results_path = write_results(results, workspace.results_path)
    report_path = write_report(results, workspace.report_path)
    return EvaluateResult(results, results_path, report_path, specs, time.perf_counter() - started)


class _Counter:
    """Counts the texts each watched predictor is asked about, for the progress bar (evaluate
    has no progress hook; its work is texts predicted: test set, perturbed texts, timing)."""

    def __init__(self, update: Update, total: int) -> None:
        self.update, self.total, self.done = update, total, 0

    def watch(self, predictor: Any) -> None:
        original = predictor.predict

        def predict(texts: Sequence[str]) -> Any:
            answers = original(texts)
            self.done += len(texts)
            self.update(min(self.done, self.total), self.total)
            return answers

        # an instance attribute: the predictor keeps its class (evaluate checks it)
        predictor.predict = predict


# -- gate --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    reports: dict[str, GateReport]  # system → verdict on the task's [gate] rules
    path: Path
    rules: dict[str, Any] = field(default_factory=dict)


def run_gate(task: Task, workspace: DemoWorkspace) -> GateResult:
    """task.toml's [gate] on every system of results.json; verdicts in evaluation/gate.json."""
    from dataclasses import asdict

    from stillhouse.gate import gate

    results = read_results(workspace.results_path)
    reports = {name: gate(task, results, None, name) for name in results.systems}
    write_json(
        workspace.gate_path,
        {
            name: {
                "passed": report.passed,
                "rules": [asdict(row) for row in report.rows],
                "not_checked": list(report.not_checked),
            }
            for name, report in reports.items()
        },
    )
    return GateResult(reports, workspace.gate_path, dict(task.gate))


@contextmanager
def no_progress(_: str) -> Iterator[Update]:
    """A progress reporter that shows nothing (library use, tests)."""
    yield lambda *args, **kwargs: None
