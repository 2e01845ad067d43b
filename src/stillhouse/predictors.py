"""Predictors: anything that predicts, so evaluate, gate and serve treat every system alike.

A :class:`Predictor` answers texts (``predict``) and says what it is (``describe``).
:class:`PredictionsFile` is one backed by a JSON-lines file of predictions made elsewhere, one
row per test example::

    {"id": "ex-17", "label": "positive", "probs": {"positive": 0.91, "negative": 0.09}}

``probs`` is optional but then on no row; when given it covers every task label. The file is
validated as it is read: every problem is one error naming ``file:line``, the id and the label.
Multilabel rows carry ``labels`` and span rows ``spans`` instead of ``label``; every row is read
and checked by :mod:`stillhouse.data.predictions`.

:func:`open_systems` opens the systems of ``--system NAME=SOURCE:VALUE`` arguments; each SOURCE
is a :class:`SystemSource` found by name in :data:`stillhouse.registry.system_sources` (one
module each in :mod:`stillhouse.systems`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stillhouse import registry
from stillhouse.data.io import read_json_lines
from stillhouse.data.predictions import parse_row
from stillhouse.data.records import Example, Prediction, text_id
from stillhouse.errors import Errors, fail
from stillhouse.output_guard import Input
from stillhouse.provenance import file_sha256
from stillhouse.task import Task

_IDS_SHOWN = 5


@runtime_checkable
class Predictor(Protocol):
    """Anything that predicts: an LLM prompt, a distilled model, rules, a cascade, a file."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """What this predictor is (kind, size on disk, parameters, runtime): JSON-ready."""
        ...


@dataclass(frozen=True)
class _Row:
    where: str
    prediction: Prediction


class PredictionsFile:
    """A Predictor backed by a JSONL predictions file, validated against ``task`` when opened.

    Raises E101/E103/E107 for an unreadable file, E505 for another file type and E506–E510 for
    a bad row (not an object, duplicate id, unknown label, bad probabilities, probs on some rows
    only).
    """

    def __init__(self, path: str | Path, task: Task) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".jsonl":
            raise fail(Errors.E505, path=self.path, suffix=self.path.suffix)
        self.task = task
        self._rows: dict[str, _Row] = {}
        first_with_probs: tuple[str, bool] | None = None
        for where, row in read_json_lines(self.path):
            identifier, prediction = parse_row(row, where, task)
            if identifier in self._rows:
                first = self._rows[identifier].where
                raise fail(Errors.E507, where=where, id=identifier, first=first)
            has_probs = prediction.probs is not None
            if first_with_probs is None:
                first_with_probs = (where, has_probs)
            elif has_probs != first_with_probs[1]:
                raise fail(
                    Errors.E510,
                    where=where,
                    id=identifier,
                    has=_with_or_without(has_probs),
                    first_where=first_with_probs[0],
                    first_has=_with_or_without(first_with_probs[1]),
                )
            self._rows[identifier] = _Row(where, prediction)

    @property
    def has_probabilities(self) -> bool:
        return any(row.prediction.probs is not None for row in self._rows.values())

    def for_examples(
        self, examples: Sequence[Example], *, source: str = "the test set"
    ) -> list[Prediction]:
        """The predictions for ``examples``, in their order.

        Every example needs exactly one row and every row must belong to an example: E511 names
        the first row whose id is not a test example, E512 the test examples with no row.
        ``source`` names the examples in those messages (e.g. "the test set data/test.jsonl").
        """
        wanted = {example.id for example in examples}
        unknown = [identifier for identifier in self._rows if identifier not in wanted]
        if unknown:
            first = self._rows[unknown[0]]
            raise fail(
                Errors.E511,
                path=self.path,
                count=len(unknown),
                test=source,
                first_id=unknown[0],
                where=first.where,
            )
        missing = [example.id for example in examples if example.id not in self._rows]
        if missing:
            shown = ", ".join(repr(identifier) for identifier in missing[:_IDS_SHOWN])
            if len(missing) > _IDS_SHOWN:
                shown += f" and {len(missing) - _IDS_SHOWN} more"
            raise fail(
                Errors.E512,
                path=self.path,
                count=len(missing),
                total=len(examples),
                test=source,
                ids=shown,
            )
        return [self._rows[example.id].prediction for example in examples]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The stored prediction of each text, found by the id a row without one gets (its hash).

        A file keyed by given ids answers through :meth:`for_examples` instead; a text it has no
        row for raises E514.
        """
        predictions = []
        for text in texts:
            row = self._rows.get(text_id(text))
            if row is None:
                detail = f"{self.path} has no prediction for this text (rows are found by id)"
                raise fail(Errors.E514, name=self.path.name, id=text_id(text), detail=detail)
            predictions.append(row.prediction)
        return predictions

    def describe(self) -> dict[str, Any]:
        return {
            "type": "predictions-file",
            "path": str(self.path),
            "sha256": file_sha256(self.path),
            "rows": len(self._rows),
            "probabilities": self.has_probabilities,
        }


def _with_or_without(has_probs: bool) -> str:
    return "`probs`" if has_probs else "no `probs`"


class SystemSource(Protocol):
    """What ``--system NAME=SOURCE:VALUE`` may name as SOURCE (``preds``, ``model``, ``llm``,
    ``cascade``): registered under that name in :data:`stillhouse.registry.system_sources`.

    ``order`` places it when sources are listed (cheapest first); ``stage`` says whether it may
    be a stage of a cascade (it can answer whichever texts the stage before passes on).
    """

    order: int
    stage: bool

    def check(self, spec: str, value: str, task: Task) -> None:
        """Raise the error for a VALUE that cannot work, before any system is opened (``spec``:
        the whole --system argument, for messages)."""
        ...

    def open(self, name: str, value: str, task: Task) -> Predictor:
        """The Predictor for VALUE; ``name`` is the system's NAME (a cascade stage's is
        SOURCE:VALUE)."""
        ...

    def inputs(self, spec: str, value: str) -> list[Input]:
        """The files and folders the system of VALUE reads (no output may land on them)."""
        ...


# Sources a --system spec may name later (E503 until one registers itself).
PLANNED_SOURCES: tuple[str, ...] = ()


def open_systems(specs: Sequence[str], task: Task) -> dict[str, Predictor]:
    """Predictors from ``NAME=preds:FILE``, ``NAME=llm:MODEL``, ``NAME=model:DIR`` and
    ``NAME=cascade:STAGE@T,...`` specs, by name in the order given (``MODEL`` as for annotate:
    an embedded model, a .gguf path or openai:URL#MODEL; ``DIR`` a folder written by
    ``stillhouse train``, checked by :func:`stillhouse.train.load_model`: E720–E723;
    cascades as in :mod:`stillhouse.cascade`). Each SOURCE is looked up in
    :data:`stillhouse.registry.system_sources`.

    E504: no spec; E517: a name twice; E502: not NAME=SOURCE:VALUE or an unknown source;
    E503: a source planned but not available yet; E539: a malformed cascade.
    """
    chosen = _checked(specs, task)
    return {name: source.open(name, value, task) for name, (source, _, value) in chosen.items()}


def system_inputs(specs: Sequence[str], task: Task) -> list[Input]:
    """What the systems of ``specs`` read — predictions files, model folders, model files — so
    that no output is written over them (:mod:`stillhouse.output_guard`); the specs are checked
    as :func:`open_systems` checks them, and nothing is opened."""
    return [
        entry
        for source, spec, value in _checked(specs, task).values()
        for entry in source.inputs(spec, value)
    ]


def _checked(specs: Sequence[str], task: Task) -> dict[str, tuple[SystemSource, str, str]]:
    """Each spec's NAME → (source, spec, VALUE), every spec checked before any is opened."""
    if not specs:
        raise fail(Errors.E504)
    chosen: dict[str, tuple[SystemSource, str, str]] = {}
    for spec in specs:
        name, source_name, value = _split_spec(spec)
        if name in chosen:
            raise fail(Errors.E517, name=name)
        if source_name in PLANNED_SOURCES:
            raise fail(Errors.E503, spec=spec, source=source_name)
        source = registry.system_sources.get(source_name)
        if source is None:
            raise fail(Errors.E502, spec=spec, detail=f"unknown source `{source_name}:`")
        source.check(spec, value, task)
        chosen[name] = (source, spec, value)
    return chosen


def system_sources() -> dict[str, SystemSource]:
    """Every registered system source by name, in listing order (:attr:`SystemSource.order`)."""
    sources = registry.system_sources.all()
    return dict(sorted(sources.items(), key=lambda item: (item[1].order, item[0])))


def _split_spec(spec: str) -> tuple[str, str, str]:
    name, equals, rest = spec.partition("=")
    source, colon, value = rest.partition(":")
    if not equals or not name.strip():
        raise fail(Errors.E502, spec=spec, detail="it needs a NAME= before the source")
    if not colon or not source or not value:
        raise fail(Errors.E502, spec=spec, detail="after NAME= comes SOURCE:VALUE")
    return name.strip(), source, value
