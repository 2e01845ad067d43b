"""``NAME=cascade:STAGE@T,...,STAGE``: several systems as one (:mod:`stillhouse.cascade`)."""

from __future__ import annotations

from stillhouse import registry
from stillhouse.cascade import Cascade, check_cascade, open_cascade, parse_cascade
from stillhouse.output_guard import Input
from stillhouse.predictors import Predictor
from stillhouse.task import Task


class CascadeSource:
    """A cascade whose stages are opened by their own sources (those whose ``stage`` is set);
    cascades do not nest, so it is not a stage itself."""

    order = 40
    stage = False

    def check(self, spec: str, value: str, task: Task) -> None:
        """E539 for a malformed cascade, E540 unless ``task`` is a classification task."""
        check_cascade(spec, value, task)

    def open(self, name: str, value: str, task: Task) -> Cascade:
        def open_stage(source: str, stage_value: str) -> Predictor:
            stage_source = registry.system_sources.get(source)  # parse_cascade checked it is one
            return stage_source.open(f"{source}:{stage_value}", stage_value, task)

        return open_cascade(f"{name}=cascade:{value}", value, task, open_stage)

    def inputs(self, spec: str, value: str) -> list[Input]:
        """What every stage reads."""
        name = spec.partition("=")[0]
        return [
            entry
            for stage in parse_cascade(spec, value)
            for entry in registry.system_sources.get(stage.source).inputs(
                f"{name}={stage.name}", stage.value
            )
        ]


registry.system_sources.register("cascade")(CascadeSource())
