"""`stillhouse evaluate`: score systems on a test set, and the leaderboard it prints."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import TaskOption, app, clean_errors, out
from stillhouse.cli._engine import EngineOption, RayAddressOption, RayWorkersOption
from stillhouse.cli._tracking import TrackOption, say_logged


@app.command()
@clean_errors
def evaluate(
    task: TaskOption,
    test: Annotated[
        Path,
        typer.Option("--test", help="Gold-labelled test data: .jsonl, .json, .csv or .parquet."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json.")],
    system: Annotated[
        list[str] | None,
        typer.Option(
            "--system",
            "-s",
            help="NAME=preds:FILE (a JSONL file of {id, label, probs} rows), NAME=llm:MODEL "
            "(the task's prompt on an embedded model, a .gguf or openai:URL#MODEL), "
            "NAME=model:DIR (a trained model) or NAME=cascade:STAGE@T,...,STAGE\\[@A] (each "
            "STAGE is SOURCE:VALUE, e.g. model:DIR; it passes texts whose top probability is "
            "below T on; abstain below A) or NAME=by-lang:LANG=DIR,...,*=DIR (each text to "
            "the model of its language: the `lang` meta field, else lingua); repeatable.",
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=1, help="Bootstrap resamples for the intervals.")
    ] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the bootstrap resamples.")] = 0,
    slice_fields: Annotated[
        list[str] | None,
        typer.Option("--slice", help="Meta field to report accuracy per value of (repeatable)."),
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option(
            help="Accuracy for coverage-at-precision (default: the \\[gate] rule's, else 0.99)."
        ),
    ] = None,
    perturb: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated perturbations to re-predict under (seeded with --seed): "
            "lowercase, uppercase, contractions, expansions, misspellings, typos, whitespace, "
            "punctuation, mild_mix, gender, names; or robustness, fairness, all."
        ),
    ] = None,
    redteam: Annotated[
        int | None,
        typer.Option(
            "--redteam",
            metavar="N",
            help="Attack N test texts (seeded with --seed; e.g. --redteam 200) with prompt "
            "injections from attack families the injection detector never trained on, each "
            "aiming at a wrong label: attack success rate, flip rate, clean accuracy and the "
            "guard's recall and false positives per system.",
        ),
    ] = None,
    efficiency_sample: Annotated[
        int,
        typer.Option(
            min=0,
            help="Texts timed per system for latency, throughput, memory and reproducibility "
            "(0: off; predictions files are never timed).",
        ),
    ] = 100,
    track: TrackOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Score every system on the test set (classify tasks): OUT/results.json and OUT/report.html."""
    from stillhouse.evaluate.efficiency import EfficiencySettings
    from stillhouse.evaluate.perturb import parse_perturbations
    from stillhouse.evaluate.redteam import check_attack_count
    from stillhouse.evaluate.report import REPORT_FILE_NAME, write_report
    from stillhouse.evaluate.results import RESULTS_FILE_NAME, write_results
    from stillhouse.evaluate.run import evaluate as run_evaluate
    from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
    from stillhouse.predictors import open_systems, system_inputs
    from stillhouse.scale.engine import make_engine
    from stillhouse.task import load_task
    from stillhouse.tracking import start_tracking

    chosen = make_engine(engine, ray_address, ray_workers)
    if redteam is not None:
        check_attack_count(redteam)
    spec = load_task(task)
    check_outputs(
        [
            Output("--out", out_dir, folder=True),
            Output("--out", out_dir / RESULTS_FILE_NAME),
            Output("--out", out_dir / REPORT_FILE_NAME),
        ],
        [
            *task_inputs(spec.path, None),
            Input("the test data", test),
            *system_inputs(system or [], spec),
        ],
    )
    tracker = start_tracking(spec, track)  # before the work: E970–E978
    with ExitStack() as ray_parts:
        systems = (
            _ray_systems(ray_parts, system or [], spec, chosen)
            if chosen.is_ray
            else open_systems(system or [], spec)
        )
        results = run_evaluate(
            spec,
            test,
            systems,
            n_resamples=bootstrap,
            seed=seed,
            slices=slice_fields or [],
            target_precision=target_precision,
            perturbations=parse_perturbations(perturb or ""),
            efficiency=EfficiencySettings(sample=efficiency_sample),
            redteam=redteam,
        )
    path = write_results(results, out_dir / RESULTS_FILE_NAME)
    report = write_report(results, out_dir / REPORT_FILE_NAME)
    print_leaderboard(results)
    out.print(f"wrote {path} and {report}")
    if tracker is not None:
        from stillhouse.tracking.commands import log_evaluate

        say_logged(log_evaluate(tracker, results, path, report), tracker.target.uri)


def print_leaderboard(results: Any) -> None:
    def interval(value: dict[str, float] | None) -> str:
        if value is None:
            return "-"
        return f"{value['estimate']:.3f} [{value['low']:.3f}–{value['high']:.3f}]"

    n, resamples = results.data["n_items"], results.settings["n_resamples"]
    target = results.settings["target_precision"]
    table = Table(
        title=f"evaluate · {results.task['name']} · {n} items · 95% CI from {resamples} resamples",
        title_justify="left",
    )
    columns = (
        "system",
        "accuracy",
        "macro-F1",
        "weighted-F1",
        "ECE",
        "AURC",
        f"coverage@{target:g}",
    )
    for column in columns:
        table.add_column(column)
    for name, system in results.systems.items():
        metrics, calibration, selective = (
            system["metrics"],
            system["calibration"],
            system["selective"],
        )
        table.add_row(
            escape(name),
            interval(metrics["accuracy"]),
            interval(metrics["macro_f1"]),
            interval(metrics["weighted_f1"]),
            f"{calibration['ece_10_equal_mass']:.3f}" if calibration else "-",
            interval(selective["aurc"]) if selective else "-",
            interval(selective["coverage_at_precision"]["coverage"]) if selective else "-",
        )
    out.print(table)
    for name, system in results.systems.items():
        for field, slice_results in system["slices"].items():
            out.print(
                f"{escape(name)} · worst {escape(field)}: {escape(slice_results['worst'])} "
                f"({slice_results['worst_accuracy']:.3f}, gap {slice_results['gap']:.3f})"
            )
    for name, system in results.systems.items():
        print_cascade(name, system, target)
        print_robustness(name, system)
        print_redteam(name, system)
        print_efficiency(name, system)
    for comparison in results.comparisons:
        out.print(escape(comparison["sentence"]))


def print_cascade(name: str, system: dict[str, Any], target: float) -> None:
    """A cascade's share per stage; for any system, the confidence threshold that keeps
    ``target`` accuracy (what a cascade stage's @THRESHOLD can be set to)."""
    cascade = system.get("cascade")
    if cascade:
        shares = ", ".join(f"{s['name']} {s['share']:.0%}" for s in cascade["stages"])
        line = f"answered by {shares}; abstained {cascade['abstained_share']:.0%}"
        answered = (system.get("abstention") or {}).get("accuracy_answered")
        if cascade["abstained"] and answered is not None:
            line += f" (accuracy on the answered {answered:.3f})"
        out.print(f"{escape(name)} · cascade: {escape(line)}")
    selective = system.get("selective")
    at_precision = selective["coverage_at_precision"] if selective else None
    if at_precision and at_precision["threshold"] is not None:
        out.print(
            f"{escape(name)} · its answers at confidence ≥ {at_precision['threshold']:.4g} "
            f"keep accuracy ≥ {target:g} (coverage {at_precision['coverage']['estimate']:.0%}): "
            "usable as a cascade stage's @THRESHOLD"
        )


def _ray_systems(stack: ExitStack, specs: list[str], task: Any, engine: Any) -> dict[str, Any]:
    """The systems with `model:` and `llm:` inference in Ray actors, closed with ``stack``."""
    from stillhouse.scale.engine import connected
    from stillhouse.scale.models import open_systems_on_ray

    stack.enter_context(connected(engine))
    systems, on_ray = open_systems_on_ray(specs, task, engine)
    for model in on_ray:
        stack.callback(model.close)
    return systems


def print_efficiency(name: str, system: dict[str, Any]) -> None:
    efficiency, repeated = system.get("efficiency"), system.get("reproducibility")
    if efficiency is None:
        return
    latency, throughput = efficiency["latency_ms"], efficiency["throughput"]
    line = (
        f"latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms; "
        f"{throughput['items_per_second']:.1f} items/s at batch {throughput['best_batch_size']}"
    )
    tokens = efficiency.get("tokens_per_item")
    if tokens and tokens.get("in") is not None:
        line += f"; tokens per item in {tokens['in']:.0f}"
        if tokens.get("in_new") is not None:
            line += f" ({tokens['in_new']:.0f} new)"
        if tokens.get("out") is not None:
            line += f", out {tokens['out']:.0f}"
    if repeated is not None and repeated["identical_answers"] is not None:
        line += f"; same answer twice {repeated['identical_answers']:.0%}"
    out.print(f"{escape(name)} · efficiency ({efficiency['sample']} texts): {escape(line)}")


def print_robustness(name: str, system: dict[str, Any]) -> None:
    robustness = system.get("robustness")
    if robustness is None:
        if "robustness" in system.get("not_measured", {}):
            reason = system["not_measured"]["robustness"]
            out.print(f"{escape(name)} · robustness not measured: {escape(reason)}")
        return
    parts = []
    for key, shown in (
        ("worst_case_accuracy", "worst case"),
        ("fairness_worst_case_accuracy", "fairness worst case"),
    ):
        if robustness[key] is not None:
            parts.append(f"{shown} {robustness[key]['estimate']:.3f}")
    highest = robustness["max_flip_rate"]
    parts.append(f"highest flip rate {highest['value']:.3f} ({highest['perturbation']})")
    out.print(f"{escape(name)} · robustness: {escape(', '.join(parts))}")


def print_redteam(name: str, system: dict[str, Any]) -> None:
    redteam = system.get("redteam")
    if redteam is None:
        if "redteam" in system.get("not_measured", {}):
            reason = system["not_measured"]["redteam"]
            out.print(f"{escape(name)} · red team not measured: {escape(reason)}")
        return
    line = (
        f"attack success {redteam['attack_success_rate']['estimate']:.3f} (target rate "
        f"{redteam['target_rate']['estimate']:.3f}), flip rate "
        f"{redteam['flip_rate']['estimate']:.3f}, clean accuracy "
        f"{redteam['clean_accuracy']['estimate']:.3f}, abstained under attack "
        f"{redteam['abstention_rate']['estimate']:.3f} ({redteam['attacks']} attacked texts)"
    )
    guard = redteam.get("guard")
    if guard is not None:
        line += (
            f"; guard recall {guard['recall']['estimate']:.3f}, false positives "
            f"{guard['false_positive_rate']['estimate']:.3f}"
        )
    out.print(f"{escape(name)} · red team: {escape(line)}")
