"""Cascades: several predictors as one system — a cheap one answers what it is sure of, the
next one gets the rest, and what the last one is unsure of is abstained on (sent to review).

A :class:`Cascade` is itself a Predictor. Stage *i* (all but the last) has a confidence
threshold: a text moves on to stage *i + 1* only when stage *i*'s top probability is below it.
The last stage answers every text that reaches it, unless ``abstain_below`` is set: then a text
whose last-stage top probability is below that is abstained on — answer ``""`` (the
:data:`ABSTAINED` answer), ``info["abstained"] = True``, and the last stage's probabilities
kept (for review priority and for calibration).

On the command line (``evaluate --system``)::

    NAME=cascade:SOURCE:VALUE@THRESHOLD,...,SOURCE:VALUE[@ABSTAIN]

e.g. ``fast=cascade:model:models/linear@0.9,llm:qwen2.5-0.5b@0.6``: the linear model answers
when its top probability is ≥ 0.9, the LLM gets the rest and answers when its own is ≥ 0.6, and
the cascade abstains on the others. Stage sources are ``model:DIR`` and ``llm:MODEL``, the
system sources whose ``stage`` is set (a predictions file cannot answer the texts a stage passes
on; cascades do not nest). Thresholds are probabilities in [0, 1]; a comma cannot appear inside
a stage. A threshold for a stage is best read off evaluate's own output for that stage run
alone: ``selective.coverage_at_precision.threshold`` is the lowest confidence at which its
answers keep the target accuracy.

Every prediction's ``info`` holds ``stage`` (the name of the stage that answered, or of the last
stage for an abstention), ``stage_index``, ``stages_tried``, ``confidence`` (the answering
stage's top probability), ``abstained``, ``stage_latencies_ms`` (one per stage tried), the answering stage's own ``info`` under
``stage_info``, and, when any stage is an LLM, ``tokens_*`` summed over the stages the text went
through. ``latency_ms`` is the sum of the latencies the text had in each stage it went through
(each stage predicts the texts it gets as one batch; a stage's per-text latency is its batch
time shared equally).

A cascade with an LLM stage screens every text for prompt injection first, in one batch, as
task.toml's ``[guard] injection`` says (:mod:`stillhouse.guard.screen`; its LLM stages then do not
screen again), and every prediction carries ``info["guard"]``. ``route``: a flagged text skips
every LLM stage, and the non-LLM stages see it without the windows the detector flagged
(``info["guard"]["removed_chars"]`` says how much was cut): one of them may still answer it,
else the cascade abstains on it — at once when nothing is left — with
``info["abstain_reason"] = "injection"`` (probabilities, ``top_answer`` and ``confidence``
those of the last stage that did see it, uniform when none did). ``block``: a flagged text goes
to no stage at all (``stages_tried`` 0, ``stage`` None, uniform probabilities). ``flag``: the
cascade runs as usual.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stillhouse import registry
from stillhouse.data.records import Prediction
from stillhouse.errors import Errors, fail
from stillhouse.guard.screen import ABSTAIN_REASON, guard_info, keeps_from_llm, screen_texts
from stillhouse.predictors import Predictor, system_sources
from stillhouse.task import GuardSection, Task

ABSTAINED = ""
TOKEN_KEYS = ("tokens_in", "tokens_in_new", "tokens_out", "tokens_decoded")
EXAMPLE = "fast=cascade:model:models/linear@0.9,llm:qwen2.5-0.5b@0.6"


@dataclass(frozen=True)
class StageSpec:
    """One stage as written: ``source`` (a system source whose ``stage`` is set: ``model`` /
    ``llm``), ``value`` (folder or model) and ``threshold`` (pass on below it; for the last
    stage: abstain below it; None: no threshold)."""

    source: str
    value: str
    threshold: float | None

    @property
    def name(self) -> str:
        return f"{self.source}:{self.value}"


@dataclass(frozen=True)
class Stage:
    name: str
    predictor: Predictor
    threshold: float | None  # pass on (or, last stage, abstain) below it


def parse_cascade(spec: str, value: str) -> list[StageSpec]:
    """The stages of ``value`` (what follows ``cascade:`` in ``spec``, the whole --system
    argument, named in messages). E539 names the stage that is wrong and why."""
    parts = value.split(",")
    stages: list[StageSpec] = []
    for number, part in enumerate(parts, start=1):
        last = number == len(parts)

        def wrong(detail: str, part: str = part, number: int = number) -> Exception:
            return fail(Errors.E539, spec=spec, number=number, part=part, detail=detail)

        body, at, threshold_text = part.strip().rpartition("@")
        if not at:
            body, threshold_text = part.strip(), ""
        source, colon, target = body.partition(":")
        if not body:
            raise wrong("the stage is empty")
        if not colon or not source or not target.strip():
            raise wrong("a stage is SOURCE:VALUE, e.g. model:models/linear or llm:qwen2.5-0.5b")
        if source == "cascade":
            raise wrong("cascades do not nest; list the stages of both in one cascade")
        found = registry.system_sources.get(source)
        if found is None or not found.stage:
            raise wrong(f"unknown stage source `{source}:` (stages are {_stage_sources()})")
        threshold: float | None = None
        if at:
            try:
                threshold = float(threshold_text)
            except ValueError:
                raise wrong(f"threshold `{threshold_text}` after @ is not a number") from None
            if not (math.isfinite(threshold) and 0 <= threshold <= 1):
                raise wrong(f"threshold {threshold_text} is not a probability in [0, 1]")
        elif not last:
            raise wrong(
                "every stage but the last needs @THRESHOLD: the top probability below which a "
                "text goes on to the next stage"
            )
        stage = StageSpec(source, target.strip(), threshold)
        if any(other.name == stage.name for other in stages):
            raise wrong(f"`{stage.name}` is already a stage of this cascade")
        stages.append(stage)
    return stages


def check_cascade(spec: str, value: str, task: Task) -> list[StageSpec]:
    """:func:`parse_cascade`, and E540 unless ``task`` is a classification task."""
    stages = parse_cascade(spec, value)
    if task.kind != "classify":
        raise fail(Errors.E540, spec=spec, kind=task.kind)
    return stages


def open_cascade(
    spec: str, value: str, task: Task, open_stage: Callable[[str, str], Predictor]
) -> Cascade:
    """The cascade ``value`` describes, each stage opened by ``open_stage(source, value)``."""
    stages = check_cascade(spec, value, task)
    opened = [Stage(s.name, open_stage(s.source, s.value), s.threshold) for s in stages]
    return Cascade(
        opened, name=spec.partition("=")[0].strip(), guard=task.guard, labels=task.label_names
    )


class Cascade:
    """An ordered list of stages as one Predictor (see the module docstring).

    ``stages[-1].threshold`` is the abstention threshold (None: never abstain); every other
    stage needs a threshold. Every stage whose threshold is set must give probabilities (E541).
    ``guard``: ``[guard]`` of the task (None or mode ``off``: no screening; screening happens
    only when a stage is an LLM); ``labels``: the task's labels, for the uniform probabilities of
    an abstention no stage gave probabilities for.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        name: str = "cascade",
        guard: GuardSection | None = None,
        labels: Sequence[str] = (),
    ) -> None:
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        for stage in stages[:-1]:
            if stage.threshold is None:
                raise ValueError(f"stage {stage.name} needs a threshold: it is not the last")
        self.stages = list(stages)
        self.name = name
        self._llm = [_is_llm(stage.predictor) for stage in self.stages]
        self.answered = [0] * len(self.stages)  # texts answered by each stage, all calls
        self.abstained = 0
        self.labels = list(labels)
        screens = guard is not None and guard.injection != "off" and any(self._llm)
        self.guard = guard if screens else None
        if self.guard is not None:
            for stage, is_llm in zip(self.stages, self._llm, strict=True):
                if is_llm:  # screened once here, before any stage: not again in the stage
                    stage.predictor.guard = None  # type: ignore[attr-defined]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order; each stage predicts the texts it gets as a batch."""
        results: list[Prediction | None] = [None] * len(texts)
        latency: list[list[float]] = [[] for _ in texts]
        tokens = [dict.fromkeys(TOKEN_KEYS, 0) for _ in texts]
        pending = list(range(len(texts)))
        guard = self.guard
        guards: list[dict[str, Any]] = [{} for _ in texts]
        kept: set[int] = set()  # flagged texts no LLM stage may see
        screen_ms = 0.0
        if guard is not None and texts:
            started = time.perf_counter()
            screened = screen_texts(texts, guard)
            screen_ms = (time.perf_counter() - started) * 1000 / len(texts)
            guards = [{"guard": guard_info(s, guard)} for s in screened]
            kept = {i for i, s in enumerate(screened) if keeps_from_llm(s, guard)}
            # route: the non-LLM stages read a flagged text without its flagged windows (no
            # LLM stage reads it at all); nothing left, or block: no stage sees it
            texts = list(texts)
            for position in kept:
                remainder = screened[position].remainder
                texts[position] = texts[position] if remainder is None else remainder
            unseen = {i for i in kept if guard.injection == "block" or not texts[i].strip()}
            for position in unseen:
                results[position] = self._kept(position, None, [], guards, screen_ms, {})
            pending = [i for i in pending if i not in unseen]
        # routed texts: the last stage that saw each, and its prediction
        seen: dict[int, tuple[int, Prediction]] = {}
        for index, stage in enumerate(self.stages):
            if not pending:
                break
            if self._llm[index] and kept:
                routed = [i for i in pending if i in kept]
                pending = [i for i in pending if i not in kept]
                later = any(not llm for llm in self._llm[index + 1 :])
                for position in routed:
                    if not later:  # no stage left that may see it: to review
                        results[position] = self._kept(
                            position,
                            seen.get(position),
                            latency[position],
                            guards,
                            screen_ms,
                            tokens[position],
                        )
                carried = routed if later else []
                if not pending:
                    pending = carried
                    continue
            else:
                carried = []
            predictions = stage.predictor.predict([texts[i] for i in pending])
            if len(predictions) != len(pending):
                raise fail(
                    Errors.E513, name=stage.name, got=len(predictions), expected=len(pending)
                )
            last = index == len(self.stages) - 1
            passed_on = []
            for position, prediction in zip(pending, predictions, strict=True):
                latency[position].append(prediction.latency_ms)
                for key in TOKEN_KEYS:
                    value = prediction.info.get(key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        tokens[position][key] += value
                confidence = self._confidence(stage, prediction)
                if not last and confidence < stage.threshold:  # type: ignore[operator]
                    passed_on.append(position)
                    seen[position] = (index, prediction)
                    continue
                # the last stage abstains below its threshold, or of its own accord (an LLM
                # stage whose text [privacy] kept from the server)
                abstain = last and (
                    (stage.threshold is not None and confidence < stage.threshold)
                    or prediction.info.get("abstained") is True
                )
                info: dict[str, Any] = {
                    "stage": stage.name,
                    "stage_index": index,
                    "stages_tried": index + 1,
                    "confidence": confidence,
                    "abstained": abstain,
                    "stage_latencies_ms": latency[position],
                    "stage_info": prediction.info,
                }
                if abstain:
                    info["top_answer"] = prediction.answer
                    if position in kept:  # routed past the LLM, and the last stage is unsure
                        info["abstain_reason"] = ABSTAIN_REASON
                    self.abstained += 1
                else:
                    self.answered[index] += 1
                if any(self._llm):
                    info.update(tokens[position])
                info.update(guards[position])
                results[position] = Prediction(
                    answer=ABSTAINED if abstain else prediction.answer,
                    probs=prediction.probs,
                    latency_ms=sum(latency[position]) + screen_ms,
                    info=info,
                )
            pending = sorted(passed_on + carried)
        return results  # type: ignore[return-value]

    def _kept(
        self,
        position: int,
        seen: tuple[int, Prediction] | None,
        latencies: list[float],
        guards: list[dict[str, Any]],
        screen_ms: float,
        tokens: dict[str, float],
    ) -> Prediction:
        """The abstention on a text ``[guard]`` kept from the LLM stages: the last stage that
        saw it (``seen``: its index and prediction) gives the probabilities and the suggestion;
        no stage (``block``, or an LLM first): uniform probabilities over the labels."""
        self.abstained += 1
        info: dict[str, Any] = {
            "stage": None,
            "stage_index": None,
            "stages_tried": 0,
            "confidence": None,
            "abstained": True,
            "abstain_reason": ABSTAIN_REASON,
            "stage_latencies_ms": latencies,
            **guards[position],
        }
        probs: dict[str, float] | None = None
        if seen is not None:
            index, prediction = seen
            probs = prediction.probs
            info.update(
                stage=self.stages[index].name,
                stage_index=index,
                stages_tried=index + 1,
                confidence=self._confidence(self.stages[index], prediction),
                stage_info=prediction.info,
                top_answer=prediction.answer,
            )
        elif self.labels:
            probs = dict.fromkeys(self.labels, 1.0 / len(self.labels))
            info["confidence"] = 1.0 / len(self.labels)
        if any(self._llm):
            info.update(dict.fromkeys(TOKEN_KEYS, 0) | tokens)
        return Prediction(ABSTAINED, probs, sum(latencies) + screen_ms, info)

    def _confidence(self, stage: Stage, prediction: Prediction) -> float:
        if prediction.probs is None:
            if stage.threshold is None:
                return math.nan  # never compared: the last stage without abstention
            raise fail(Errors.E541, name=self.name, stage=stage.name)
        return float(max(prediction.probs.values()))

    def shares(self) -> dict[str, Any]:
        """The share of texts each stage answered, and abstained on, over every call so far."""
        total = sum(self.answered) + self.abstained
        return {
            "texts": total,
            "answered_by": {
                stage.name: (count / total if total else None)
                for stage, count in zip(self.stages, self.answered, strict=True)
            },
            "abstained": self.abstained / total if total else None,
        }

    def describe(self) -> dict[str, Any]:
        """The stages (each with its threshold and ``describe()``) and :meth:`shares`; size on
        disk and parameters are the sums over the stages where every stage reports them."""
        descriptions = [stage.predictor.describe() for stage in self.stages]
        description: dict[str, Any] = {
            "type": "cascade",
            "stages": [
                {
                    "name": stage.name,
                    "threshold": stage.threshold,
                    "role": "abstain below" if i == len(self.stages) - 1 else "pass on below",
                    "description": described,
                }
                for i, (stage, described) in enumerate(zip(self.stages, descriptions, strict=True))
            ],
            **self.shares(),
        }
        hashes = [d.get("sha256") or d.get("model_sha256") for d in descriptions]
        if all(isinstance(h, str) for h in hashes):  # the cascade's identity for provenance
            identity = [[s.name, s.threshold, h] for s, h in zip(self.stages, hashes, strict=True)]
            description["sha256"] = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        for key in ("size_bytes", "parameters"):
            values = [d.get(key) for d in descriptions]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                description[key] = sum(values)  # type: ignore[arg-type]
        return description

    def close(self) -> None:
        for stage in self.stages:
            close = getattr(stage.predictor, "close", None)
            if callable(close):
                close()


def stage_shares(predictions: Sequence[Prediction], cascade: Cascade) -> dict[str, Any]:
    """The ``cascade`` section of results.json for one run's predictions: per stage its
    ``name``, ``threshold``, ``answered`` (count) and ``share`` (of all items), and the
    ``abstained`` count and share."""
    n = len(predictions)
    counts = [0] * len(cascade.stages)
    abstained = 0
    for prediction in predictions:
        if prediction.info.get("abstained"):
            abstained += 1
        else:
            counts[int(prediction.info["stage_index"])] += 1
    return {
        "stages": [
            {
                "name": stage.name,
                "threshold": stage.threshold,
                "answered": count,
                "share": count / n if n else 0.0,
            }
            for stage, count in zip(cascade.stages, counts, strict=True)
        ],
        "abstain_below": cascade.stages[-1].threshold,
        "abstained": abstained,
        "abstained_share": abstained / n if n else 0.0,
    }


def _stage_sources() -> str:
    """The sources a stage may name, as ``model: or llm:``."""
    names = [f"{name}:" for name, source in system_sources().items() if source.stage]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _is_llm(predictor: Predictor) -> bool:
    from stillhouse.llm.predictor import LLMPredictor

    return isinstance(predictor, LLMPredictor)
