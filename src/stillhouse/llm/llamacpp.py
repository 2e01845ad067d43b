"""The in-process llama.cpp backend (the default): label scoring with a shared-prefix KV cache.

Scoring works on a context of our own with a unified KV cache and many sequences:

1. The prompt's fixed part (instructions, labels, fixed examples) is decoded once into sequence 0
   and kept while the next prompts share it. The fixed part is always decoded on its own and
   the variable part (the text) in one batch after it, so the numbers do not depend on what
   ran before.
2. The label continuations form a token trie. The fixed part is copied (cheaply: cells are
   shared) to one sequence per label; the text is decoded tagged with sequence 0 and every
   label's sequence. Then the trie is expanded best-first, level by level, each round one batch
   of nodes, each node tagged with the sequences of the labels below it: label scoring runs at
   prompt-processing speed, and stops early where the remaining labels hold negligible mass.
3. The label sequences are dropped again, leaving the prompt for the next text.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.errors import Errors, fail
from stillhouse.llm.backend import BackendSettings, Generation
from stillhouse.llm.models import verified_sha256
from stillhouse.llm.prompts import ChatPrompt

_SENTINEL = "\u2063@@STILLHOUSE_TEXT@@\u2063"


@dataclass
class _TrieNode:
    token: int
    depth: int
    parent: int  # index into the node list; -1: the prefix
    seqs: list[int] = field(default_factory=list)  # continuation indexes passing through
    children: dict[int, int] = field(default_factory=dict)


def _build_trie(continuations: Sequence[Sequence[int]]) -> tuple[list[_TrieNode], list[list[int]]]:
    """Nodes of the token trie, and for each continuation the node index of each of its tokens."""
    nodes: list[_TrieNode] = []
    roots: dict[int, int] = {}
    paths: list[list[int]] = []
    for index, tokens in enumerate(continuations):
        path: list[int] = []
        children, parent = roots, -1
        for depth, token in enumerate(tokens):
            if token not in children:
                children[token] = len(nodes)
                nodes.append(_TrieNode(token=token, depth=depth, parent=parent))
            node_index = children[token]
            nodes[node_index].seqs.append(index)
            path.append(node_index)
            parent = node_index
            children = nodes[node_index].children
        paths.append(path)
    return nodes, paths


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    top = values.max()
    return values - (top + np.log(np.exp(values - top).sum()))


class LlamaCppBackend:
    """A GGUF model run in-process by llama.cpp (llama-cpp-python)."""

    name = "llamacpp"
    can_score = True

    def __init__(
        self, path: Path, settings: BackendSettings, model_name: str | None = None
    ) -> None:
        import llama_cpp
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self._lib = llama_cpp
        self.path = Path(path)
        self.settings = settings
        # Label scoring stops expanding the label trie below this share of probability mass.
        self.tolerance = settings.score_tolerance
        self.model_name = model_name or self.path.name
        self.model_sha256 = verified_sha256(self.path)
        threads = settings.threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=settings.n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                seed=settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise fail(Errors.E306, path=self.path, detail=str(error)) from None
        self.n_vocab = self.llm.n_vocab()
        template = self.llm.metadata.get("tokenizer.chat_template")
        self._template = (
            ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
                template
            )
            if template
            else None
        )
        self._bos_text = self._token_text(self.llm.token_bos())
        self._eos_text = self._token_text(self.llm.token_eos())
        self._end_of_turn = self._find_end_of_turn()
        self._yes_no = (self._first_token(" yes"), self._first_token(" no"))
        # The scoring context: unified KV cache shared by up to n_seq_max sequences.
        self._n_seq_max = llama_cpp.llama_max_parallel_sequences()
        self._n_batch = 2048
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = settings.n_ctx
        params.n_batch = self._n_batch
        params.n_ubatch = 512
        params.n_seq_max = self._n_seq_max
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        self._ctx = llama_cpp.llama_init_from_model(self.llm.model, params)
        if self._ctx is None:
            raise fail(Errors.E306, path=self.path, detail="could not create a scoring context")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, self._n_seq_max)
        self._cached: list[int] = []  # tokens of sequence 0 in the scoring context
        self._fixed_length = 0  # how many of them are the fixed part
        self.tokens_processed = 0  # new tokens decoded by scoring (for throughput reports)

    # -- text and tokens ------------------------------------------------------------------
    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        if self._template is None:
            # No chat template: a plain transcript.
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
            return text + ("assistant: " if generation_prompt else "")
        return self._template.render(
            messages=messages,
            add_generation_prompt=generation_prompt,
            bos_token=self._bos_text,
            eos_token=self._eos_text,
        )

    def _find_end_of_turn(self) -> int:
        probe = "Q7Z"
        rendered = self._render(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": probe}], False
        )
        after = rendered.split(probe, 1)[1] if probe in rendered else ""
        tokens = self._tokenize(after) if after.strip() else []
        return tokens[0] if tokens else self.llm.token_eos()

    def _first_token(self, text: str) -> int:
        return self._tokenize(text)[0]

    def prompt_tokens(self, prompt: ChatPrompt) -> tuple[list[int], list[int]]:
        """The chat-templated prompt as (fixed tokens, variable tokens)."""
        rendered = self._render(
            [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.fixed + _SENTINEL},
            ],
            True,
        )
        before, after = rendered.split(_SENTINEL, 1)
        bos = self.llm.token_bos()
        add_bos = (
            bos >= 0
            and self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
            and not before.startswith(self._bos_text)
        )
        return self._tokenize(before, bos=add_bos), self._tokenize(prompt.variable + after)

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        head = text[: max_tokens * 16]  # bound tokenizer work on huge texts
        tokens = self.llm.tokenize(head.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) <= max_tokens and len(head) == len(text):
            return text, len(tokens)
        total = (
            len(tokens) if len(head) == len(text) else len(tokens) + (len(text) - len(head)) // 4
        )
        cut = self.llm.detokenize(tokens[:max_tokens]).decode("utf-8", errors="ignore")
        return cut, total

    # -- the scoring context --------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, Sequence[int], bool]]) -> None:
        """Decode (token, position, sequence ids, want logits) entries as one batch."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, position, seq_ids, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = len(seq_ids)
            for j, seq in enumerate(seq_ids):
                batch.seq_id[i][j] = seq
            batch.logits[i] = logits
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise fail(Errors.E312, tokens=len(entries), path=self.path, status=status)
        self.tokens_processed += len(entries)

    def _logits(self, index: int) -> np.ndarray:
        pointer = self._lib.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        )

    def _decode_sequence(self, tokens: Sequence[int], start: int) -> None:
        for offset in range(0, len(tokens), self._n_batch):
            chunk = tokens[offset : offset + self._n_batch]
            self._decode([(t, start + offset + i, (0,), False) for i, t in enumerate(chunk)])

    def _set_fixed(self, fixed: list[int]) -> None:
        """Make sequence 0 hold exactly the fixed part, decoded on its own unless it is there."""
        mem = self._memory
        if self._cached[: len(fixed)] != fixed or self._fixed_length != len(fixed):
            self._lib.llama_memory_clear(mem, True)
            self._cached = []
            self._decode_sequence(fixed, 0)
            self._cached = list(fixed)
            self._fixed_length = len(fixed)
        elif len(self._cached) > len(fixed):
            self._lib.llama_memory_seq_rm(mem, 0, len(fixed), -1)
            self._cached = self._cached[: len(fixed)]

    def _score_continuations(
        self, prompt: ChatPrompt, continuations: Sequence[Sequence[int]], read_next: bool
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Sum of log-probabilities of each continuation after the prompt, and (when
        ``read_next``) the logits after its last token."""
        fixed, variable = self.prompt_tokens(prompt)
        longest = max(len(c) for c in continuations)
        if len(fixed) + len(variable) + longest + 1 > self.settings.n_ctx:
            raise fail(
                Errors.E309,
                needed=len(fixed) + len(variable) + longest,
                n_ctx=self.settings.n_ctx,
            )
        # The variable part is decoded together with the first round of the label trie.
        self._set_fixed(fixed)
        prefix_length = len(fixed) + len(variable)
        totals = np.zeros(len(continuations))
        next_logits: list[np.ndarray] = [np.empty(0)] * len(continuations)
        root: np.ndarray | None = None
        for group in self._groups(continuations, read_next):
            root = self._score_group(
                continuations,
                group,
                prefix_length,
                variable,
                root,
                read_next,
                totals,
                next_logits,
            )
        return totals, next_logits

    def _groups(self, continuations: Sequence[Sequence[int]], read_next: bool) -> list[list[int]]:
        """Split continuations into groups that fit the sequence and batch limits."""
        groups: list[list[int]] = [[]]
        budget = self._n_batch - 1
        used = 0
        for index, tokens in enumerate(continuations):
            cost = len(tokens)
            if groups[-1] and (len(groups[-1]) >= self._n_seq_max - 1 or used + cost > budget):
                groups.append([])
                used = 0
            groups[-1].append(index)
            used += cost
        return groups

    def _score_group(
        self,
        continuations: Sequence[Sequence[int]],
        group: list[int],
        prefix_length: int,
        variable: list[int],
        root: np.ndarray | None,
        read_next: bool,
        totals: np.ndarray,
        next_logits: list[np.ndarray],
    ) -> np.ndarray:
        """Score one group of continuations over the cached prefix, best-first through the trie;
        returns the log-distribution after the prompt (``root``, computed by the first group).

        The first group decodes the prompt's variable part (the text) tagged with sequence 0 and
        every label's sequence, in one batch; later groups copy it from sequence 0. The fixed
        part is always decoded on its own, the variable part always in one batch after it: the
        numbers do not depend on what ran before.

        Each round decodes, as one batch, the trie nodes whose children are still unknown. With
        ``tolerance`` > 0 (and not ``read_next``), nodes are expanded most likely first and
        expansion stops once the unexpanded nodes together hold less than ``tolerance`` of the
        probability mass of all labels; the labels below such a node share its probability
        equally. ``tolerance = 0`` scores every continuation exactly.
        """
        mem = self._memory
        nodes, paths = _build_trie([continuations[i] for i in group])
        log_prob = np.full(len(nodes), np.nan)
        tail_logits: dict[int, np.ndarray] = {}
        try:
            if root is None:
                root = self._decode_variable(variable, prefix_length, len(group))
            else:
                for local in range(len(group)):
                    self._lib.llama_memory_seq_cp(mem, 0, local + 1, -1, -1)
            frontier = []
            for index, node in enumerate(nodes):
                if node.parent == -1:
                    log_prob[index] = root[node.token]
                    if node.children or read_next:
                        frontier.append(index)
            while frontier:
                chosen = frontier if read_next else self._most_likely(frontier, nodes, log_prob)
                if not chosen:
                    break
                self._decode(
                    [
                        (
                            nodes[i].token,
                            prefix_length + nodes[i].depth,
                            [s + 1 for s in nodes[i].seqs],
                            True,
                        )
                        for i in chosen
                    ]
                )
                taken = set(chosen)
                frontier = [i for i in frontier if i not in taken]
                for row, index in enumerate(chosen):
                    if not nodes[index].children:
                        tail_logits[index] = self._logits(row).copy()
                        continue
                    distribution = _log_softmax(self._logits(row))
                    for child in nodes[index].children.values():
                        log_prob[child] = log_prob[index] + distribution[nodes[child].token]
                        if nodes[child].children or read_next:
                            frontier.append(child)
        finally:
            for local in range(len(group)):
                self._lib.llama_memory_seq_rm(mem, local + 1, -1, -1)
        for local, path in enumerate(paths):
            known = [i for i in path if not np.isnan(log_prob[i])]
            deepest = known[-1]
            if deepest == path[-1]:
                totals[group[local]] = log_prob[deepest]
            else:  # pruned: an equal share of the unexpanded node's probability
                totals[group[local]] = log_prob[deepest] - np.log(len(nodes[deepest].seqs))
            if read_next:
                next_logits[group[local]] = tail_logits[path[-1]]
        return root

    def _decode_variable(
        self, variable: list[int], prefix_length: int, n_labels: int
    ) -> np.ndarray:
        """Decode the variable part into sequence 0 and the ``n_labels`` label sequences (which
        get the fixed part by copy); returns the log-distribution after the prompt."""
        start = prefix_length - len(variable)
        # A very long text goes into sequence 0 in chunks first; only its last token is shared.
        split = len(variable) - 1 if len(variable) > self._n_batch // 2 else 0
        if split:
            self._decode_sequence(variable[:split], start)
            self._cached += variable[:split]
        for local in range(n_labels):
            self._lib.llama_memory_seq_cp(self._memory, 0, local + 1, -1, -1)
        everyone = [0, *range(1, n_labels + 1)]
        rest = variable[split:]
        self._decode(
            [
                (token, start + split + i, everyone, i == len(rest) - 1)
                for i, token in enumerate(rest)
            ]
        )
        self._cached += rest
        return _log_softmax(self._logits(len(rest) - 1))

    def _most_likely(
        self, frontier: list[int], nodes: list[_TrieNode], log_prob: np.ndarray
    ) -> list[int]:
        """The frontier nodes to expand: most likely first, until what is left holds less than
        ``tolerance`` of the total label mass (finished labels plus the frontier)."""
        finished = [i for i, n in enumerate(nodes) if not n.children and not np.isnan(log_prob[i])]
        mass = np.exp(log_prob[frontier])
        total = (
            float(np.exp(log_prob[finished]).sum() + mass.sum()) if finished else float(mass.sum())
        )
        order = np.argsort(-mass, kind="stable")
        chosen, left = [], float(mass.sum())
        for position in order:
            if left <= self.tolerance * total:
                break
            chosen.append(frontier[int(position)])
            left -= float(mass[position])
        return chosen

    # -- the Backend interface --------------------------------------------------------------
    def label_continuations(self, labels: Sequence[str]) -> list[list[int]]:
        """Each label's tokens as the reply. A label whose tokens start another label's gets the
        end-of-turn token too, so that no continuation is a prefix of another: the scored events
        ("the reply starts with this label") stay disjoint, and labels need no extra decode."""
        tokens = [self._tokenize(label) for label in labels]
        prefixes = {tuple(t[:i]) for t in tokens for i in range(1, len(t))}
        return [[*t, self._end_of_turn] if tuple(t) in prefixes else t for t in tokens]

    def score_labels(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        continuations = self.label_continuations(labels)
        totals, _ = self._score_continuations(prompt, continuations, read_next=False)
        return totals

    def score_yes_no(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        continuations = [self._tokenize(f"{label}:") for label in labels]
        _, next_logits = self._score_continuations(prompt, continuations, read_next=True)
        yes, no = self._yes_no
        result = np.empty(len(labels))
        for i, logits in enumerate(next_logits):
            distribution = _log_softmax(logits)
            log_yes, log_no = distribution[yes], distribution[no]
            result[i] = 1.0 / (1.0 + np.exp(log_no - log_yes))
        return result

    def generate(
        self,
        prompt: ChatPrompt,
        *,
        choices: Sequence[str] | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Generation:
        from llama_cpp import LlamaGrammar

        kwargs: dict[str, Any] = {}
        if choices is not None:
            alternatives = " | ".join(_gbnf_literal(c) for c in choices)
            kwargs["grammar"] = LlamaGrammar.from_string(f"root ::= {alternatives}", verbose=False)
        elif json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        result = self.llm.create_chat_completion(
            messages=prompt.messages(),  # type: ignore[arg-type]
            max_tokens=max_tokens or self.settings.max_new_tokens,
            temperature=0.0,
            seed=self.settings.seed,
            **kwargs,
        )
        usage = result.get("usage", {})  # type: ignore[union-attr]
        return Generation(
            text=result["choices"][0]["message"]["content"] or "",  # type: ignore[index]
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", 0)),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": "llama.cpp (llama-cpp-python)",
            "model": self.model_name,
            "path": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "sha256": self.model_sha256,
            "parameters": int(self._lib.llama_model_n_params(self.llm.model)),
            "n_ctx": self.settings.n_ctx,
            "threads": self.settings.threads or os.cpu_count(),
        }

    def close(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "llm", None) is not None:
            self.llm.close()


def _gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
