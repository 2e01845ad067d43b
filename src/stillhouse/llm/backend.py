"""The interface every LLM runtime implements, and how a model spec picks one.

Model specs: an embedded model name (``qwen2.5-0.5b``, ``smollm2-135m``), a path to a ``.gguf``
file (both run in-process with llama.cpp), or ``openai:URL#MODEL`` for any OpenAI-compatible
server (vLLM, Ollama, llama.cpp server, OpenAI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stillhouse.errors import Errors, fail
from stillhouse.llm.prompts import ChatPrompt


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
    """Open the backend for a model spec (see module docstring)."""
    from stillhouse.llm.models import EMBEDDED_MODELS, check_gguf, resolve_embedded

    if spec.startswith("openai:"):
        from stillhouse.llm.openai import OpenAIBackend, parse_openai_spec

        url, model = parse_openai_spec(spec)
        return OpenAIBackend(url, model, settings)
    from stillhouse.llm.llamacpp import LlamaCppBackend

    if spec in EMBEDDED_MODELS:
        return LlamaCppBackend(resolve_embedded(spec), settings, model_name=spec)
    if spec.endswith(".gguf") or Path(spec).exists():
        return LlamaCppBackend(check_gguf(Path(spec)), settings, model_name=Path(spec).name)
    raise fail(Errors.E305, spec=spec, names=", ".join(EMBEDDED_MODELS))
