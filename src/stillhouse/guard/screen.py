"""Screening texts for prompt injection before an LLM sees them (task.toml ``[guard]``).

:func:`screen_texts` is the one call every LLM path makes (the ``llm:`` system, cascades,
annotate; serve and evaluate through those): the shipped detector ``[guard].detector`` of
:mod:`stillhouse.guard.injection` scores a whole batch in one call (``linear``: about a
millisecond per short text) and each text is flagged when its score reaches
``[guard].threshold`` (unset: the detector's own). Mode ``off`` scans nothing and never loads the detector.

What a flag does is up to the caller, by ``[guard].injection``:

- ``route``: the text never reaches an LLM. A cascade's non-LLM stages see it without the
  windows the detector flagged (:meth:`~stillhouse.guard.injection.Detector.remainders`: a
  bag-of-words student is swayed by an attack that names a label, so the attack is cut out
  before it reads the text) and answer it when sure, otherwise — or when nothing is left — the
  cascade abstains; an ``llm:`` system alone, and annotate, abstain (annotate puts the text in
  the review queue ``injection``).
- ``block``: refused at once (abstention; annotate: the review queue ``injection``).
- ``flag``: the LLM still answers; the flag is recorded.

Only the data is screened (the text as it would be sent, after truncation), never the task
author's instructions, labels or fixed examples. Every screened prediction or annotation carries
``info["guard"]`` = :func:`guard_info` (flagged or not, so a detector's recall and false-positive
rate can be read off predictions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stillhouse.task import GuardSection

# The modes in which a flagged text is kept from the LLM.
KEEPS_FROM_LLM = ("route", "block")
# ``info["guard"]["action"]`` of a text screened and not flagged.
NO_ACTION = "none"
# The reason a cascade gives for an abstention on a flagged text (``info["abstain_reason"]``).
ABSTAIN_REASON = "injection"


@dataclass(frozen=True)
class Screening:
    """One text's screening: ``flagged`` when ``score`` (the detector's calibrated probability of
    injection) reached the threshold; ``score`` is None when nothing was scanned (mode ``off``)."""

    flagged: bool
    score: float | None
    # mode ``route``, flagged: the text without its flagged windows (what non-LLM stages see)
    # and how many characters that cut
    remainder: str | None = None
    removed_chars: int = 0


def screen_texts(texts: Sequence[str], section: GuardSection) -> list[Screening]:
    """One :class:`Screening` per text, in order, from one batched detector call (mode ``off``:
    every text unflagged with no score, and the detector is not loaded)."""
    if section.injection == "off":
        return [Screening(False, None) for _ in texts]
    if not texts:
        return []
    from stillhouse.guard.injection import shipped_detector  # loaded once per process

    detector = shipped_detector(section.detector)
    verdicts = detector.scan(texts, section.threshold)
    screened = [Screening(verdict.injection, verdict.score) for verdict in verdicts]
    if section.injection != "route":
        return screened
    flagged = [i for i, screening in enumerate(screened) if screening.flagged]
    left = detector.remainders([texts[i] for i in flagged], section.threshold)
    for position, remainder in zip(flagged, left, strict=True):
        cut = max(len(texts[position]) - len(remainder), 0)
        screened[position] = Screening(True, screened[position].score, remainder, cut)
    return screened


def keeps_from_llm(screening: Screening, section: GuardSection) -> bool:
    """Whether this flagged text must not reach an LLM (``route`` or ``block``)."""
    return screening.flagged and section.injection in KEEPS_FROM_LLM


def guard_info(screening: Screening, section: GuardSection) -> dict[str, Any]:
    """``info["guard"]`` of a screened text: ``injection`` (flagged), ``score`` and ``action``
    (the mode, ``route`` / ``block`` / ``flag``, when flagged; ``none`` otherwise); with
    ``route``, a flagged text's ``removed_chars``: how much of it lies in flagged windows, i.e.
    what a cascade's non-LLM stages do not read (all of it when every window was flagged)."""
    info: dict[str, Any] = {
        "injection": screening.flagged,
        "score": screening.score,
        "action": section.injection if screening.flagged else NO_ACTION,
    }
    if screening.remainder is not None:
        info["removed_chars"] = screening.removed_chars
    return info


def threshold_of(section: GuardSection) -> float | None:
    """The threshold in force: ``[guard].threshold``, else that of ``[guard].detector`` (None when
    the mode is ``off``: no detector is loaded for it)."""
    if section.injection == "off":
        return None
    if section.threshold is not None:
        return section.threshold
    from stillhouse.guard.injection import shipped_detector

    return shipped_detector(section.detector).threshold


def count_screened(infos: Sequence[dict[str, Any]]) -> dict[str, int] | None:
    """How many of these predictions' infos were screened, flagged, and kept from the LLM
    (action ``route`` or ``block``); None when none was screened (evaluate leaves the section
    out)."""
    found = [info["guard"] for info in infos if isinstance(info.get("guard"), dict)]
    if not found:
        return None
    return {
        "scanned": len(found),
        "flagged": sum(bool(g.get("injection")) for g in found),
        "kept_from_llm": sum(g.get("action") in KEEPS_FROM_LLM for g in found),
    }
