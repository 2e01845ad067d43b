"""`stillhouse predict`: a trained model's answers for a data file, as a predictions file.

Rows are ``{"id", "label", "probs"}`` (multilabel: ``{"id", "labels", "probs"}``, spans:
``{"id", "spans"}``) — the format :class:`stillhouse.predictors.PredictionsFile`
reads, so the output goes straight into ``stillhouse evaluate --system NAME=preds:FILE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stillhouse.data.io import read_examples, write_jsonl
from stillhouse.data.records import Prediction, Span, answer_to_json
from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
from stillhouse.task import Task
from stillhouse.train.load import load_model
from stillhouse.train.model import TrainedModel

_BATCH = 256


@dataclass(frozen=True)
class PredictSummary:
    path: str
    written: int
    seconds: float
    label_counts: dict[str, int]


def model_task(model: TrainedModel) -> Task:
    """A task with the model's kind and labels and the default field names (text, id, label)."""
    return Task(
        name=model.card["task"]["name"],
        kind=model.card["task"].get("kind", "classify"),
        labels={label: "" for label in model.labels},
    )


def predict_file(
    model_path: str | Path,
    input_path: str | Path,
    out: str | Path,
    *,
    task: Task | None = None,
    threads: int | None = None,
    skip_invalid: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PredictSummary:
    """Predict every row of ``input_path`` (fields mapped by ``task``, else ``text``/``id``) and
    write ``out`` atomically. With ``task``, the model's labels must be the task's (E723). Only
    texts and ids are read: a gold label in the input, known, unknown or malformed, is ignored."""
    import time

    input_path = Path(input_path)
    check_outputs(
        [Output("--out", Path(out), needed_bytes=2 * _size(input_path))],
        [
            Input("the model folder", Path(model_path), folder=True),
            Input("the input data", input_path),
            *task_inputs(task.path if task is not None else None, None),
        ],
    )
    model = load_model(model_path, threads=threads, task=task)
    examples = read_examples(
        input_path, task or model_task(model), skip_invalid=skip_invalid, read_gold=False
    ).examples
    counts: dict[str, int] = {}
    kind = model.card["task"].get("kind", "classify")
    started = time.perf_counter()

    def rows() -> Iterator[dict[str, Any]]:
        for start in range(0, len(examples), _BATCH):
            batch = examples[start : start + _BATCH]
            for example, prediction in zip(
                batch, model.predict([e.text for e in batch]), strict=True
            ):
                if kind != "classify":  # multilabel {"labels", "probs"}, spans {"spans"}
                    yield structured_row(example.id, prediction, kind, counts)
                    continue
                counts[str(prediction.answer)] = counts.get(str(prediction.answer), 0) + 1
                probs = prediction.probs or {}
                yield {
                    "id": example.id,
                    "label": prediction.answer,
                    "probs": {label: round(p, 6) for label, p in probs.items()},
                }
            if progress is not None:
                progress(min(start + _BATCH, len(examples)), len(examples))

    written = write_jsonl(out, rows())
    return PredictSummary(str(out), written, time.perf_counter() - started, counts)


def structured_row(
    identifier: str, prediction: Prediction, kind: str, counts: dict[str, int]
) -> dict[str, Any]:
    """A multilabel or spans predictions-file row (as evaluate reads it); ``counts`` gains each
    predicted label or span type."""
    for item in prediction.answer:
        label = item.label if isinstance(item, Span) else str(item)
        counts[label] = counts.get(label, 0) + 1
    if kind == "multilabel":
        probs = prediction.probs or {}
        return {
            "id": identifier,
            "labels": answer_to_json(prediction.answer, "multilabel"),
            "probs": {label: round(p, 6) for label, p in probs.items()},
        }
    return {"id": identifier, "spans": answer_to_json(prediction.answer, "spans")}


def _size(path: Path) -> int:
    """The file's size, 0 when it is not there (reading it then says what is wrong)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
