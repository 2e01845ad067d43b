"""stillhouse: take an NLP task from an LLM prototype to a production component.

The Python API mirrors the CLI::

    import stillhouse
    task = stillhouse.load_task("my-task/task.toml")
    summary = stillhouse.annotate(task, "texts.jsonl", model="smollm2-135m", limit=100)
    stillhouse.export(task, "labels.jsonl", annotator="best")
"""

from __future__ import annotations

from stillhouse.annotate import AnnotateSummary, annotate
from stillhouse.data.io import read_examples, write_jsonl
from stillhouse.data.records import Annotation, Example, Prediction, Span
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.export import ExportSummary, export
from stillhouse.llm.backend import BackendSettings, open_backend
from stillhouse.llm.models import model_statuses
from stillhouse.provenance import STILLHOUSE_VERSION
from stillhouse.task import Task, init_task, load_task

__version__ = STILLHOUSE_VERSION

__all__ = [
    "AnnotateSummary",
    "Annotation",
    "BackendSettings",
    "Example",
    "ExportSummary",
    "Prediction",
    "Span",
    "StillhouseError",
    "Store",
    "Task",
    "annotate",
    "export",
    "init_task",
    "load_task",
    "model_statuses",
    "open_backend",
    "read_examples",
    "write_jsonl",
]
