"""`stillhouse demo`: the whole road on bundled real data; this module only prints."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import (
    INTERRUPTED_RESUMABLE,
    app,
    clean_errors,
    err,
    out,
    progress_reporter,
)


class Step(StrEnum):
    """The steps `--step` accepts, in the order they run (stillhouse.demo.STEPS)."""

    annotate = "annotate"
    audit = "audit"
    train = "train"
    evaluate = "evaluate"
    gate = "gate"
    serve = "serve"
    review = "review"


@app.command()
@clean_errors(interrupted=INTERRUPTED_RESUMABLE)
def demo(
    workspace: Annotated[
        Path, typer.Option(help="Where the demo's task, store, models and reports are written.")
    ] = Path("demo-workspace"),
    step: Annotated[
        Step,
        typer.Option(
            help="Run from this step on, reusing the earlier steps' outputs in the workspace."
        ),
    ] = Step.annotate,
    model: Annotated[
        str | None,
        typer.Option(help="The LLM: qwen2.5-0.5b (default) | smollm2-135m | PATH.gguf."),
    ] = None,
    pool: Annotated[
        int | None,
        typer.Option(
            min=1, help="Training texts the LLM labels (the first N of the example; default 300)."
        ),
    ] = None,
    test_limit: Annotated[
        int | None,
        typer.Option(min=1, help="Test texts every system answers (the first N; default 100)."),
    ] = None,
) -> None:
    """Walk the whole road on bundled real data (NusaX sentiment, English): annotate, audit,
    train, evaluate, gate, serve, review.

    The embedded LLM labels the pool (kept in the workspace store: a second run does not ask
    it again), then every step runs on the workspace; --step reruns from a step on. About 4.5
    minutes on 2 idle cores with the defaults (3.5 the second time)."""
    import os

    from stillhouse.demo import run_demo

    # llama.cpp's OpenMP threads spin while they wait; with anything else on the cores that
    # makes a decode many times slower. Set before llama.cpp loads (the server inherits it).
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")

    def announce(settings: Any) -> None:
        out.rule(f"stillhouse demo · NusaX sentiment (English) · {settings.model}")
        out.print(
            f"Workspace {escape(str(workspace))}: the first {settings.pool} training texts are "
            f"the pool the LLM labels, the first {settings.test_limit} test texts the test set."
            + (
                f" From step {step.value} on; the earlier steps' outputs are reused."
                if step is not Step.annotate
                else ""
            )
        )

    report = run_demo(
        workspace,
        step=step.value,
        model=model,
        pool=pool,
        test_limit=test_limit,
        progress=progress_reporter,
        log=lambda line: err.print(escape(f"  {line}"), highlight=False),
        on_step=_print_step,
        on_settings=announce,
    )
    _print_table(report)


def _print_step(done: Any) -> None:
    printers = {
        "annotate": _annotate,
        "audit": _audit,
        "train": _train,
        "evaluate": _evaluate,
        "gate": _gate,
        "serve": _serve,
        "review": _review,
    }
    number = list(Step).index(Step(done.step))
    out.print()
    out.rule(f"{number + 1} · {done.step} · {done.seconds:.0f} s", align="left")
    printers[done.step](done.result)


def _interval(value: dict[str, float], digits: int = 3) -> str:
    return f"{value['estimate']:.{digits}f} ({value['low']:.{digits}f}–{value['high']:.{digits}f})"


def _annotate(result: Any) -> None:
    summary = result.summary
    held = len(result.held_back)
    accuracy = (
        f"; against the gold labels the example ships it is right on {summary.accuracy:.1%} "
        f"(95% CI {summary.accuracy_interval[0]:.1%}–{summary.accuracy_interval[1]:.1%})"
        if summary.accuracy is not None
        else ""
    )
    rate = f" ({summary.examples_per_second:.1f} texts/s)" if summary.annotated else ""
    out.print(
        f"The embedded LLM ({escape(summary.model)}) labelled the pool by scoring every label "
        f"— a probability per label, nothing to parse: {summary.annotated} texts now, "
        f"{summary.resumed} taken from the store{rate}"
        f"{accuracy}. The injection screen held back {held} text(s) it flagged (review queue "
        "`injection`); they never reached the LLM. Why it matters: labels in minutes with no "
        "one's time spent, on this machine — but they are an LLM's labels, so the next step "
        "checks them before anything learns from them."
    )
    table = Table(title="a few LLM labels", title_justify="left")
    table.add_column("text", max_width=50, overflow="ellipsis", no_wrap=True)
    table.add_column("gold")
    table.add_column("LLM (probability)")
    for text, gold, probs in result.samples:
        label, probability = max(probs.items(), key=lambda item: item[1])
        table.add_row(escape(text), gold, f"{label} ({probability:.2f})")
    out.print(table)


def _audit(result: Any) -> None:
    counts = result.counts
    out.print(
        f"The audit read the LLM's labels on the pool next to the test split: "
        f"{counts.get('duplicates', 0)} exact and {counts.get('near_duplicates', 0)} near "
        f"duplicate group(s), {counts.get('leakage', 0)} test text(s) leaking from the pool, "
        f"{counts.get('label_issues', 0)} likely label error(s), "
        f"{counts.get('disagreement', 0)} disagreement(s) with the gold labels, and "
        f"{counts.get('pii', 0)} personal-data hit(s). {result.review_items} example(s) went to "
        "the review queue `audit`. Why it matters: a student learns the labels it is given, "
        "errors included, and duplicates or leakage make a test score look better than the "
        f"system is. Report: {escape(str(result.html_path))}"
    )


def _train(result: Any) -> None:
    out.print(
        "Four small students learned the pool: a linear model (word and character n-grams) and "
        "an int8 ONNX sentence encoder with a logistic head, each once on the LLM's labels "
        "(weighted by its confidence) and once on the gold labels the example ships. Why it "
        "matters: a student answers in milliseconds on a CPU; the gold-label twins show what "
        "the LLM's mistakes cost. (Held-out accuracy is on the student's own labels.)"
    )
    table = Table(title_justify="left")
    for column in ("student", "recipe", "labels", "texts", "held-out accuracy", "size", "s"):
        table.add_column(column)
    for student in result.students:
        quantized = student.quantization not in (None, "none")
        recipe = student.recipe + (f" {student.quantization}" if quantized else "")
        table.add_row(
            student.name,
            recipe,
            student.labels,
            str(student.examples),
            _interval(student.held_out_accuracy, digits=2),
            _size(student.size_bytes),
            f"{student.seconds:.0f}",
        )
    out.print(table)
    for student in result.students:
        if student.labels_without_examples:
            missing = ", ".join(student.labels_without_examples)
            out.print(
                f"{student.name} never saw {escape(missing)}: the LLM gave that label to no "
                "pool text (or too few to learn), so this student cannot answer it."
            )


def _evaluate(result: Any) -> None:
    results = result.results
    systems = results.systems
    out.print(
        f"Every system answered the same {results.data['n_items']} test texts, plus texts "
        f"changed by {', '.join(results.settings['perturbations'])} and a timed sample. "
        "Accuracy has a 95% bootstrap interval; systems are compared pairwise on the same "
        "texts. Why it matters: one accuracy number hides calibration, abstentions, "
        "robustness and cost, and two close numbers may not differ at all."
    )
    table = Table(title_justify="left")
    for column in ("system", "accuracy (95% CI)", "macro-F1", "ECE", "worst case", "p50 ms"):
        table.add_column(column)
    for name, system in systems.items():
        robustness = system.get("robustness") or {}
        worst = robustness.get("worst_case_accuracy")
        efficiency = system.get("efficiency") or {}
        calibration = system.get("calibration")
        table.add_row(
            escape(name),
            _interval(system["metrics"]["accuracy"]),
            f"{system['metrics']['macro_f1']['estimate']:.3f}",
            f"{calibration['ece_10_equal_mass']:.3f}" if calibration else "-",
            f"{worst['estimate']:.3f}" if worst else "-",
            f"{efficiency['latency_ms']['p50']:.1f}" if efficiency else "-",
        )
    out.print(table)
    cascade = systems.get("cascade", {}).get("cascade")
    if cascade:
        shares = ", ".join(f"{s['name']} {s['share']:.0%}" for s in cascade["stages"])
        out.print(
            f"cascade: answered by {escape(shares)}; abstained {cascade['abstained_share']:.0%}"
        )
    for comparison in results.comparisons:
        if "llm" in (comparison["a"], comparison["b"]):
            out.print(escape(comparison["sentence"]))
    out.print(f"Report: {escape(str(result.report_path))}")


def _gate(result: Any) -> None:
    rules = ", ".join(f"{key} {value}" for key, value in result.rules.items())
    out.print(
        f"The example's \\[gate] contract ({escape(rules)}) on every system; `stillhouse gate` "
        "exits 1 on a failure, so a CI job stops a model that misses it. Why it matters: "
        '"good enough" is written down before the numbers are in.'
    )
    for name, report in result.reports.items():
        verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
        reasons = "; ".join(row.reason for row in report.failed)
        out.print(f"  {escape(name)}: {verdict}" + (f" — {escape(reasons)}" if reasons else ""))


def _serve(result: Any) -> None:
    names = ", ".join(result.systems)
    out.print(
        f"`stillhouse serve` ran on {result.url} with {escape(names)} (the first is the "
        "default) and was asked, over HTTP:"
    )
    for exchange in result.exchanges:
        if exchange.status != 200:
            out.print(f"  {escape(exchange.what)}: HTTP {exchange.status}")
            continue
        for index, (text, answer) in enumerate(zip(exchange.texts, exchange.answers, strict=False)):
            if index and not answer.get("abstained"):
                continue  # of a batch, its first text and its abstentions
            if answer.get("abstained"):
                said = "[yellow]abstained[/]"
            else:
                said = f"{escape(str(answer.get('label')))} {answer.get('confidence') or 0:.2f}"
            guard = " · injection flagged" if answer.get("guard") else ""
            stage = answer.get("stage")
            stage = f"stage {_short_stage(stage)}, " if stage else ""
            what = exchange.what + (
                f" (1 of {len(exchange.texts)})" if index == 0 and len(exchange.texts) > 1 else ""
            )
            out.print(
                f"  {escape(what)} → {exchange.system}: {said} ({escape(stage)}"
                f"{answer.get('latency_ms', 0):.0f} ms{guard})",
                highlight=False,
            )
            out.print(f"      {escape(_clip(text, 90))}", style="dim", highlight=False)
    abstained = sum(bool(a.get("abstained")) for e in result.exchanges for a in e.answers)
    stopped = "" if result.exit_code in (0, 130) else f" (exit code {result.exit_code})"
    out.print(
        f"{abstained} answer(s) abstained. Stopped with Ctrl-C's signal{stopped}; the review "
        f"queue `abstained` now holds {result.review_queue} text(s). Why it matters: what the "
        "system is unsure of, or what tries to steer the LLM, goes to people instead of to "
        "users as a guess."
    )


def _short_stage(stage: str) -> str:
    """``model:/long/path/models/linear-llm`` → ``model:linear-llm``."""
    source, _, value = stage.partition(":")
    return f"{source}:{Path(value).name}" if source == "model" else stage


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _review(result: Any) -> None:
    waiting = ", ".join(f"{name} {count}" for name, count in result.queues.items())
    out.print(
        f"Waiting for people: {waiting}. Open the review page on the abstained texts (keyboard "
        "first; every decision is stored as a human label the next training run prefers):"
    )
    out.print(f"  {escape(result.command)}", highlight=False)


def _print_table(report: Any) -> None:
    out.print()
    table = Table(
        title=f"the road's end · {report.workspace.root} · {report.seconds:.0f} s",
        title_justify="left",
    )
    for column in ("system", "accuracy (95% CI)", "texts/s", "size", "gate"):
        table.add_column(column)
    for row in report.rows:
        if row.gate_passed is None:
            verdict = "-"
        elif row.gate_passed:
            verdict = "[green]pass[/]"
        else:
            failed = ", ".join(
                rule.removeprefix("min_").removeprefix("max_") for rule in row.failed_rules
            )
            verdict = f"[red]fail[/]: {failed}"
        table.add_row(
            escape(row.name),
            _interval(row.accuracy),
            "-" if row.texts_per_second is None else f"{row.texts_per_second:,.1f}",
            _size(row.size_bytes),
            verdict,
        )
    out.print(table)


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
