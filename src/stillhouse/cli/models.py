"""`stillhouse models`: list the embedded models."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from stillhouse.cli._common import app, clean_errors, out


@app.command()
@clean_errors
def models(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the embedded models: where they are, size, sha256 status, license."""
    from stillhouse.llm.models import model_statuses

    statuses = model_statuses()
    if as_json:
        out.print_json(
            json.dumps([{**asdict(s), "path": str(s.path) if s.path else None} for s in statuses])
        )
        return
    table = Table(title="embedded models")
    for column in ("name", "model", "size", "license", "sha256", "path"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.name, s.title, f"{s.size / 1e6:.0f} MB", s.license, s.status, str(s.path or "-")
        )
    out.print(table)
