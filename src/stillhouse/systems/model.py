"""``NAME=model:DIR``: a model folder written by ``stillhouse train``."""

from __future__ import annotations

from pathlib import Path

from stillhouse import registry
from stillhouse.output_guard import Input
from stillhouse.predictors import Predictor
from stillhouse.task import Task


class TrainedModelSource:
    """A trained model, opened by :func:`stillhouse.train.load_model` (E720–E723 for a folder it
    cannot load); it may be a cascade stage."""

    order = 20
    stage = True

    def check(self, spec: str, value: str, task: Task) -> None:
        """Nothing to check before opening: the folder is checked when it is loaded."""

    def open(self, name: str, value: str, task: Task) -> Predictor:
        from stillhouse.train import load_model  # the training stack loads only when it is used

        return load_model(value, task=task)

    def inputs(self, spec: str, value: str) -> list[Input]:
        return [Input("the model folder of --system " + spec.partition("=")[0], Path(value), True)]


registry.system_sources.register("model")(TrainedModelSource())
