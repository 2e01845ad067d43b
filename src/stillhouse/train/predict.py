"""`stillhouse predict`: a trained model's answers for a data file, as a predictions file.

Rows are ``{"id", "label", "probs"}`` (multilabel: ``{"id", "labels", "probs"}``, spans:
``{"id", "spans"}``) — the format :class:`stillhouse.predictors.PredictionsFile`
reads, so the output goes straight into ``stillhouse evaluate --system NAME=preds:FILE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse.data.io import read_examples, write_jsonl
from stillhouse.data.records import Example, Prediction, Span, answer_to_json
from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
from stillhouse.task import Task
from stillhouse.train.load import load_model
from stillhouse.train.model import TrainedModel

if TYPE_CHECKING:
    from stillhouse.scale.engine import Engine

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
    engine: Engine | None = None,
) -> PredictSummary:
    """Predict every row of ``input_path`` (fields mapped by ``task``, else ``text``/``id``) and
    write ``out`` atomically. With ``task``, the model's labels must be the task's (E723). Only
    texts and ids are read: a gold label in the input, known, unknown or malformed, is ignored.
    ``engine`` ``ray``: the model runs in Ray actors (:mod:`stillhouse.scale.models`); this
    process reads the input and writes ``out`` in the same order."""
    input_path = Path(input_path)
    check_outputs(
        [Output("--out", Path(out), needed_bytes=2 * _size(input_path))],
        [
            Input("the model folder", Path(model_path), folder=True),
            Input("the input data", input_path),
            *task_inputs(task.path if task is not None else None, None),
        ],
    )
    ray_model = None
    if engine is not None and engine.is_ray:
        from stillhouse.scale.models import RayModel

        ray_model = RayModel.open_folder(model_path, engine, task=task)
        model: Any = ray_model
    else:
        model = load_model(model_path, threads=threads, task=task)
    try:
        examples = read_examples(
            input_path, task or model_task(model), skip_invalid=skip_invalid, read_gold=False
        ).examples
        batches = [examples[start : start + _BATCH] for start in range(0, len(examples), _BATCH)]
        texts = [[e.text for e in batch] for batch in batches]
        # in order; with Ray, several batches are answered at once by the actors
        answers = ray_model.predict_batches(texts) if ray_model else map(model.predict, texts)
        return _write_predictions(model, batches, answers, out, len(examples), progress)
    finally:
        if ray_model is not None:
            ray_model.close()


def _write_predictions(
    model: Any,
    batches: Sequence[Sequence[Example]],
    answers: Iterable[list[Prediction]],
    out: str | Path,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> PredictSummary:
    """Write each batch's predictions (``answers``: one list per batch, in order) to ``out``."""
    import time

    counts: dict[str, int] = {}
    kind = model.card["task"].get("kind", "classify")
    started = time.perf_counter()

    def rows() -> Iterator[dict[str, Any]]:
        done = 0
        for batch, predictions in zip(batches, answers, strict=True):
            for example, prediction in zip(batch, predictions, strict=True):
                yield prediction_row(example.id, prediction, kind, counts)
            done += len(batch)
            if progress is not None:
                progress(done, total)

    written = write_jsonl(out, rows())
    return PredictSummary(str(out), written, time.perf_counter() - started, counts)


def prediction_row(
    identifier: str, prediction: Prediction, kind: str, counts: dict[str, int]
) -> dict[str, Any]:
    """A predictions-file row for any task kind (classify ``{"id", "label", "probs"}``, the
    others as :func:`structured_row`); ``counts`` gains each predicted label. The MLflow pyfunc
    (:mod:`stillhouse.tracking.pyfunc`) answers with these rows too."""
    if kind != "classify":  # multilabel {"labels", "probs"}, spans {"spans"}
        return structured_row(identifier, prediction, kind, counts)
    counts[str(prediction.answer)] = counts.get(str(prediction.answer), 0) + 1
    probs = prediction.probs or {}
    return {
        "id": identifier,
        "label": prediction.answer,
        "probs": {label: round(p, 6) for label, p in probs.items()},
    }


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
