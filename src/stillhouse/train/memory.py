"""The memory-estimate refusal (E710): a recipe's estimated peak memory, checked before the
expensive work against the memory there is.

Each recipe estimates its own peak (its module's ``*_bytes`` function) from the shared pieces
here; the estimates are rough upper bounds of what a fit holds at once; a run is refused when its
estimate exceeds 80% of ``TrainSettings.max_memory_gb`` (else the machine's available memory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stillhouse.errors import Errors, fail

if TYPE_CHECKING:
    from stillhouse.train.settings import TrainSettings

# check(needed_bytes, what_it_is_for): raises E710 when the estimate does not fit
MemoryCheck = Callable[[int, str], None]
SHARE = 0.8
# Texts in tokens, before any tokenizer has seen them: a token per 3 characters (en_core_web_sm
# gives 4.8 characters per token on NusaX English; MiniLM's word pieces fewer).
CHARACTERS_PER_TOKEN = 3


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_check(settings: TrainSettings, recipe: str, advice: str) -> MemoryCheck:
    """The check for ``recipe`` under ``settings.max_memory_gb``; ``advice`` (what lowers the
    recipe's estimate) ends the E710 message."""

    def check(needed: int, detail: str) -> None:
        available = (
            settings.max_memory_gb * 1e9
            if settings.max_memory_gb is not None
            else available_memory_bytes()
        )
        if needed > SHARE * available:
            raise fail(
                Errors.E710,
                recipe=recipe,
                needed=size(needed),
                detail=detail,
                available=size(available),
                advice=advice,
            )

    return check


def size(n_bytes: float) -> str:
    """``1.2 GB``, or ``35 MB`` below 0.1 GB (so a small estimate does not read as 0.0 GB)."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.0f} MB"


def transformer_training_bytes(
    *,
    weights: int,
    hidden: int,
    inner: int,
    heads: int,
    layers: int,
    batch: int,
    length: int,
    trainable: int,
    extra: int = 0,
) -> int:
    """Training a transformer in fp32 with a few trainable weights (LoRA): the ``weights``, the
    per-layer activations kept for the backward pass (hidden states, attention scores,
    feed-forward) of ``batch`` × ``length`` tokens, ``extra`` values (e.g. logits), and for each
    ``trainable`` weight its value, gradient and two AdamW moments; 4 bytes each."""
    per_layer = 16 * hidden + 4 * inner + 2 * heads * length
    activations = batch * length * layers * per_layer
    return 4 * (weights + activations + extra + 4 * trainable)


def minilm_config() -> dict[str, Any]:
    """all-MiniLM-L6-v2's transformer config (read as JSON: no torch needed to estimate)."""
    from stillhouse.train.export import base_model_path

    config: dict[str, Any] = json.loads(
        (base_model_path() / "config.json").read_text(encoding="utf-8")
    )
    return config


def minilm_weights(config: dict[str, Any]) -> int:
    """The number of weights of a BERT transformer with this config (embeddings, layers, pooler)."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    rows = config["vocab_size"] + config["max_position_embeddings"] + config["type_vocab_size"]
    return (
        rows * hidden
        + config["num_hidden_layers"] * (4 * hidden**2 + 2 * hidden * inner)
        + hidden**2
    )
