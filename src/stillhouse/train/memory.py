"""The memory-estimate refusal (E710): a recipe's estimated peak memory, checked before the
expensive work against the memory there is.

The estimates are rough upper bounds of what a fit holds at once; a run is refused when its
estimate exceeds 80% of ``TrainSettings.max_memory_gb`` (else the machine's available memory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stillhouse.errors import Errors, fail
from stillhouse.train.head import lbfgs_memory_bytes

if TYPE_CHECKING:
    from stillhouse.train.contrastive import ContrastiveParams
    from stillhouse.train.encoder import EncoderParams
    from stillhouse.train.lora_encoder import LoraEncoderParams
    from stillhouse.train.run import TrainSettings

# check(needed_bytes, what_it_is_for): raises E710 when the estimate does not fit
MemoryCheck = Callable[[int, str], None]
SHARE = 0.8
# What lowers each recipe's estimate (the end of the E710 message).
ADVICE = {
    "linear": "use fewer labels or examples, or cap the TF-IDF vocabulary (max_features)",
    "encoder": "use fewer labels or examples",
    "contrastive-encoder": "use the encoder recipe (no fine-tuning) or a machine with more memory",
    "lora-encoder": "use the encoder recipe (no fine-tuning) or a machine with more memory",
    "lora-llm": "set a smaller [llm] model in the task, or use a recipe that does not fine-tune "
    "the LLM (linear, encoder)",
    "spacy-ner": "use fewer or shorter training texts",
}
# spacy-ner: a training Example (two Docs) takes ~505 bytes per token with en_core_web_sm's
# tokenizer (measured on NusaX English, 4.8 characters per token); counted: 600 bytes per token
# and a token per 3 characters.
EXAMPLE_BYTES_PER_TOKEN = 600
CHARACTERS_PER_TOKEN = 3
# spacy-ner: spaCy's and thinc's working buffers, the held-out predictions after each epoch and
# the speed measurement at the end, not counted above (on 320 presidio texts the run peaked
# ~80 MB above the loaded pipeline against 65 MB counted without this: bench/memory_estimates.py)
SPACY_WORKING_BYTES = 64 * 10**6


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


def memory_check(settings: TrainSettings, recipe: str | None = None) -> MemoryCheck:
    """The check for ``recipe`` (default ``settings.recipe``) under ``settings.max_memory_gb``."""
    name = recipe or settings.recipe

    def check(needed: int, detail: str) -> None:
        available = (
            settings.max_memory_gb * 1e9
            if settings.max_memory_gb is not None
            else available_memory_bytes()
        )
        if needed > SHARE * available:
            raise fail(
                Errors.E710,
                recipe=name,
                needed=size(needed),
                detail=detail,
                available=size(available),
                advice=ADVICE.get(name, "use fewer examples"),
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


def encoder_bytes(n_texts: int, n_labels: int, params: EncoderParams) -> tuple[int, str]:
    """The encoder recipe: the float32 embeddings of every text, the head's L-BFGS working
    memory (:func:`lbfgs_memory_bytes`, with scikit-learn's float64 copy of the embeddings), and
    the ONNX session (its weights, and one layer's activations for a batch of the longest texts)."""
    from stillhouse.train.export import base_model_path
    from stillhouse.train.onnx_encoder import DIMENSION, MAX_TOKENS

    config = minilm_config()
    embeddings = 4 * n_texts * DIMENSION
    head = lbfgs_memory_bytes(n_labels, DIMENSION, embeddings)
    weights = (base_model_path() / "model.safetensors").stat().st_size
    session = weights // 4 if params.quantize == "int8" else weights
    session += (
        4
        * params.batch_size
        * MAX_TOKENS
        * (4 * config["hidden_size"] + config["intermediate_size"])
        + 4 * params.batch_size * config["num_attention_heads"] * MAX_TOKENS**2
    )
    detail = (
        f"{n_texts:,} texts × {DIMENSION} embeddings, a {n_labels}-label head and the ONNX "
        f"encoder ({params.quantize})"
    )
    return embeddings + head + session, detail


def minilm_weights(config: dict[str, Any]) -> int:
    """The number of weights of a BERT transformer with this config (embeddings, layers, pooler)."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    rows = config["vocab_size"] + config["max_position_embeddings"] + config["type_vocab_size"]
    return (
        rows * hidden
        + config["num_hidden_layers"] * (4 * hidden**2 + 2 * hidden * inner)
        + hidden**2
    )


def contrastive_bytes(
    texts: Sequence[str], n_labels: int, params: ContrastiveParams
) -> tuple[int, str]:
    """The contrastive-encoder recipe: fp32 MiniLM weights, all of them trained (value, gradient,
    AdamW's two moments), activations of a batch of pairs (2 × batch texts as long as the
    longest text, a token per 3 characters, at most SetFit's 256) through every layer
    (:func:`transformer_training_bytes`), then the `encoder` recipe's embeddings, head and ONNX
    session (:func:`encoder_bytes`). NusaX English (500 texts, the longest 189 tokens): 3.1 GB
    counted, 1.7 GB measured (peak RSS of a whole 40-step run: bench/memory_estimates.py)."""
    from stillhouse.train.encoder import EncoderParams

    config = minilm_config()
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers = config["num_hidden_layers"]
    weights = minilm_weights(config)
    length = min(256, max((len(text) // CHARACTERS_PER_TOKEN + 2 for text in texts), default=2))
    training = transformer_training_bytes(
        weights=weights,
        hidden=hidden,
        inner=inner,
        heads=config["num_attention_heads"],
        layers=layers,
        batch=2 * params.pairs_per_step,
        length=length,
        trainable=weights,
    )
    serving, _ = encoder_bytes(len(texts), n_labels, EncoderParams(quantize=params.quantize))
    detail = (
        f"contrastive training of all-MiniLM-L6-v2 ({params.pairs_per_step} pairs × {length} "
        f"tokens, every weight trained) and a {n_labels}-label head"
    )
    return training + serving, detail


def lora_encoder_bytes(n_texts: int, n_labels: int, params: LoraEncoderParams) -> tuple[int, str]:
    """The lora-encoder recipe: fp32 MiniLM weights, activations of batch × ``max_length``
    tokens through every layer, the LoRA adapters' and the head's optimizer state
    (:func:`transformer_training_bytes`, shared with lora-llm), plus the linear probe's
    embeddings and L-BFGS head."""
    from stillhouse.train.onnx_encoder import DIMENSION

    config = minilm_config()
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers = config["num_hidden_layers"]
    weights = minilm_weights(config)
    # in + out features of each module a target name matches in one BERT layer
    matched = {
        "query": 2 * hidden,
        "key": 2 * hidden,
        "value": 2 * hidden,
        "dense": 2 * hidden + 2 * (hidden + inner),  # attention output, intermediate, output
    }
    lora = layers * params.rank * sum(matched.get(name, 0) for name in params.target_modules)
    probe = 4 * n_texts * DIMENSION
    needed = (
        transformer_training_bytes(
            weights=weights,
            hidden=hidden,
            inner=inner,
            heads=config["num_attention_heads"],
            layers=layers,
            batch=params.batch_size,
            length=params.max_length,
            trainable=lora + n_labels * (hidden + 1),
        )
        + probe
        + lbfgs_memory_bytes(n_labels, DIMENSION, probe)
    )
    detail = (
        f"LoRA training of all-MiniLM-L6-v2 (batch {params.batch_size} × {params.max_length} "
        f"tokens, {n_labels} labels)"
    )
    return needed, detail


def spacy_ner_bytes(
    parameters: int, width: int, texts: Sequence[str], batch_size: int
) -> tuple[int, str]:
    """The spacy-ner recipe: the NER's ``parameters`` (float32) with their gradients and Adam's
    two moments, and two serialised copies (the best epoch's and the current one); the
    training Examples; the activations of a batch of the longest texts, counted as
    ``64 × width`` floats per token — more than en_core_web_sm's NER keeps (4 hash embeddings
    of width 96, a 4-layer maxout window encoder of 3 pieces and the parser's state features:
    ~45 × width); and ``SPACY_WORKING_BYTES``. The pipeline itself is loaded by then (~40 MB)."""
    tokens = [len(text) // CHARACTERS_PER_TOKEN + 1 for text in texts]
    longest = sorted(tokens, reverse=True)[:batch_size]
    weights = 4 * parameters * (4 + 2)
    examples = EXAMPLE_BYTES_PER_TOKEN * sum(tokens)
    activations = 4 * 64 * width * sum(longest)
    detail = (
        f"spaCy NER training ({parameters:,} weights, {len(texts):,} texts of about "
        f"{sum(tokens):,} tokens, batch {batch_size})"
    )
    return weights + examples + activations + SPACY_WORKING_BYTES, detail
