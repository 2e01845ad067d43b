"""The baseline: what the logged predictions are compared with, from up to three files.

``--baseline`` takes, once each:

- **a test set** (a data file with labels: .jsonl/.json/.csv/.parquet, read with the task's
  ``[input]`` fields) — the gold label distribution, text lengths and language mix;
- **the model's predictions on it** (the .jsonl that ``stillhouse predict`` writes: ``{"id",
  "label", "probs"}`` rows) — the predicted label distribution and the confidence of every
  answer (the probability of the predicted label), and with the test set beside it the true
  accuracy there;
- **a results.json** from ``stillhouse evaluate`` — the predicted label distribution (the
  columns of the confusion matrix), accuracy, abstention rate and the accuracy its calibrated
  confidences predict (from the reliability bins); it holds no per-item confidences, so the
  confidence shift (KS) needs the predictions file.

A .jsonl file is a test set when its first row has the task's text field, predictions when it
has ``id`` and ``label`` (``labels``/``spans``) instead. Where several files give the label
distribution, predicted labels win over gold ones (the log holds predicted labels: comparing
like with like, a model's errors do not look like a shift).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stillhouse.data.io import read_examples, read_json_lines
from stillhouse.data.predictions import parse_row
from stillhouse.data.records import Answer, Example, Prediction
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.results import Results, read_results
from stillhouse.paths import require_file
from stillhouse.predictors import PredictionsFile
from stillhouse.provenance import file_sha256
from stillhouse.task import Task

SourceKind = Literal["test set", "predictions", "results"]
_DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class BaselineSource:
    path: str
    kind: SourceKind
    sha256: str
    items: int


@dataclass(frozen=True)
class Baseline:
    """What the baseline files say (None where none of them says it).

    ``label_counts``: label → answers with that label (occurrences for multilabel and spans),
    from ``label_source`` (``"predicted"`` or ``"gold"``) over ``label_items`` items;
    ``confidences``: shape (n,), the probability each answer was given; ``accuracy`` (with
    ``accuracy_from``); ``estimated_accuracy``: the mean confidence, abstentions as errors;
    ``abstention_rate``; ``text_lengths``: characters per test text; ``texts``: the test texts
    (for the language mix); ``system``: the results.json system read."""

    sources: tuple[BaselineSource, ...] = ()
    label_counts: dict[str, int] | None = None
    label_source: str | None = None
    label_items: int = 0
    confidences: np.ndarray | None = None
    accuracy: float | None = None
    accuracy_from: str | None = None
    estimated_accuracy: float | None = None
    abstention_rate: float | None = None
    texts: list[str] | None = field(default=None, repr=False)
    system: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.sources)


def read_baseline(task: Task, paths: list[Path], system: str | None = None) -> Baseline:
    """The baseline of ``paths`` (see the module docstring); ``system``: the monitored system,
    whose results are read from a results.json that has it (else its first system). E836 for a
    file that is none of the three kinds, E837 for two of one kind, E839/E538/E533 for a
    results.json of another task, kind or label set; the readers' own errors for bad rows."""
    found: dict[SourceKind, Path] = {}
    for path in paths:
        kind = _kind(Path(path), task)
        if kind in found:
            raise fail(Errors.E837, path=found[kind], other=path, kind=_plural(kind))
        found[kind] = Path(path)
    examples = predictions = results = None
    sources = []
    if "test set" in found:
        path = found["test set"]
        examples = read_examples(path, task, require_gold=True, offers_skip_invalid=False).examples
        sources.append(_source(path, "test set", len(examples)))
    if "predictions" in found:
        path = found["predictions"]
        file = PredictionsFile(path, task)
        predictions = _predictions(file, examples, found.get("test set"))
        sources.append(_source(path, "predictions", len(predictions)))
    if "results" in found:
        path = found["results"]
        results = read_results(path)
        _check_results(results, task)
        sources.append(_source(path, "results", int(results.data["n_items"])))
    return _combine(task, tuple(sources), examples, predictions, results, system)


def _kind(path: Path, task: Task) -> SourceKind:
    require_file(path, Errors.E838, Errors.E848)
    suffix = path.suffix.lower()
    if suffix not in _DATA_SUFFIXES:
        detail = f"`{path.suffix}` files are none of these"
        raise fail(Errors.E836, path=path, detail=detail)
    if suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "results"  # read_results says what is wrong with it
        return "results" if isinstance(document, dict) else "test set"
    if suffix != ".jsonl":
        return "test set"
    first = next(read_json_lines(path), None)
    row = first[1] if first is not None else None
    if not isinstance(row, dict):
        detail = "its first line is not a JSON object" if first else "it holds no rows"
        raise fail(Errors.E836, path=path, detail=detail)
    if task.input.text in row:
        return "test set"
    if "id" in row and {"label", "labels", "spans"} & set(row):
        return "predictions"
    detail = (
        f"its first row has neither the task's text field `{task.input.text}` (a test set) nor "
        "`id` with `label` (predictions)"
    )
    raise fail(Errors.E836, path=path, detail=detail)


def _plural(kind: SourceKind) -> str:
    return {"test set": "test sets", "predictions": "predictions files", "results": "results"}[kind]


def _source(path: Path, kind: SourceKind, items: int) -> BaselineSource:
    return BaselineSource(str(path), kind, file_sha256(path), items)


def _predictions(
    file: PredictionsFile, examples: list[Example] | None, test_set: Path | None
) -> list[Prediction]:
    """The file's predictions, in the test set's order when there is one (E511/E512 unless
    they cover exactly its examples)."""
    if examples is not None:
        return file.for_examples(examples, source=f"the test set {test_set}")
    # the file is valid as a whole (checked when it was opened): its rows in file order
    return [parse_row(row, where, file.task)[1] for where, row in read_json_lines(file.path)]


def _check_results(results: Results, task: Task) -> None:
    found = results.task.get("name")
    if found != task.name:
        raise fail(Errors.E839, path=results.where, found=found, task=task.path, expected=task.name)
    results.check_made_for(task)


def _combine(
    task: Task,
    sources: tuple[BaselineSource, ...],
    examples: list[Example] | None,
    predictions: list[Prediction] | None,
    results: Results | None,
    system: str | None,
) -> Baseline:
    labels = task.label_names
    values: dict[str, Any] = {"sources": sources}
    chosen = None
    if results is not None:
        chosen = system if system in results.systems else next(iter(results.systems))
        values["system"] = chosen
        measured = results.systems[chosen]
        values["accuracy"] = float(measured["metrics"]["accuracy"]["estimate"])
        values["accuracy_from"] = f"{sources[-1].path} (system `{chosen}`)"
        n_items = int(results.data["n_items"])
        abstention = measured.get("abstention")
        if abstention is not None:
            values["abstention_rate"] = abstention["abstained"] / n_items if n_items else None
        calibration = measured.get("calibration") or {}
        bins = calibration.get("reliability_bins")
        if bins and task.kind == "classify" and n_items:
            values["estimated_accuracy"] = (
                sum(b["count"] * b["mean_confidence"] for b in bins) / n_items
            )
        matrix = measured.get("confusion_matrix")
        if matrix:
            counts = np.asarray(matrix).sum(axis=0)
            values |= _labels(dict(zip(labels, map(int, counts), strict=True)), "predicted")
    if examples is not None:
        values["texts"] = [example.text for example in examples]
        if predictions is None and "label_counts" not in values:
            values |= _labels(_count([e.gold for e in examples], labels), "gold")
    if predictions is not None:
        values |= _labels(_count([p.answer for p in predictions], labels), "predicted")
        if task.kind == "classify" and all(p.probs is not None for p in predictions):
            confidences = np.array([p.probs[p.answer] for p in predictions])  # type: ignore[index]
            values["confidences"] = confidences
            values["estimated_accuracy"] = float(confidences.mean())
        if examples is not None:
            right = [p.answer == e.gold for p, e in zip(predictions, examples, strict=True)]
            values["accuracy"] = float(np.mean(right))
            values["accuracy_from"] = f"{sources[1].path} against {sources[0].path}"
    return Baseline(**values)


def _labels(counts: dict[str, int], source: str) -> dict[str, Any]:
    return {"label_counts": counts, "label_source": source, "label_items": sum(counts.values())}


def _count(answers: list[Answer | None], labels: list[str]) -> dict[str, int]:
    """Answers per label (each label of a multilabel answer, each span's label, once each)."""
    counts = dict.fromkeys(labels, 0)
    for answer in answers:
        for label in answer_labels(answer):
            if label in counts:
                counts[label] += 1
    return counts


def answer_labels(answer: Any) -> list[str]:
    """The labels in an answer: a label (none for ``""``), a tuple of labels, or spans."""
    if isinstance(answer, str):
        return [answer] if answer else []
    return [item if isinstance(item, str) else item.label for item in answer or ()]
