"""`stillhouse demo`: the flow so far on bundled real data (NusaX sentiment, English).

Copies the example task into a workspace folder, lets the embedded LLM label a sample of the
test texts (per-label probabilities, cached and resumable), and shows accuracy against the
gold labels with a 95% interval, throughput and the cache hit rate.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stillhouse.errors import Errors, fail

EXAMPLE = "nusax-sentiment-en"


def example_dir(name: str = EXAMPLE) -> Path:
    """The bundled example task folder (examples/ in a source checkout)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / name
        if (candidate / "task.toml").is_file():
            return candidate
    raise fail(Errors.E406, name=name)


def run_demo(
    workspace: Path,
    *,
    limit: int,
    model: str,
    console: Console,
    progress: Callable[[str], Any],
) -> None:
    from stillhouse.annotate import annotate
    from stillhouse.cli import print_annotate_summary
    from stillhouse.data.store import Store
    from stillhouse.task import load_task

    source = example_dir()
    workspace.mkdir(parents=True, exist_ok=True)
    for name in ("task.toml", "test.csv", "README.md"):
        if not (workspace / name).exists():
            shutil.copy(source / name, workspace / name)
    task = load_task(workspace / "task.toml")
    console.rule(f"stillhouse demo · {task.name} · {model}")
    console.print(
        f"The embedded LLM labels {limit} real test texts by scoring every label "
        "(no parsing, no invalid outputs); answers are cached in "
        f"{task.store_path} and a rerun resumes."
    )
    with progress("annotating") as bar:
        job = bar.add_task("annotate", total=None, rate="")

        def update(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            bar.update(
                job, completed=done, total=total, rate=f"{done / elapsed:.2f}/s" if elapsed else ""
            )

        summary = annotate(task, workspace / "test.csv", model=model, limit=limit, progress=update)
    with Store(task.store_path) as store:
        mine = store.annotations(task.kind, summary.annotator)[:6]
        texts = {e.id: e for e in store.examples(task.kind, [a.example_id for a in mine])}
    table = Table(title="a few LLM labels with their probabilities", title_justify="left")
    table.add_column("text", max_width=60)
    table.add_column("gold")
    table.add_column("LLM: label probabilities")
    for annotation in mine:
        example = texts[annotation.example_id]
        ranked = sorted((annotation.probs or {}).items(), key=lambda kv: -kv[1])
        shown = "  ".join(f"{label} {p:.2f}" for label, p in ranked)
        table.add_row(example.text[:120], str(example.gold), shown)
    console.print(table)
    print_annotate_summary(summary)
    console.print(
        "Next: `stillhouse export --task "
        f"{workspace / 'task.toml'} --out labels.jsonl` writes the labels as JSONL."
    )
