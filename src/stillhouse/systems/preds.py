"""``NAME=preds:FILE``: a JSON-lines file of predictions made elsewhere."""

from __future__ import annotations

from pathlib import Path

from stillhouse import registry
from stillhouse.output_guard import Input
from stillhouse.predictors import PredictionsFile
from stillhouse.task import Task


class PredictionsFileSource:
    """A :class:`stillhouse.predictors.PredictionsFile`, validated against the task when opened
    (E505–E510); not a cascade stage: a file cannot answer the texts a stage passes on."""

    order = 10
    stage = False

    def check(self, spec: str, value: str, task: Task) -> None:
        """Nothing to check before opening: the file is checked as it is read."""

    def open(self, name: str, value: str, task: Task) -> PredictionsFile:
        return PredictionsFile(value, task)

    def inputs(self, spec: str, value: str) -> list[Input]:
        return [Input("the predictions file of --system " + spec.partition("=")[0], Path(value))]


registry.system_sources.register("preds")(PredictionsFileSource())
