"""The label token trie and the best-first search through it for one text.

Label scoring asks, for each label, the log-probability of its tokens as the reply. Labels share
token prefixes (``card_arrival``, ``card_linking``), so their continuations form a trie: each node
is one token, decoded once for every label below it. A node's logits give its children's
log-probabilities; a node is *decodable* when it has children (or, when the logits after the last
token are wanted, always).

:class:`TrieSearch` holds one text's progress through the trie and decides which nodes to decode
next; it knows nothing about the runtime that decodes them, so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ROOT = -1  # the parent of the trie's first-level nodes: the prompt itself


@dataclass
class TrieNode:
    token: int
    depth: int
    parent: int  # index into the node list; ROOT: the prompt
    labels: list[int] = field(default_factory=list)  # continuation indexes passing through
    children: dict[int, int] = field(default_factory=dict)  # token -> node index


class LabelTrie:
    """The token trie of ``continuations``; ``read_next`` makes every node decodable."""

    def __init__(self, continuations: Sequence[Sequence[int]], read_next: bool = False) -> None:
        self.read_next = read_next
        self.nodes: list[TrieNode] = []
        self.roots: list[int] = []
        self.paths: list[list[int]] = []  # per continuation: the node of each of its tokens
        top: dict[int, int] = {}
        for index, tokens in enumerate(continuations):
            path: list[int] = []
            children, parent = top, ROOT
            for depth, token in enumerate(tokens):
                if token not in children:
                    children[token] = len(self.nodes)
                    self.nodes.append(TrieNode(token=token, depth=depth, parent=parent))
                    if parent == ROOT:
                        self.roots.append(children[token])
                node = children[token]
                self.nodes[node].labels.append(index)
                path.append(node)
                parent = node
                children = self.nodes[node].children
            self.paths.append(path)
        self.n_decodable = sum(self.decodable(i) for i in range(len(self.nodes)))
        # The most branches one text can have open at once: the decodable nodes with no
        # decodable child (an upper bound on the frontier of decodable nodes).
        self.max_branches = max(
            1,
            sum(
                1
                for i in range(len(self.nodes))
                if self.decodable(i) and not self.decodable_children(i)
            ),
        )

    def decodable(self, node: int) -> bool:
        return self.read_next or bool(self.nodes[node].children)

    def decodable_children(self, node: int) -> list[int]:
        children = self.roots if node == ROOT else self.nodes[node].children.values()
        return [c for c in children if self.decodable(c)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    top = values.max()
    return values - (top + np.log(np.exp(values - top).sum()))


class TrieSearch:
    """One text's best-first expansion of a :class:`LabelTrie`.

    ``start`` takes the log-distribution after the prompt; then, round by round, ``choose``
    names the frontier nodes worth decoding, the caller decodes (some of) them, ``take`` removes
    those from the frontier and ``absorb`` feeds each one's logits back. With ``tolerance`` > 0
    (and not ``read_next``) nodes are chosen most likely first, stopping once the frontier left
    holds less than ``tolerance`` of the probability mass of all labels; labels below an
    unexpanded node share its probability equally. ``tolerance = 0`` scores every label exactly.

    ``allowed`` (continuation indexes) restricts the search to those labels (a label
    shortlist): nodes no allowed label passes through are never opened, and the other labels
    total ``-inf``.
    """

    def __init__(
        self, trie: LabelTrie, tolerance: float, allowed: frozenset[int] | None = None
    ) -> None:
        self.trie = trie
        self.tolerance = tolerance
        self.allowed = allowed
        self.log_prob = np.full(len(trie.nodes), np.nan)
        self.frontier: list[int] = []
        self.next_logits: dict[int, np.ndarray] = {}  # read_next: the logits after each label

    def _open(self, node: int) -> bool:
        """Whether an allowed label passes through ``node``."""
        return self.allowed is None or any(i in self.allowed for i in self.trie.nodes[node].labels)

    def _share(self, node: int) -> int:
        """How many allowed labels pass through ``node``."""
        labels = self.trie.nodes[node].labels
        return len(labels) if self.allowed is None else sum(i in self.allowed for i in labels)

    def open_children(self, node: int) -> list[int]:
        """``node``'s decodable children that the search may open (all, without ``allowed``)."""
        return [c for c in self.trie.decodable_children(node) if self._open(c)]

    def start(self, root: np.ndarray) -> None:
        for node in self.trie.roots:
            if self._open(node):
                self.log_prob[node] = root[self.trie.nodes[node].token]
        self.frontier = self.open_children(ROOT)

    def choose(self) -> list[int]:
        """The frontier nodes to decode next; empty when the search is finished."""
        if self.trie.read_next or not self.frontier:
            return list(self.frontier)
        nodes = self.trie.nodes
        finished = [
            i
            for i, node in enumerate(nodes)
            if not node.children and not np.isnan(self.log_prob[i])
        ]
        mass = np.exp(self.log_prob[self.frontier])
        total = float(np.exp(self.log_prob[finished]).sum() + mass.sum())
        chosen: list[int] = []
        left = float(mass.sum())
        for position in np.argsort(-mass, kind="stable"):
            if left <= self.tolerance * total:
                break
            chosen.append(self.frontier[int(position)])
            left -= float(mass[position])
        return chosen

    def take(self, nodes: Sequence[int]) -> None:
        taken = set(nodes)
        self.frontier = [i for i in self.frontier if i not in taken]

    def absorb(self, node: int, logits: np.ndarray) -> None:
        """The logits after ``node``'s token: its children's log-probabilities."""
        children = self.trie.nodes[node].children
        if not children:
            self.next_logits[node] = logits.copy()
            return
        distribution = log_softmax(logits)
        for child in children.values():
            if not self._open(child):
                continue
            self.log_prob[child] = self.log_prob[node] + distribution[self.trie.nodes[child].token]
            if self.trie.decodable(child):
                self.frontier.append(child)

    def totals(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per continuation: the summed log-probability, and (``read_next``) the logits after it."""
        totals = np.zeros(len(self.trie.paths))
        after: list[np.ndarray] = []
        for index, path in enumerate(self.trie.paths):
            if self.allowed is not None and index not in self.allowed:
                totals[index] = -np.inf
                continue
            deepest = [i for i in path if not np.isnan(self.log_prob[i])][-1]
            totals[index] = self.log_prob[deepest]
            if deepest != path[-1]:  # pruned: an equal share of the unexpanded node's mass
                totals[index] -= np.log(self._share(deepest))
            if self.trie.read_next:
                after.append(self.next_logits[path[-1]])
        return totals, after
