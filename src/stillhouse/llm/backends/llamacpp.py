"""The in-process llama.cpp backend (the default): label scoring with a shared-prefix KV cache.

Scoring works on a context of our own with a unified KV cache and many sequences:

1. The prompt's fixed part (instructions, labels, fixed examples) is decoded once into sequence 0
   and kept while the next prompts share it; it is always decoded on its own, so the numbers do
   not depend on what ran before.
2. Each text is decoded into a sequence of its own that shares the fixed part's cells. The label
   continuations form a token trie, expanded best-first: each round decodes, as one batch, the
   trie nodes every text in flight chose, each in a sequence that sees its text and its
   ancestors only. Many texts are in flight at once, so label scoring runs at close to
   prompt-processing speed, and each text stops early where the remaining labels hold
   negligible probability mass (see :class:`stillhouse.llm.label_trie.TrieSearch`).
3. Finished texts give their sequences back; the cells go once the batch is done, leaving the
   fixed part for the next texts (see :class:`_ScoringRun`).
"""

from __future__ import annotations

import ctypes
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse import registry
from stillhouse.errors import Errors, fail
from stillhouse.llm.backend import BackendSettings, Generation
from stillhouse.llm.label_trie import ROOT, LabelTrie, TrieSearch, log_softmax
from stillhouse.llm.models import EMBEDDED_MODELS, check_gguf, resolve_embedded, verified_sha256
from stillhouse.llm.prompts import ChatPrompt

_SENTINEL = "\u2063@@STILLHOUSE_TEXT@@\u2063"


class LlamaCppBackend:
    """A GGUF model run in-process by llama.cpp (llama-cpp-python)."""

    name = "llamacpp"
    can_score = True

    def __init__(
        self,
        path: Path,
        settings: BackendSettings,
        model_name: str | None = None,
        lora_path: Path | None = None,
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
        # a GGUF LoRA adapter applied to both contexts (generation and scoring), scale 1
        self.lora_path = Path(lora_path) if lora_path is not None else None
        threads = settings.threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=settings.n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                seed=settings.seed,
                lora_path=str(self.lora_path) if self.lora_path is not None else None,
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
        # llama.cpp wants a context at least as long as its sequence count.
        self._n_seq_max = min(llama_cpp.llama_max_parallel_sequences(), settings.n_ctx)
        self._n_batch = 2048
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = settings.n_ctx
        params.n_batch = self._n_batch
        # Micro-batches under 64 tokens: llama.cpp's CPU attention takes another kernel from 64
        # query tokens on, which shifts logits by up to ~0.3 (Qwen 0.5B). Below it a text's
        # scores do not depend on which other texts share its batches (tested), at ~15% of
        # prompt-processing speed.
        params.n_ubatch = 63
        params.n_seq_max = self._n_seq_max
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        self._ctx = llama_cpp.llama_init_from_model(self.llm.model, params)
        if self._ctx is None:
            raise fail(Errors.E306, path=self.path, detail="could not create a scoring context")
        if self.lora_path is not None:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.llm._lora_adapter)
            if llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(1)):
                raise fail(
                    Errors.E736, path=self.lora_path, base=self.path, detail="set_adapters failed"
                )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, self._n_seq_max)
        self._fixed: list[int] = []  # the fixed prompt part held by sequence 0
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

    def _set_fixed(self, fixed: list[int]) -> None:
        """Make sequence 0 hold exactly the fixed part, decoded on its own unless it is there."""
        if self._fixed != fixed:
            self._lib.llama_memory_clear(self._memory, True)
            self._fixed = []
            for offset in range(0, len(fixed), self._n_batch):
                chunk = fixed[offset : offset + self._n_batch]
                self._decode([(t, offset + i, (0,), False) for i, t in enumerate(chunk)])
            self._fixed = list(fixed)

    def _score_many(
        self,
        prompts: Sequence[ChatPrompt],
        continuations: Sequence[Sequence[int]],
        read_next: bool,
        allowed: Sequence[frozenset[int]] | None = None,
    ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """Per prompt: the summed log-probability of each continuation after it, and (when
        ``read_next``) the logits after each continuation's last token. ``allowed``, per prompt,
        restricts scoring to those continuations (the rest total ``-inf``)."""
        trie = LabelTrie(continuations, read_next)
        by_fixed: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for index, prompt in enumerate(prompts):
            fixed, variable = self.prompt_tokens(prompt)
            needed = len(fixed) + len(variable) + trie.n_decodable
            if needed > self.settings.n_ctx:
                raise fail(Errors.E309, needed=needed, n_ctx=self.settings.n_ctx)
            by_fixed.setdefault(tuple(fixed), []).append((index, variable))
        results: list[tuple[np.ndarray, list[np.ndarray]]] = [None] * len(prompts)  # type: ignore[list-item]
        for fixed, texts in by_fixed.items():
            self._set_fixed(list(fixed))
            run = _ScoringRun(self, trie, len(fixed), dict(enumerate(allowed or ())))
            for index, outcome in run.run(texts):
                results[index] = outcome
        return results

    # -- the Backend interface --------------------------------------------------------------
    def label_continuations(self, labels: Sequence[str]) -> list[list[int]]:
        """Each label's tokens as the reply. A label whose tokens start another label's gets the
        end-of-turn token too, so that no continuation is a prefix of another: the scored events
        ("the reply starts with this label") stay disjoint, and labels need no extra decode."""
        tokens = [self._tokenize(label) for label in labels]
        prefixes = {tuple(t[:i]) for t in tokens for i in range(1, len(t))}
        return [[*t, self._end_of_turn] if tuple(t) in prefixes else t for t in tokens]

    def score_labels(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        return self.score_labels_many([prompt], labels)[0]

    def score_labels_many(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str]
    ) -> list[np.ndarray]:
        continuations = self.label_continuations(labels)
        return [totals for totals, _ in self._score_many(prompts, continuations, False)]

    def score_label_subsets(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str], subsets: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """:meth:`score_labels_many` where prompt i scores only the labels ``subsets[i]``
        (indexes into ``labels``; a label shortlist), the others ``-inf``: one trie over all
        labels, batched across texts, each text opening only its own labels' nodes."""
        continuations = self.label_continuations(labels)
        allowed = [frozenset(subset) for subset in subsets]
        return [totals for totals, _ in self._score_many(prompts, continuations, False, allowed)]

    def score_yes_no(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        return self.score_yes_no_many([prompt], labels)[0]

    def score_yes_no_many(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str]
    ) -> list[np.ndarray]:
        continuations = [self._tokenize(f"{label}:") for label in labels]
        yes, no = self._yes_no
        results = []
        for _, next_logits in self._score_many(prompts, continuations, True):
            result = np.empty(len(labels))
            for i, logits in enumerate(next_logits):
                distribution = log_softmax(logits)
                result[i] = 1.0 / (1.0 + np.exp(distribution[no] - distribution[yes]))
            results.append(result)
        return results

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
            "lora": str(self.lora_path) if self.lora_path is not None else None,
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


@registry.backends.register("llamacpp")
def open_llamacpp(spec: str, settings: BackendSettings) -> LlamaCppBackend:
    """The backend for an embedded model name or a path to a ``.gguf`` file (the default backend).

    E303/E304 for an embedded model that is damaged or not installed, E301/E302 for a missing or
    non-GGUF file, E306 for one llama.cpp cannot load, E305 for a spec that is neither.
    """
    if spec in EMBEDDED_MODELS:
        return LlamaCppBackend(resolve_embedded(spec), settings, model_name=spec)
    if spec.endswith(".gguf") or Path(spec).exists():
        return LlamaCppBackend(check_gguf(Path(spec)), settings, model_name=Path(spec).name)
    raise fail(Errors.E305, spec=spec, names=", ".join(EMBEDDED_MODELS))


@dataclass
class _Text:
    """One text in flight in a :class:`_ScoringRun`."""

    index: int
    variable: list[int]
    prefix_length: int
    search: TrieSearch
    seq: int  # the text's own sequence: the fixed part (shared) and the text
    started: bool = False  # the distribution after the prompt is known
    owner: dict[int, int] = field(default_factory=dict)  # node (or ROOT) -> its sequence
    pending: dict[int, int] = field(default_factory=dict)  # node -> decodable children unplaced
    held: set[int] = field(default_factory=set)  # sequences to free when it is done


class _ScoringRun:
    """Label scoring of many texts over one fixed prompt part (already in sequence 0), batched
    across texts.

    Texts enter while sequences and cache cells last, and leave as soon as their search is done
    (continuous batching): each round decodes, as one batch, the tokens of the texts that just
    entered and the trie nodes every text in flight chose. A text and each open branch of its
    label trie have a llama.cpp sequence of their own. A node's sequence is a copy of its
    parent's (a copy shares the cells: nothing is recomputed); the last child placed takes the
    parent's sequence over instead, and a node's sequence is given back when it has no children
    left to decode. So a text never holds more sequences than its trie has open branches.

    Cache cells are never freed while texts are in flight: a sequence given back first hands its
    cells to a keeper sequence. llama.cpp reuses a freed cell at once, and a token placed in a
    cell before its own predecessors changes the attention result (by up to ~0.6 nats on
    SmolLM2): with every cell kept, each text's tokens lie in the cache in position order, and its
    scores equal a plain one-sequence evaluation whatever else is in flight. Once the cells run
    out, the texts in flight finish, everything but the fixed part is dropped, and the next
    texts start afresh.
    """

    MAX_OUTPUTS = 256  # logits per decode (each is n_vocab floats)

    def __init__(
        self,
        backend: LlamaCppBackend,
        trie: LabelTrie,
        fixed_length: int,
        allowed: dict[int, frozenset[int]] | None = None,
    ) -> None:
        self.backend = backend
        self.allowed = allowed or {}  # text index -> the labels it scores (a shortlist)
        self.lib = backend._lib
        self.trie = trie
        self.fixed_length = fixed_length
        # Sequence 0 holds the fixed part; the last one keeps the cells of given-back sequences.
        self.keeper = backend._n_seq_max - 1
        self.free = list(range(self.keeper - 1, 0, -1))
        self.cells = backend.settings.n_ctx - fixed_length
        self.cells_left = self.cells
        # Admit a text only while this many sequences are free (it may need that many).
        self.reserve = min(trie.max_branches, (backend._n_seq_max - 1) // 4)
        self.stepped_back = False  # a text was stepped back to free sequences

    def run(self, texts: Sequence[tuple[int, list[int]]]) -> Iterator[tuple[int, Any]]:
        """Yields (index, (totals, next logits)) per text as each finishes."""
        queue = deque(texts)
        flight: list[_Text] = []
        while queue or flight:
            if not flight and self.cells_left < self.cells:  # start afresh after the fixed part
                self.lib.llama_memory_seq_rm(self.backend._memory, self.keeper, -1, -1)
                self.cells_left = self.cells
            entries: list[tuple[int, int, Sequence[int], bool]] = []
            actions: list[tuple[_Text, int] | None] = []
            while queue and self._can_admit(len(queue[0][1]), flight):
                index, variable = queue.popleft()
                text = self._admit(index, variable)
                flight.append(text)
                last = len(variable) - 1
                for i, token in enumerate(variable):
                    entries.append((token, self.fixed_length + i, (text.seq,), i == last))
                    actions.append((text, ROOT) if i == last else None)
            for text in list(flight):
                if not text.started:
                    continue
                chosen = text.search.choose()
                if not chosen:
                    flight.remove(text)
                    self._leave(text)
                    self.stepped_back = False
                    yield text.index, text.search.totals()
                    continue
                placed = []
                for node in chosen:
                    seq = self._place(text, node)
                    if seq is None:
                        continue  # no sequence free now; a node that takes one over still can
                    placed.append(node)
                    position = text.prefix_length + self.trie.nodes[node].depth
                    entries.append((self.trie.nodes[node].token, position, (seq,), True))
                    actions.append((text, node))
                text.search.take(placed)
            if entries:
                self._decode_round(entries, actions)
            elif flight:  # every open branch waits for a free sequence: step back the newest text
                if len(flight) == 1:
                    raise fail(
                        Errors.E313,
                        branches=self.trie.max_branches,
                        limit=self.backend._n_seq_max - 1,
                    )
                evicted = flight.pop()
                self._leave(evicted)
                queue.appendleft((evicted.index, evicted.variable))
                self.stepped_back = True  # it waits until another text finishes
        self.lib.llama_memory_seq_rm(self.backend._memory, self.keeper, -1, -1)

    def _can_admit(self, length: int, flight: list[_Text]) -> bool:
        if not self.free:
            return False
        if not flight:
            return True  # alone it fits: prompt length was checked against n_ctx
        return (
            not self.stepped_back
            and len(self.free) >= self.reserve + 1
            and length + self.trie.n_decodable <= self.cells_left
        )

    def _admit(self, index: int, variable: list[int]) -> _Text:
        seq = self.free.pop()
        self.cells_left -= len(variable) + self.trie.n_decodable
        self.lib.llama_memory_seq_cp(self.backend._memory, 0, seq, -1, -1)
        text = _Text(
            index,
            variable,
            self.fixed_length + len(variable),
            TrieSearch(self.trie, self.backend.tolerance, self.allowed.get(index)),
            seq,
        )
        text.owner[ROOT] = seq
        text.held.add(seq)
        return text

    def _place(self, text: _Text, node: int) -> int | None:
        """The sequence to decode ``node`` in (None: none free now)."""
        parent = self.trie.nodes[node].parent
        if text.pending[parent] == 1:  # the last child placed takes the parent's sequence over
            seq = text.owner[parent]
        elif self.free:
            seq = self.free.pop()
            text.held.add(seq)
            self.lib.llama_memory_seq_cp(self.backend._memory, text.owner[parent], seq, -1, -1)
        else:
            return None
        text.pending[parent] -= 1
        text.owner[node] = seq
        return seq

    def _absorb(self, text: _Text, node: int, logits: np.ndarray) -> None:
        if node == ROOT:
            text.search.start(log_softmax(logits))
            text.started = True
        else:
            text.search.absorb(node, logits)
        # the children its search may open (a shortlist leaves the other labels' nodes shut)
        text.pending[node] = len(text.search.open_children(node))
        if text.pending[node] == 0:
            self._release(text, text.owner[node])

    def _release(self, text: _Text, seq: int) -> None:
        self.lib.llama_memory_seq_cp(self.backend._memory, seq, self.keeper, -1, -1)
        self.lib.llama_memory_seq_rm(self.backend._memory, seq, -1, -1)
        text.held.discard(seq)
        self.free.append(seq)

    def _leave(self, text: _Text) -> None:
        for seq in list(text.held):
            self._release(text, seq)

    def _decode_round(
        self,
        entries: list[tuple[int, int, Sequence[int], bool]],
        actions: list[tuple[_Text, int] | None],
    ) -> None:
        """Decode a round's entries in as few batches as the batch and logits limits allow."""
        start = 0
        while start < len(entries):
            end, outputs = start, 0
            while (
                end < len(entries)
                and end - start < self.backend._n_batch
                and outputs + entries[end][3] <= self.MAX_OUTPUTS
            ):
                outputs += entries[end][3]
                end += 1
            self.backend._decode(entries[start:end])
            for row in range(start, end):
                action = actions[row]
                if action is not None:
                    self._absorb(action[0], action[1], self.backend._logits(row - start))
            start = end


def _gbnf_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
