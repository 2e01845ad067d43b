"""Perturbations: deterministic given the seed, each doing what its name says, at the stated
rates, on real banking77 customer messages."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest
from banking_system import read_csv, require_banking

from stillhouse.errors import StillhouseError
from stillhouse.evaluate.misspellings import MISSPELLINGS
from stillhouse.evaluate.perturb import (
    MISSPELLING_PROBABILITY,
    PERTURBATIONS,
    TYPO_PROBABILITY,
    parse_perturbations,
    perturb,
)
from stillhouse.evaluate.wordlists import FIRST_NAMES, GENDERED_TERMS, KEYBOARD_NEIGHBOURS


@pytest.fixture(scope="module")
def texts() -> list[str]:
    require_banking()
    return [row["text"] for row in read_csv("test.csv")[::3]]  # 1,027 real messages


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_every_perturbation_is_deterministic_and_independent_of_order(
    texts: list[str], name: str
) -> None:
    sample = texts[:150]
    first = perturb(sample, name, seed=3)
    assert perturb(sample, name, seed=3) == first
    assert perturb(sample[::-1], name, seed=3) == first[::-1]
    assert len(first) == len(sample)


def test_random_perturbations_change_with_the_seed(texts: list[str]) -> None:
    for name in ("typos", "misspellings", "whitespace", "mild_mix"):
        assert perturb(texts, name, seed=1) != perturb(texts, name, seed=2), name


def test_case_perturbations(texts: list[str]) -> None:
    assert perturb(texts, "lowercase") == [text.lower() for text in texts]
    assert perturb(texts, "uppercase") == [text.upper() for text in texts]


@pytest.mark.parametrize(
    ("text", "contracted", "expanded"),
    [
        ("I do not know why it is not here", "I don't know why it's not here", None),
        ("Why can't I top up? It's been days", None, "Why cannot I top up? It is been days"),
        ("I have to pay, and I have no card", "I have to pay, and I have no card", None),
        ("WHAT IS this? They are late", "WHAT'S this? They're late", None),
        ("We’re sure you’ll like it", None, "We are sure you will like it"),
    ],
)
def test_contractions_and_expansions(
    text: str, contracted: str | None, expanded: str | None
) -> None:
    if contracted is not None:
        assert perturb([text], "contractions") == [contracted]
    if expanded is not None:
        assert perturb([text], "expansions") == [expanded]


def test_misspellings_replace_known_words_at_the_stated_rate(texts: list[str]) -> None:
    known = eligible = replaced = 0
    for original, perturbed in zip(texts, perturb(texts, "misspellings"), strict=True):
        before, after = original.split(" "), perturbed.split(" ")
        assert len(before) == len(after)
        for word, new in zip(before, after, strict=True):
            core = re.sub(r"^\W+|\W+$", "", word)
            if core.lower() in MISSPELLINGS:
                eligible += 1
                if new != word:
                    replaced += 1
                    new_core = re.sub(r"^\W+|\W+$", "", new)
                    assert new_core.lower() in MISSPELLINGS[core.lower()], (word, new)
            else:
                assert new == word
            known += 1
    assert eligible > 500  # the list covers everyday customer words
    expected = MISSPELLING_PROBABILITY * eligible
    assert abs(replaced - expected) < 4 * np.sqrt(expected * (1 - MISSPELLING_PROBABILITY))


def test_typos_hit_neighbouring_keys_at_the_stated_rate(texts: list[str]) -> None:
    letters = changed = 0
    for original, perturbed in zip(texts, perturb(texts, "typos"), strict=True):
        assert len(original) == len(perturbed)
        for old, new in zip(original, perturbed, strict=True):
            if old.lower() in KEYBOARD_NEIGHBOURS:
                letters += 1
                if new != old:
                    changed += 1
                    assert new.lower() in KEYBOARD_NEIGHBOURS[old.lower()]
                    assert new.isupper() == old.isupper()
            else:
                assert new == old
    expected = TYPO_PROBABILITY * letters
    assert abs(changed - expected) < 4 * np.sqrt(expected * (1 - TYPO_PROBABILITY))


def test_whitespace_only_widens_spaces(texts: list[str]) -> None:
    widened = perturb(texts, "whitespace")
    assert [re.sub(r" +", " ", text) for text in widened] == [
        re.sub(r" +", " ", text) for text in texts
    ]
    runs = [len(run) for text in widened for run in re.findall(r" +", text)]
    assert max(runs) == 3 and min(runs) == 1


def test_punctuation_removal_keeps_every_word(texts: list[str]) -> None:
    for original, stripped in zip(texts, perturb(texts, "punctuation"), strict=True):
        assert not any(unicodedata.category(c).startswith("P") for c in stripped)
        assert stripped.split() == [
            w
            for w in ("".join(c for c in word if not unicodedata.category(c).startswith("P"))
                      for word in original.split())
            if w
        ]  # fmt: skip


def test_mild_mix_is_lowercase_contractions_misspellings_and_spaces(texts: list[str]) -> None:
    contracted = perturb([text.lower() for text in texts], "contractions")
    words_changed = 0
    for base, mixed in zip(contracted, perturb(texts, "mild_mix"), strict=True):
        assert mixed == mixed.lower()
        before, after = base.split(), mixed.split()
        assert len(before) == len(after)
        for word, new in zip(before, after, strict=True):
            if word != new:
                words_changed += 1
                core = re.sub(r"^\W+|\W+$", "", word)
                assert re.sub(r"^\W+|\W+$", "", new) in MISSPELLINGS[core]
    assert words_changed > 50


@pytest.mark.slow  # the first use loads spaCy's English pipeline (several seconds)
@pytest.mark.parametrize(
    ("text", "swapped"),
    [
        ("She lost her card", "He lost his card"),
        ("I sent her the money", "I sent him the money"),
        ("Her card was declined, so I called her.", "His card was declined, so I called him."),
        ("My husband says the card is his", "My wife says the card is hers"),
        ("Mr. Brown and his son", "Mrs. Brown and her daughter"),
        ("HE TOLD HIS MOTHER", "SHE TOLD HER FATHER"),
        ("Can my daughter get a card?", "Can my son get a card?"),
    ],
)
def test_gender_swap(text: str, swapped: str) -> None:
    assert perturb([text], "gender") == [swapped]


@pytest.mark.slow
def test_gender_swap_changes_exactly_the_texts_with_gendered_words(texts: list[str]) -> None:
    words = [*GENDERED_TERMS, *GENDERED_TERMS.values(), "his", "hers", "ms", "madam", "lady"]
    pattern = re.compile(r"\b(" + "|".join(words) + r")\b", re.IGNORECASE)
    swapped = perturb(texts, "gender")
    changed = [new != old for new, old in zip(swapped, texts, strict=True)]
    assert changed == [bool(pattern.search(text)) for text in texts]
    assert sum(changed) >= 5


def test_name_swap_keeps_gender_and_is_consistent_within_a_text() -> None:
    text = "Adam sent money to Emily, and Adam paid the fee."
    (swapped,) = perturb([text], "names", seed=5)
    first, second, third = re.findall(r"[A-Z][a-z]+", swapped)
    african_american = FIRST_NAMES["african_american"]
    assert first in african_american["male"] and second in african_american["female"]
    assert third == first  # "Adam" both times becomes the same name
    assert perturb(["Nobody is named here"], "names") == ["Nobody is named here"]


def test_parse_perturbations_expands_families_and_rejects_unknown_names() -> None:
    assert parse_perturbations("mild_mix, typos,mild_mix") == ("mild_mix", "typos")
    assert parse_perturbations(["fairness", "lowercase"]) == ("gender", "names", "lowercase")
    assert len(parse_perturbations("all")) == len(PERTURBATIONS)
    with pytest.raises(StillhouseError) as error:
        parse_perturbations("mild_mix,typo")
    assert error.value.code == "E534" and "`typo`" in str(error.value)
    assert "typos" in str(error.value)
