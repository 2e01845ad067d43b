"""The training set of any task kind, read from a data file or chosen from the task's store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stillhouse.errors import Errors, fail
from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
from stillhouse.task import Task
from stillhouse.train import answers as answer_policy
from stillhouse.train import labels as label_policy
from stillhouse.train.folder import check_out_is_free
from stillhouse.train.settings import TrainSettings


def read_training_set(
    task: Task,
    out: str | Path,
    settings: TrainSettings,
    data: str | Path | None,
    from_store: bool,
    say: Callable[[str], None],
) -> tuple[Path, float, Any]:
    """After the settings are checked, for every task kind: E707 unless exactly one of ``data``
    and ``from_store``, E711 if ``out`` exists (a folder, a file or a link), the output guard's
    E120–E126 if it lands on an input or cannot be written; then the training
    set, read from the file or chosen from the store by the label policy and checked (a
    :class:`labels.TrainingSet` for classify, an :class:`answers.AnswerSet` otherwise). Returns
    ``out`` as a path, the time training started (for the card) and the set."""
    if (data is None) == (not from_store):
        raise fail(Errors.E707, got="both" if data is not None else "neither")
    out = Path(out)
    check_out_is_free(out)
    inputs = task_inputs(task.path, task.store_path if from_store else None)
    if data is not None:
        inputs.append(Input("the training data", Path(data)))
    check_outputs([Output("--out", out, folder=True)], inputs)  # writable, before any fit
    started = time.perf_counter()
    classify = task.kind == "classify"
    policy: Any = label_policy if classify else answer_policy
    check = label_policy.check_training_set if classify else answer_policy.check_answers
    what = "label" if classify else "answer"
    if data is not None:
        chosen = policy.from_file(task, data)
    else:
        chosen = policy.from_store(task, settings.labels, settings.min_llm_confidence)
    check(chosen, task, settings.min_per_label)
    say(f"{len(chosen)} examples from {chosen.origin}; {what} sources: {chosen.mix}")
    return out, started, chosen
