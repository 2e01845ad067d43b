"""The interface every LLM runtime implements, and how a model spec picks one.

Model specs: an embedded model name (``qwen2.5-0.5b``, ``smollm2-135m``), a path to a ``.gguf``
file (both run in-process with llama.cpp), or ``openai:URL#MODEL`` for any OpenAI-compatible
server (vLLM, Ollama, llama.cpp server, OpenAI). The runtimes live one module each in
:mod:`stillhouse.llm.backends` and are found by name in :data:`stillhouse.registry.backends`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stillhouse import registry
from stillhouse.guard.privacy import PrivacySettings
from stillhouse.llm.prompts import ChatPrompt

# Where a spec that names no registered backend goes: embedded model names and .gguf paths.
DEFAULT_BACKEND = "llamacpp"


@dataclass(frozen=True)
class Generation:
    """Generated text plus token counts; ``logprob`` is the sum of the generated tokens'
    log-probabilities when the runtime reports them, else None."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    logprob: float | None = None


@dataclass(frozen=True)
class BackendSettings:
    """Runtime settings shared by backends (from task.toml [llm] and the CLI)."""

    n_ctx: int = 4096
    threads: int | None = None
    seed: int = 0
    max_new_tokens: int = 256
    concurrency: int = 4
    timeout_s: float = 120.0
    api_key_env: str = "OPENAI_API_KEY"
    # Label scoring: stop expanding the label trie once the unexpanded labels hold less than
    # this share of the probability mass (0 = score every label exactly).
    score_tolerance: float = 0.05
    # What a backend that sends texts off the process does with personal data ([privacy]).
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """An LLM runtime.

    ``name`` is the runtime (``llamacpp`` / ``openai``); ``model_name`` what the user asked for;
    ``model_sha256`` the model file's hash (or, for a remote server, the URL and model name: the
    best identity available). ``can_score`` says whether :meth:`score_labels` is available.
    """

    name: str
    model_name: str
    model_sha256: str
    can_score: bool

    def score_labels(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        """Log-likelihood of each label as the whole assistant reply (label tokens + end of turn),
        shape ``(len(labels),)``."""
        ...

    def score_labels_many(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str]
    ) -> list[np.ndarray]:
        """:meth:`score_labels` for many prompts at once (batched where the runtime can)."""
        ...

    def score_yes_no(self, prompt: ChatPrompt, labels: Sequence[str]) -> np.ndarray:
        """For each label, P(yes) / (P(yes) + P(no)) after the assistant writes ``"<label>:"``,
        shape ``(len(labels),)``."""
        ...

    def score_yes_no_many(
        self, prompts: Sequence[ChatPrompt], labels: Sequence[str]
    ) -> list[np.ndarray]:
        """:meth:`score_yes_no` for many prompts at once."""
        ...

    def generate(
        self,
        prompt: ChatPrompt,
        *,
        choices: Sequence[str] | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> Generation:
        """Greedy generation of the assistant reply: free, restricted to one of ``choices``
        (grammar), or valid JSON for ``json_schema``."""
        ...

    def truncate(self, text: str, max_tokens: int) -> tuple[str, int]:
        """The text cut to at most ``max_tokens`` tokens (head kept) and its original token count."""
        ...

    def describe(self) -> dict[str, Any]:
        """Runtime, model, file size, parameters: what the run records."""
        ...

    def close(self) -> None: ...


def open_backend(spec: str, settings: BackendSettings) -> Backend:
    """Open the backend for a model spec (see module docstring).

    A spec ``NAME:REST`` whose NAME is a registered backend goes to that backend, any other spec
    to :data:`DEFAULT_BACKEND`; either gets the whole spec. Each backend's opener raises its own
    errors (E311 for a malformed ``openai:`` spec; E301–E304 and E306 for a model llama.cpp cannot
    find or load, E305 for a spec that is neither an embedded model nor a .gguf path).
    """
    name, colon, _ = spec.partition(":")
    opener = registry.backends.get(name) if colon else None
    if opener is None:
        opener = registry.backends.get(DEFAULT_BACKEND)
    return opener(spec, settings)
