"""Which answer an export takes for one example: gold, else a human's, else the latest LLM's."""

from __future__ import annotations

import pytest

from stillhouse.data.records import Annotation
from stillhouse.export import choose

GOLD = Annotation("e1", "gold", "positive", created_at=1.0)
HUMAN = Annotation("e1", "human:ann", "neutral", created_at=2.0)
OLD_LLM = Annotation("e1", "llm:qwen2.5-0.5b@aaaa1111", "negative", created_at=3.0)
NEW_LLM = Annotation("e1", "llm:smollm2-135m@bbbb2222", "neutral", created_at=4.0)
EVERYONE = [NEW_LLM, GOLD, OLD_LLM, HUMAN]


def invalid(annotation: Annotation, created_at: float = 10.0) -> Annotation:
    return Annotation(
        annotation.example_id,
        annotation.annotator,
        annotation.answer,
        info={"invalid": True},
        created_at=created_at,
    )


def test_best_takes_gold_first() -> None:
    assert choose(EVERYONE, "best") is GOLD


def test_best_without_gold_takes_the_human() -> None:
    assert choose([OLD_LLM, HUMAN, NEW_LLM], "best") is HUMAN


def test_best_with_only_llms_takes_the_most_recent() -> None:
    assert choose([NEW_LLM, OLD_LLM], "best") is NEW_LLM
    assert choose([OLD_LLM, NEW_LLM], "best") is NEW_LLM


@pytest.mark.parametrize(
    ("policy", "expected"), [("llm", NEW_LLM), ("human", HUMAN), ("gold", GOLD)]
)
def test_a_source_policy_takes_only_that_source(policy: str, expected: Annotation) -> None:
    assert choose(EVERYONE, policy) is expected


def test_a_source_policy_takes_nothing_when_that_source_is_absent() -> None:
    assert choose([OLD_LLM, NEW_LLM], "human") is None
    assert choose([], "best") is None


def test_an_exact_annotator_id_takes_that_annotator_even_if_older() -> None:
    assert choose(EVERYONE, OLD_LLM.annotator) is OLD_LLM
    assert choose(EVERYONE, "human:ann") is HUMAN
    assert choose(EVERYONE, "llm:never-ran@00000000") is None


def test_invalid_answers_are_never_chosen() -> None:
    broken_llm = invalid(NEW_LLM, created_at=99.0)

    assert choose([OLD_LLM, broken_llm], "llm") is OLD_LLM
    assert choose([OLD_LLM, broken_llm], "best") is OLD_LLM
    assert choose([invalid(GOLD), HUMAN, OLD_LLM], "best") is HUMAN
    assert choose([broken_llm], NEW_LLM.annotator) is None
    assert choose([broken_llm], "best") is None
