"""Near duplicates: MinHash LSH over character shingles, union-find groups, settable threshold."""

from __future__ import annotations

from audit_data import banking77_rows

from stillhouse.audit.near_duplicates import (
    SimilarPair,
    check_near_duplicates,
    jaccard,
    shingles,
    union_find_groups,
)
from stillhouse.data.records import Example


def test_union_find_joins_chains_into_one_group() -> None:
    pairs = [
        SimilarPair(0, 1, 0.9, "minhash"),
        SimilarPair(1, 4, 0.9, "minhash"),
        SimilarPair(2, 3, 0.85, "minhash"),
    ]
    assert union_find_groups(6, pairs) == [[0, 1, 4], [2, 3]]


def test_planted_edits_are_grouped_and_exact_copies_are_left_to_the_duplicates_check() -> None:
    rows = banking77_rows(300, seed=1)
    base = rows[5]["text"]
    variants = [
        base + "!",
        base.replace("my", "the", 1) if "my" in base else base + " pls",
        base + " thanks",
    ]
    examples = [Example(r["id"], r["text"]) for r in rows]
    examples += [Example(f"v{i}", text) for i, text in enumerate(variants)]
    examples.append(Example("exact", rows[7]["text"].upper()))
    labels = [r["category"] for r in rows] + [rows[5]["category"]] * 3 + [rows[7]["category"]]

    result = check_near_duplicates(examples, labels, threshold=0.7)

    group = next(g for g in result.findings if rows[5]["id"] in g.ids)
    assert set(group.ids) >= {rows[5]["id"], "v0", "v2"}
    assert group.min_similarity >= 0.7 and group.method == "minhash"
    assert all("exact" not in g.ids for g in result.findings)  # only an exact copy


def test_a_higher_threshold_finds_fewer_pairs() -> None:
    text = "I would like to know why my card payment was declined yesterday at the shop"
    edited = text.replace("yesterday", "today")
    similarity = jaccard(shingles(text.lower()), shingles(edited.lower()))
    examples = [Example("a", text), Example("b", edited)]
    low = check_near_duplicates(examples, [None, None], threshold=similarity - 0.05)
    high = check_near_duplicates(examples, [None, None], threshold=min(0.99, similarity + 0.05))
    assert low.count == 1 and high.count == 0
    assert low.findings[0].labels == [None, None] and not low.findings[0].conflicting


def test_paraphrases_join_groups_through_embedding_cosine() -> None:
    from stillhouse.llm.fewshot import embed

    texts = [
        "How do I top up my card?",
        "What is the way to add money to my card?",
        "My card was stolen yesterday.",
    ]
    examples = [Example(str(i), text) for i, text in enumerate(texts)]
    vectors = embed(texts)
    cosine = float(vectors[0] @ vectors[1])
    result = check_near_duplicates(
        examples, ["a", "b", "c"], threshold=0.8, embeddings=vectors, cosine_threshold=cosine - 0.01
    )
    assert [group.ids for group in result.findings] == [["0", "1"]]
    assert result.findings[0].method == "embedding" and result.findings[0].conflicting
    assert float(vectors[0] @ vectors[2]) < cosine
