"""What a training recipe is, and how one is found by name.

A recipe is a :class:`Recipe` subclass in its own module of ``stillhouse/train/recipes/``,
registered there with ``@registry.recipes.register(NAME)`` (:mod:`stillhouse.registry`). It
carries everything that is its own: the task kinds it trains, the settings it refuses
(:meth:`Recipe.check`), its memory advice, how it fits (:meth:`Recipe.plan` for classify and
multilabel tasks, whose heads differ; :meth:`Recipe.fit_spans` for span tasks), what base model
and runtime its folders name, and how a folder of it loads (:meth:`Recipe.open`). The flows
(:mod:`.run` for classify, :mod:`.structured` for the other kinds) only call these, so adding a
recipe is adding one module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from stillhouse import registry
from stillhouse.errors import Errors, fail
from stillhouse.task import Task
from stillhouse.train.memory import MemoryCheck, memory_check
from stillhouse.train.model import MultilabelModel, Scorer, TrainedModel
from stillhouse.train.settings import TrainSettings, check_shared_settings

if TYPE_CHECKING:
    from stillhouse.predictors import Predictor
    from stillhouse.train.answers import AnswerSet

Log = Callable[[str], None]
# progress(done, total) or, for a training loop, progress(step, total, "loss 0.123")
Progress = Callable[..., None]
# fits a head on features: fit_head (multinomial, classify) or fit_ovr_head (multilabel)
HeadFitter = Callable[..., Any]


@dataclass(frozen=True)
class Fitting:
    """What a recipe's :meth:`Recipe.plan` fits on: the task, every training text, the targets
    (label indices, shape (n,), for classify; a boolean label indicator, shape (n, k), for
    multilabel), the example weights, the settings, the head to fit (``head(features, targets,
    n_labels, weights, c=..., max_iter=...)``), where a resumable run checkpoints, and the log
    and progress callbacks."""

    task: Task
    texts: list[str]
    targets: np.ndarray
    weights: np.ndarray
    settings: TrainSettings
    head: HeadFitter
    checkpoints: Path
    say: Log
    progress: Progress | None = None

    @property
    def n_labels(self) -> int:
        return len(self.task.label_names)

    def head_on(self, rows: np.ndarray, features: Any, *, c: float, max_iter: int) -> Any:
        """The head fitted on ``features`` (one row per entry of ``rows``) with those rows'
        targets and weights."""
        return self.head(
            features,
            self.targets[rows],
            self.n_labels,
            self.weights[rows],
            c=c,
            max_iter=max_iter,
        )


@dataclass(frozen=True)
class Plan:
    """A recipe ready to fit: ``fit(rows)`` fits on those rows (indices into the texts) and
    returns the fitted :class:`~stillhouse.train.model.Scorer`; ``hyper_parameters`` go into the
    card (``quantize`` among them names the card's quantization)."""

    fit: Callable[[np.ndarray], Scorer]
    hyper_parameters: dict[str, Any]

    @property
    def quantization(self) -> str:
        return str(self.hyper_parameters.get("quantize", "none"))


@dataclass
class Fitted:
    """What a multilabel or span fit hands back: the model to save and the card entries it fills."""

    model: Any  # has save(folder)
    hyper_parameters: dict[str, Any]
    calibration: dict[str, Any]
    held_out: dict[str, Any]
    train_rows: int
    held_out_rows: int
    refit: bool
    base_model: dict[str, str] | None
    quantization: str
    extra: dict[str, Any] = field(default_factory=dict)


class Recipe:
    """A training recipe (see the module docstring); subclasses set the class attributes and
    override what they do."""

    name: ClassVar[str]
    # the task kinds it trains, and its place when recipes are listed (cheapest first)
    kinds: ClassVar[tuple[str, ...]] = ("classify",)
    order: ClassVar[int] = 100
    # what --quantize accepts (empty: nothing to quantize)
    quantizations: ClassVar[tuple[str, ...]] = ()
    reads_ngrams: ClassVar[bool] = False
    # which training bounds it reads: TrainSettings' epochs, max_steps, max_minutes
    bounds: ClassVar[tuple[str, ...]] = ()
    # whether the model is fitted again on every example after the held-out measurement (no:
    # the training used the held-out split, or costs too much to run twice)
    refits: ClassVar[bool] = True
    # what most of its time goes into (the CLI's progress bar): "embedding" or "training"
    busy_with: ClassVar[str] = "embedding"
    runtime: ClassVar[str] = "onnxruntime"
    # the pretrained model it starts from, as the card names it (None: trained from scratch)
    base: ClassVar[dict[str, str] | None] = None
    # what lowers its memory estimate (the end of E710)
    memory_advice: ClassVar[str] = "use fewer examples"
    # the languages its pretrained model was trained on (ISO 639 codes; None: no such limit),
    # for the warning of :mod:`stillhouse.train.languages`
    languages: ClassVar[tuple[str, ...] | None] = None

    def check(self, settings: TrainSettings) -> None:
        """Refuse settings that do not apply to this recipe: E709 a quantization it does not
        have, E746 a training bound (--epochs, --max-steps, --max-minutes) it does not read."""
        if settings.quantize is not None and settings.quantize not in self.quantizations:
            raise fail(
                Errors.E709,
                quantize=settings.quantize,
                recipe=self.name,
                detail=self.quantize_advice(settings.quantize),
            )
        for bound in ("epochs", "max_steps", "max_minutes"):
            if getattr(settings, bound) is not None and bound not in self.bounds:
                read = " and ".join(_option(name) for name in self.bounds)
                detail = f"it is bounded by {read}" if read else "it has no training loop to bound"
                raise fail(Errors.E746, what=_option(bound), recipe=self.name, detail=detail)

    def check_ngrams(self, settings: TrainSettings) -> None:
        """E746 for n-gram ranges set for a recipe that reads none."""
        if not self.reads_ngrams and not settings.default_ngrams:
            raise fail(
                Errors.E746,
                what="--word-ngrams/--char-ngrams",
                recipe=self.name,
                detail="only the linear and encoder-ngrams recipes read n-grams",
            )

    def quantize_advice(self, quantize: str) -> str:
        """The end of E709 for an unknown ``--quantize``."""
        return f"use one of {', '.join(self.quantizations)}"

    def memory_check(self, settings: TrainSettings) -> MemoryCheck:
        """The E710 check under ``settings.max_memory_gb``, with this recipe's advice."""
        return memory_check(settings, self.name, self.memory_advice)

    def plan(self, fitting: Fitting) -> Plan:
        """Ready the fit of a classify or multilabel model (embedding every text once, say, so
        that both fits reuse the vectors)."""
        raise NotImplementedError(f"recipe {self.name} trains {', '.join(self.kinds)} tasks")

    def fit_spans(
        self,
        task: Task,
        answers: AnswerSet,
        settings: TrainSettings,
        say: Log,
        progress: Progress | None,
    ) -> Fitted:
        """Fit, calibrate and measure a span model."""
        raise NotImplementedError(f"recipe {self.name} trains {', '.join(self.kinds)} tasks")

    def base_model(self, model: Any) -> dict[str, str] | None:
        """The card's ``base_model`` for a fitted ``model``."""
        return self.base

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        """The fitted scorer saved in ``folder`` (whose card is checked)."""
        raise NotImplementedError

    def open(self, folder: Path, card: dict[str, Any], threads: int | None) -> Predictor:
        """The model folder as a Predictor: its scorer with the card's calibration."""
        scorer = self.load(folder, card, threads)
        if card["task"].get("kind", "classify") == "multilabel":
            return MultilabelModel(folder, card, scorer, runtime=self.runtime)
        return TrainedModel(folder, card, scorer, runtime=self.runtime)


def recipes_for(kind: str) -> list[Recipe]:
    """The recipes that train ``kind`` tasks, cheapest first."""
    chosen = [recipe for recipe in registry.recipes.all().values() if kind in recipe.kinds]
    return sorted(chosen, key=lambda recipe: (recipe.order, recipe.name))


def recipe_names(kind: str) -> tuple[str, ...]:
    """The names of the recipes that train ``kind`` tasks, cheapest first."""
    return tuple(recipe.name for recipe in recipes_for(kind))


def find_recipe(name: str, kind: str) -> Recipe:
    """The recipe ``name`` for a ``kind`` task: E701 when there is none of that name, E740 when
    it trains other kinds (both list the recipes for ``kind``)."""
    recipe: Recipe | None = registry.recipes.get(name)
    choices = ", ".join(recipe_names(kind))
    if recipe is None:
        raise fail(Errors.E701, recipe=name, choices=choices)
    if kind not in recipe.kinds:
        raise fail(Errors.E740, recipe=name, kind=kind, choices=choices)
    return recipe


def busy_with(name: str) -> str:
    """What recipe ``name`` spends most of its time on ("training" or "embedding"; "embedding"
    for a name no recipe has, which training refuses anyway)."""
    recipe: Recipe | None = registry.recipes.get(name)
    return recipe.busy_with if recipe is not None else Recipe.busy_with


def check_settings(settings: TrainSettings, kind: str = "classify") -> Recipe:
    """Every check of ``settings`` for a ``kind`` task before any work: the recipe (E701,
    E740), what it refuses (E709, E746) and the shared checks (E403, E708). Returns the recipe."""
    recipe = find_recipe(settings.recipe, kind)
    recipe.check(settings)
    check_shared_settings(settings)
    recipe.check_ngrams(settings)
    return recipe


def _option(setting: str) -> str:
    """The command-line option of a TrainSettings field: ``max_steps`` → ``--max-steps``."""
    return "--" + setting.replace("_", "-")


def params_to_json(params: Any) -> dict[str, Any]:
    """A recipe's hyper-parameters (a dataclass) as card JSON: tuples become lists."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in asdict(params).items()
    }
