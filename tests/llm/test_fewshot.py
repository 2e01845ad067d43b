"""Nearest-neighbour few-shot selection with the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

from stillhouse.data.records import Example
from stillhouse.llm.fewshot import NeighbourSelector, embed

pytestmark = pytest.mark.slow

POOL = [
    Example("a", "My card has not arrived yet, where is it?", gold="card_arrival"),
    Example("b", "When will my new card be delivered?", gold="card_arrival"),
    Example("c", "How do I top up my account with cash?", gold="top_up"),
    Example("d", "What is the exchange rate for euros?", gold="exchange_rate"),
    Example("e", "Is there a fee for topping up by card?", gold="top_up"),
    Example("f", "no label on this one", gold=None),
]


def test_embeddings_are_unit_length_and_similar_texts_are_close() -> None:
    vectors = embed([POOL[0].text, POOL[1].text, POOL[3].text])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_neighbours_are_the_most_similar_labelled_examples_nearest_last() -> None:
    selector = NeighbourSelector(POOL, k=2)
    query = Example("q", "I am still waiting for my card to arrive")
    (chosen,) = selector.select([query])
    assert [e.id for e in chosen][-1] in {"a", "b"}
    assert {e.id for e in chosen} == {"a", "b"}


def test_an_example_is_never_its_own_neighbour_and_unlabelled_ones_are_not_used() -> None:
    selector = NeighbourSelector(POOL, k=3)
    for example, chosen in zip(POOL, selector.select(POOL), strict=True):
        ids = [e.id for e in chosen]
        assert example.id not in ids
        assert "f" not in ids
        assert len(ids) == 3
