"""`stillhouse demo`: the flow so far on bundled real data (NusaX sentiment, English).

Copies the example task into a workspace folder, lets the embedded LLM label a sample of the
test texts (per-label probabilities, cached and resumable), and shows accuracy against the
gold labels with a 95% interval, throughput and the cache hit rate.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from stillhouse.annotate import AnnotateSummary, annotate
from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.task import load_task

EXAMPLE = "nusax-sentiment-en"


def example_dir(name: str = EXAMPLE) -> Path:
    """The bundled example task folder (examples/ in a source checkout)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / name
        if (candidate / "task.toml").is_file():
            return candidate
    raise fail(Errors.E406, name=name)


@dataclass(frozen=True)
class DemoResult:
    task_path: Path
    summary: AnnotateSummary
    samples: list[tuple[str, str, dict[str, float]]]  # text, gold label, LLM probabilities


def run_demo(
    workspace: Path,
    *,
    limit: int,
    model: str,
    progress: Callable[[str], AbstractContextManager[Callable[[int, int], None]]],
) -> DemoResult:
    """Copy the example task into ``workspace`` (once), annotate ``limit`` test texts."""
    source = example_dir()
    workspace.mkdir(parents=True, exist_ok=True)
    for name in ("task.toml", "test.csv", "README.md"):
        if not (workspace / name).exists():
            shutil.copy(source / name, workspace / name)
    task = load_task(workspace / "task.toml")
    with progress("annotating") as update:
        summary = annotate(task, workspace / "test.csv", model=model, limit=limit, progress=update)
    with Store.for_task(task, create=False) as store:
        mine = store.annotations(task.kind, summary.annotator)[:6]
        texts = {e.id: e for e in store.examples(task.kind, [a.example_id for a in mine])}
    samples = [
        (texts[a.example_id].text, str(texts[a.example_id].gold), a.probs or {}) for a in mine
    ]
    return DemoResult(workspace / "task.toml", summary, samples)
