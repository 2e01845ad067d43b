"""``NAME=llm:MODEL``: the task's prompt on an LLM (``MODEL`` as for annotate: an embedded model,
a .gguf path or openai:URL#MODEL)."""

from __future__ import annotations

from pathlib import Path

from stillhouse import registry
from stillhouse.output_guard import Input
from stillhouse.predictors import Predictor
from stillhouse.task import Task


class LLMSource:
    """An LLM answering with the task's prompt (:class:`stillhouse.llm.predictor.LLMPredictor`;
    the backend's errors when the model cannot be opened); it may be a cascade stage."""

    order = 30
    stage = True

    def check(self, spec: str, value: str, task: Task) -> None:
        """Nothing to check before opening: the model spec is checked when the model is opened."""

    def open(self, name: str, value: str, task: Task) -> Predictor:
        from stillhouse.llm.predictor import LLMPredictor  # the LLM stack loads only when used

        return LLMPredictor(task, value)

    def inputs(self, spec: str, value: str) -> list[Input]:
        """The model file, when MODEL is a path (embedded models and servers are not files here)."""
        if value.endswith(".gguf") or Path(value).exists():
            return [Input("the model file of --system " + spec.partition("=")[0], Path(value))]
        return []


registry.system_sources.register("llm")(LLMSource())
