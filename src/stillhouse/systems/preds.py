"""``NAME=preds:FILE``: a JSON-lines file of predictions made elsewhere."""

from __future__ import annotations

from stillhouse import registry
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


registry.system_sources.register("preds")(PredictionsFileSource())
