"""The label trie and the best-first search through it, with hand-made log-probabilities."""

from __future__ import annotations

import numpy as np

from stillhouse.llm.label_trie import ROOT, LabelTrie, TrieSearch

# Token ids: 1 "card", 2 "_", 3 "arr", 4 "link", 5 "top", 6 "up", 9 end of turn.
CONTINUATIONS = [[1, 2, 3], [1, 2, 4], [5, 6], [5, 9]]
VOCAB = 10


def _logits(probabilities: dict[int, float]) -> np.ndarray:
    """Logits whose softmax puts ``probabilities`` on those tokens (the rest share what is left)."""
    rest = max(1.0 - sum(probabilities.values()), 1e-9) / (VOCAB - len(probabilities))
    values = np.full(VOCAB, np.log(rest))
    for token, p in probabilities.items():
        values[token] = np.log(p)
    return values


def test_shared_prefixes_are_one_node_and_only_nodes_with_children_are_decoded() -> None:
    trie = LabelTrie(CONTINUATIONS)

    assert len(trie.nodes) == 7  # card, _, arr, link, top, up, end
    assert [trie.nodes[i].token for i in trie.roots] == [1, 5]
    assert trie.n_decodable == 3  # card, "_" and top have children
    assert trie.max_branches == 2  # "_" (under card) and top can be open at once
    assert trie.decodable_children(ROOT) == trie.roots


def test_read_next_makes_every_node_decodable() -> None:
    trie = LabelTrie(CONTINUATIONS, read_next=True)

    assert trie.n_decodable == len(trie.nodes)
    assert trie.max_branches == 4  # the four label ends


def test_exact_search_sums_each_labels_token_log_probabilities() -> None:
    trie = LabelTrie(CONTINUATIONS)
    search = TrieSearch(trie, tolerance=0.0)
    root = np.log(np.array([0.01, 0.6, 0.01, 0.01, 0.01, 0.3, 0.01, 0.01, 0.02, 0.02]))
    search.start(root)
    after = {1: _logits({2: 0.9}), 5: _logits({6: 0.5, 9: 0.25})}

    first = search.choose()
    assert sorted(trie.nodes[i].token for i in first) == [1, 5]
    search.take(first)
    for node in first:
        search.absorb(node, after[trie.nodes[node].token])
    (underscore,) = search.choose()
    search.take([underscore])
    search.absorb(underscore, _logits({3: 0.7, 4: 0.2}))
    assert search.choose() == []

    totals, _ = search.totals()
    expected = np.log([0.6 * 0.9 * 0.7, 0.6 * 0.9 * 0.2, 0.3 * 0.5, 0.3 * 0.25])
    np.testing.assert_allclose(totals, expected, rtol=1e-9)


def test_tolerance_leaves_unlikely_branches_unexpanded_and_shares_their_mass() -> None:
    trie = LabelTrie(CONTINUATIONS)
    search = TrieSearch(trie, tolerance=0.05)
    root = np.full(VOCAB, np.log(1e-4))
    root[1], root[5] = np.log(0.97), np.log(0.01)
    search.start(root)

    chosen = search.choose()

    assert [trie.nodes[i].token for i in chosen] == [1]  # "top" holds < 5% of the mass
    search.take(chosen)
    search.absorb(chosen[0], _logits({2: 0.99}))
    (underscore,) = search.choose()
    search.take([underscore])
    search.absorb(underscore, _logits({3: 0.49, 4: 0.49}))
    assert search.choose() == []
    totals, _ = search.totals()
    # top_up and top<end> were never decoded: each gets half of P("top").
    np.testing.assert_allclose(totals[2:], np.log([0.005, 0.005]), rtol=1e-9)
    np.testing.assert_allclose(totals[0], np.log(0.97 * 0.99 * 0.49), rtol=1e-9)
