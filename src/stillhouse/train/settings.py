"""What shapes a trained model besides the data (:class:`TrainSettings`, all recorded in the
card), the checks every recipe shares, and the result of a run (:class:`TrainSummary`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stillhouse.errors import Errors, fail
from stillhouse.train.labels import LABEL_POLICIES

# The linear recipe's n-gram ranges (None switches a family off); other recipes read none.
WORD_NGRAMS: tuple[int, int] | None = (1, 2)
CHAR_NGRAMS: tuple[int, int] | None = (2, 5)
# numpy's legacy seeding (scikit-learn's random_state) takes no more, nor a negative one
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a trained model besides the data (all recorded in the card)."""

    recipe: str = "linear"
    labels: str = "best"
    min_llm_confidence: float = 0.0
    min_per_label: int = 3
    holdout: float = 0.2
    seed: int = 0
    quantize: str | None = None
    c: float | None = None
    max_features: int | None = None
    # linear (and multilabel linear) only: n-gram ranges, None switches a family off
    word_ngrams: tuple[int, int] | None = WORD_NGRAMS
    char_ngrams: tuple[int, int] | None = CHAR_NGRAMS
    refit: bool = True
    threads: int | None = None
    max_memory_gb: float | None = None
    latency_texts: int = 200
    throughput_texts: int = 1000
    # LoRA recipes, spacy-ner, contrastive-encoder: training bounds (None: the recipe's default
    # epochs, no step/time cap)
    epochs: int | None = None
    max_steps: int | None = None
    max_minutes: float | None = None
    checkpoint_every: int | None = None

    @property
    def default_ngrams(self) -> bool:
        """Whether the n-gram ranges are the defaults (a recipe reading none accepts only those)."""
        return (self.word_ngrams, self.char_ngrams) == (WORD_NGRAMS, CHAR_NGRAMS)


@dataclass(frozen=True)
class TrainSummary:
    path: str
    card: dict[str, Any] = field(repr=False)


def check_shared_settings(settings: TrainSettings) -> None:
    """The checks every recipe shares: E403 label policy, E708 numbers out of range (the seed
    included) and n-gram ranges that are not 1 ≤ low ≤ high or both families off."""
    if settings.labels not in LABEL_POLICIES:
        raise fail(
            Errors.E403,
            what="--labels policy",
            value=settings.labels,
            choices=", ".join(LABEL_POLICIES),
        )
    seed = settings.seed
    checks = [
        (
            "--seed",
            seed,
            isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED,
            f"an integer from 0 to {MAX_SEED} (2**32 - 1)",
        ),
        ("--holdout", settings.holdout, 0 < settings.holdout <= 0.5, "a share in (0, 0.5]"),
        ("--min-per-label", settings.min_per_label, settings.min_per_label >= 0, "0 or more"),
        (
            "--min-llm-confidence",
            settings.min_llm_confidence,
            0 <= settings.min_llm_confidence <= 1,
            "between 0 and 1",
        ),
        ("--c", settings.c, settings.c is None or settings.c > 0, "positive"),
        ("--epochs", settings.epochs, settings.epochs is None or settings.epochs >= 1, "1 or more"),
        (
            "--max-steps",
            settings.max_steps,
            settings.max_steps is None or settings.max_steps >= 1,
            "1 or more",
        ),
        (
            "--max-minutes",
            settings.max_minutes,
            settings.max_minutes is None or settings.max_minutes > 0,
            "positive",
        ),
    ]
    for what, value, ok, expected in checks:
        if not ok:
            raise fail(Errors.E708, what=what, expected=expected, value=value)
    ranges = {"--word-ngrams": settings.word_ngrams, "--char-ngrams": settings.char_ngrams}
    for what, ngrams in ranges.items():
        if ngrams is not None and not (len(ngrams) == 2 and 1 <= ngrams[0] <= ngrams[1]):
            raise fail(
                Errors.E708, what=what, expected="LOW-HIGH with 1 ≤ LOW ≤ HIGH", value=ngrams
            )
    if settings.word_ngrams is None and settings.char_ngrams is None:
        raise fail(
            Errors.E708,
            what="--word-ngrams/--char-ngrams",
            expected="a range for at least one of them",
            value="none",
        )


def parse_ngrams(option: str, text: str) -> tuple[int, int] | None:
    """``"1-2"`` → (1, 2), ``"3"`` → (3, 3), ``"none"`` → None; E708 names ``option`` for any
    other form (whether the range is valid is checked with the other settings:
    :func:`check_shared_settings`)."""
    if text.strip().lower() == "none":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if match is None:
        raise fail(Errors.E708, what=option, expected="LOW-HIGH, a number, or none", value=text)
    return int(match[1]), int(match[2] or match[1])
