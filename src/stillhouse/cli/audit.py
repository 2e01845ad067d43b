"""`stillhouse audit`: check a dataset, optionally write a cleaned copy, and the summary table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from stillhouse.cli._common import TaskOption, app, clean_errors, err, out
from stillhouse.cli._engine import EngineOption, RayAddressOption, RayWorkersOption
from stillhouse.cli._tracking import TrackOption, say_logged


@app.command()
@clean_errors
def audit(
    task: TaskOption,
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Data to audit: .jsonl, .json, .csv or .parquet.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for audit.json and audit.html.")
    ],
    test: Annotated[
        Path | None, typer.Option("--test", help="The held-out split, to check for leakage.")
    ] = None,
    annotator: Annotated[
        str | None,
        typer.Option(
            help="Whose labels to audit: gold (the file's label field, default) | human | llm | "
            "a full annotator id from the store."
        ),
    ] = None,
    checks: Annotated[
        str,
        typer.Option(
            help="all | comma-separated: duplicates, near_duplicates, leakage, label_issues, "
            "disagreement, outliers, balance, language, pii, text."
        ),
    ] = "all",
    fix: Annotated[
        Path | None,
        typer.Option(
            "--fix", help="Write a cleaned copy (JSONL) here, and OUT/fix-log.jsonl of changes."
        ),
    ] = None,
    redact_pii: Annotated[
        bool, typer.Option("--redact-pii", help="With --fix: replace PII by <ENTITY_TYPE>.")
    ] = False,
    drop_label_issues_below: Annotated[
        float | None,
        typer.Option(help="With --fix: drop likely label errors with quality below this."),
    ] = None,
    near_threshold: Annotated[
        float, typer.Option(help="Character-shingle Jaccard for near duplicates and leakage.")
    ] = 0.8,
    paraphrases: Annotated[
        bool,
        typer.Option("--paraphrases", help="Also group texts with embedding cosine ≥ 0.95."),
    ] = False,
    folds: Annotated[int, typer.Option(help="Cross-validation folds for label errors.")] = 5,
    pii_threshold: Annotated[float, typer.Option(help="Minimum presidio score.")] = 0.4,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Drop invalid rows (counted) instead of stopping."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print audit.json to stdout.")] = False,
    track: TrackOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Audit a dataset: duplicates, leakage, likely label errors, PII, language, text health."""
    from stillhouse.audit.fix import FixOptions
    from stillhouse.audit.outputs import check_audit_outputs, write_outputs
    from stillhouse.audit.run import AuditSettings, parse_checks, run_audit
    from stillhouse.errors import Errors, fail
    from stillhouse.scale.engine import make_engine
    from stillhouse.task import load_task
    from stillhouse.tracking import start_tracking

    settings = AuditSettings(
        checks=parse_checks(checks),
        near_threshold=near_threshold,
        paraphrases=paraphrases,
        folds=folds,
        pii_threshold=pii_threshold,
    )
    fix_options = FixOptions(redact_pii, drop_label_issues_below)
    for flag, needed, given in (
        ("--redact-pii", "pii", True if redact_pii else None),
        ("--drop-label-issues-below", "label_issues", drop_label_issues_below),
    ):
        if given is not None and (fix is None or needed not in settings.checks):
            expected = f"used with --fix and the {needed} check"
            raise fail(Errors.E605, what=flag, expected=expected, value=given)
    chosen = make_engine(engine, ray_address, ray_workers)
    spec = load_task(task)
    check_audit_outputs(spec, data, test, out_dir, fix)
    tracker = start_tracking(spec, track)  # before the work: E970–E978
    report = run_audit(
        spec,
        data,
        test_path=test,
        annotator=annotator,
        settings=settings,
        skip_invalid=skip_invalid,
        progress=lambda step: err.print(f"audit: {step}…", highlight=False),
        engine=chosen if chosen.is_ray else None,
    )
    outputs = write_outputs(report, out_dir, fix_path=fix, fix_options=fix_options)
    if tracker is not None:
        from stillhouse.tracking.commands import log_audit

        say_logged(log_audit(tracker, outputs), tracker.target.uri)
    if as_json:
        out.print_json(json.dumps(outputs.document, default=str))
        return
    print_audit_summary(outputs)


def print_audit_summary(outputs: Any) -> None:
    document = outputs.document
    colours = {"ok": "green", "warning": "yellow", "problem": "red", "skipped": "dim"}
    table = Table(
        title=f"audit · {escape(document['task']['name'])} · {document['data']['rows']} rows",
        title_justify="left",
    )
    for column in ("check", "status", "found", "summary"):
        table.add_column(column, overflow="fold")
    for check in document["checks"].values():
        colour = colours[check["status"]]
        table.add_row(
            escape(check["title"]),
            f"[{colour}]{check['status']}[/]",
            str(check["count"]),
            escape(check["summary"]),
        )
    out.print(table)
    for warning in document["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}")
    queue = document["review_queue"]
    if queue["store"]:
        out.print(f"review queue: {queue['items']} examples in {escape(queue['store'])}")
    if outputs.fix is not None:
        fixed = outputs.fix
        out.print(
            f"wrote {escape(fixed.path)}: {fixed.rows_out} of {fixed.rows_in} rows "
            f"({fixed.dropped} dropped, {fixed.redacted} redacted); changes in {escape(fixed.log)}"
        )
    out.print(f"wrote {outputs.json_path} and {outputs.html_path}")
