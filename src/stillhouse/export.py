"""export: the store's labels as Prodigy-style JSONL, choosing one answer per example.

Annotator policies: ``gold`` / ``human`` / ``llm`` take that source only; ``best`` takes gold,
else a human's answer, else the LLM's. Among several LLM (or human) annotators of one example,
the most recent annotation wins. A full annotator id selects exactly that annotator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stillhouse.data.io import prodigy_record, write_jsonl
from stillhouse.data.records import Annotation
from stillhouse.data.store import Store
from stillhouse.errors import Errors, fail
from stillhouse.output_guard import Output, check_outputs, task_inputs
from stillhouse.task import Task

POLICIES = ("best", "gold", "human", "llm")


@dataclass(frozen=True)
class ExportSummary:
    path: str
    written: int
    by_source: dict[str, int]
    without_answer: int


def _source(annotator: str) -> str:
    return "gold" if annotator == "gold" else annotator.split(":", 1)[0]


def choose(annotations: list[Annotation], policy: str) -> Annotation | None:
    """The annotation an export policy takes for one example (None if it takes none)."""
    usable = [a for a in annotations if not a.info.get("invalid")]
    if policy not in POLICIES:
        exact = [a for a in usable if a.annotator == policy]
        return exact[0] if exact else None
    order = ("gold", "human", "llm") if policy == "best" else (policy,)
    for source in order:
        candidates = [a for a in usable if _source(a.annotator) == source]
        if candidates:
            return max(candidates, key=lambda a: a.created_at)
    return None


def export(
    task: Task, out: str | Path, annotator: str = "best", include_unlabelled: bool = False
) -> ExportSummary:
    """Write one record per example of the task's store to ``out`` (atomically).

    The store is only read: E204 when the task has none (no file is made), E205/E206 when it
    holds another task's data or other labels (see :meth:`Store.for_task`). Before that, the
    output guard refuses an ``out`` that is the task file or the store (E120) or cannot be
    written (E122–E126)."""
    out = Path(out)
    store_size = task.store_path.stat().st_size if task.store_path.is_file() else 0
    check_outputs(
        [Output("--out", out, needed_bytes=store_size)], task_inputs(task.path, task.store_path)
    )
    with Store.for_task(task, create=False) as store:
        known = {name for name, _ in store.annotators()}
        if annotator not in POLICIES and annotator not in known:
            raise fail(Errors.E401, annotator=annotator)
        by_example: dict[str, list[Annotation]] = {}
        for annotation in store.annotations(task.kind):
            by_example.setdefault(annotation.example_id, []).append(annotation)
        examples = store.examples(task.kind)
    records, by_source, missing = [], {}, 0
    for example in examples:
        chosen = choose(by_example.get(example.id, []), annotator)
        if chosen is None:
            missing += 1
            if not include_unlabelled:
                continue
            records.append(prodigy_record(example, None, task.kind, None, None))
            continue
        by_source[_source(chosen.annotator)] = by_source.get(_source(chosen.annotator), 0) + 1
        records.append(
            prodigy_record(example, chosen.answer, task.kind, chosen.probs, chosen.annotator)
        )
    if not records:
        raise fail(Errors.E202, path=task.store_path, annotator=annotator)
    written = write_jsonl(out, records)
    return ExportSummary(str(out), written, by_source, missing)
