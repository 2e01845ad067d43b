"""Recipe `encoder`: all-MiniLM-L6-v2 sentence embeddings, logistic-regression head.

The encoder ships inside the model folder as ONNX (int8 with per-channel weights by default,
or fp32 with ``--quantize none``) with its ``tokenizer.json``, so inference needs ONNX Runtime
and `tokenizers` only. The head is trained on the embeddings of that very ONNX file, so what
is measured at training time is what runs in production.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stillhouse import registry
from stillhouse.train.export import (
    BASE_LICENSE,
    BASE_MODEL,
    QUANTIZATIONS,
    base_model_path,
    copy_into,
    exported_encoder,
)
from stillhouse.train.head import LinearHead, lbfgs_memory_bytes, load_arrays, save_arrays
from stillhouse.train.memory import minilm_config
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, HeadFitter, Plan, Recipe, params_to_json
from stillhouse.train.recipes.parts.onnx_encoder import (
    DIMENSION,
    MAX_TOKENS,
    OnnxSentenceEncoder,
)

FILES = ("encoder.onnx", "tokenizer.json", "head.safetensors")


@dataclass(frozen=True)
class EncoderParams:
    """Hyper-parameters of the encoder recipe (recorded in the card)."""

    c: float = 10.0
    max_iter: int = 2000
    quantize: str = "int8"
    batch_size: int = 32


class EncoderModel:
    """ONNX sentence encoder + head; ``logits(texts)`` of shape (n, k)."""

    recipe = "encoder"

    def __init__(
        self,
        encoder: OnnxSentenceEncoder,
        head: LinearHead,
        params: EncoderParams,
        onnx_path: Path,
        tokenizer_path: Path,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.params = params
        self._onnx_path = onnx_path
        self._tokenizer_path = tokenizer_path

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.logits(self.encoder.embed(texts, batch_size=self.params.batch_size))

    def save(self, folder: Path) -> None:
        save_onnx_with_head(folder, self._onnx_path, self._tokenizer_path, self.head)

    @classmethod
    def load(
        cls, folder: Path, hyper_parameters: dict[str, Any], threads: int | None = None
    ) -> EncoderModel:
        encoder, head = load_onnx_with_head(folder, threads)
        return cls(
            encoder,
            head,
            EncoderParams(**hyper_parameters),
            folder / "encoder.onnx",
            folder / "tokenizer.json",
        )


def open_encoder(
    params: EncoderParams, threads: int | None = None
) -> tuple[OnnxSentenceEncoder, Path, Path]:
    """The (cached) exported encoder for ``params.quantize``, its file and the tokenizer file."""
    onnx_path = exported_encoder(params.quantize)
    tokenizer_path = base_model_path() / "tokenizer.json"
    return OnnxSentenceEncoder(onnx_path, tokenizer_path, threads), onnx_path, tokenizer_path


def fit_encoder(
    features: np.ndarray,
    targets: np.ndarray,
    n_labels: int,
    weights: np.ndarray,
    params: EncoderParams,
    encoder: tuple[OnnxSentenceEncoder, Path, Path],
    head_fitter: HeadFitter,
) -> EncoderModel:
    """Fit the head (``head_fitter``, signature of :func:`~stillhouse.train.head.fit_head`) on
    precomputed embeddings ``features`` (shape (n, 384)) of the texts."""
    head = head_fitter(features, targets, n_labels, weights, c=params.c, max_iter=params.max_iter)
    return EncoderModel(encoder[0], head, params, encoder[1], encoder[2])


EmbedProgress = Callable[[int, int], None]


def save_onnx_with_head(
    folder: Path, onnx_path: Path, tokenizer_path: Path, head: LinearHead
) -> None:
    """The files of an ONNX sentence encoder with a linear head, as every encoder recipe saves them."""
    copy_into(onnx_path, folder, "encoder.onnx")
    copy_into(tokenizer_path, folder, "tokenizer.json")
    save_arrays(folder / "head.safetensors", head.arrays())


def load_onnx_with_head(
    folder: Path, threads: int | None = None
) -> tuple[OnnxSentenceEncoder, LinearHead]:
    """The encoder and head saved by :func:`save_onnx_with_head`."""
    encoder = OnnxSentenceEncoder(folder / "encoder.onnx", folder / "tokenizer.json", threads)
    return encoder, LinearHead.from_arrays(load_arrays(folder / "head.safetensors"))


def encoder_bytes(n_texts: int, n_labels: int, params: EncoderParams) -> tuple[int, str]:
    """The encoder recipe: the float32 embeddings of every text, the head's L-BFGS working
    memory (:func:`lbfgs_memory_bytes`, with scikit-learn's float64 copy of the embeddings), and
    the ONNX session (its weights, and one layer's activations for a batch of the longest texts)."""
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


class MiniLMRecipe(Recipe):
    """What the recipes built on all-MiniLM-L6-v2 share: the base model the card names, the
    ONNX quantizations and runtime."""

    base: ClassVar[dict[str, str] | None] = {"name": BASE_MODEL, "license": BASE_LICENSE}
    quantizations = QUANTIZATIONS
    languages: ClassVar[tuple[str, ...] | None] = ("en",)  # an English sentence encoder

    def quantize_advice(self, quantize: str) -> str:
        if quantize in ("q8_0", "q4_k_m"):
            return "q8_0 and q4_k_m are for the lora-llm recipe"
        return super().quantize_advice(quantize)


class Encoder(MiniLMRecipe):
    """all-MiniLM-L6-v2 embeddings (ONNX) and a logistic head (classify: multinomial;
    multilabel: one-vs-rest)."""

    name = "encoder"
    kinds = ("classify", "multilabel")
    order = 20
    memory_advice = "use fewer labels or examples"

    def plan(self, fitting: Fitting) -> Plan:
        settings, texts = fitting.settings, fitting.texts
        params = EncoderParams(
            c=settings.c or EncoderParams.c, quantize=settings.quantize or "int8"
        )
        self.memory_check(settings)(*encoder_bytes(len(texts), fitting.n_labels, params))
        fitting.say(f"embedding {len(texts)} texts with all-MiniLM-L6-v2 (ONNX, {params.quantize})")
        encoder = open_encoder(params, settings.threads)
        features = encoder[0].embed(texts, batch_size=params.batch_size, progress=fitting.progress)

        def fit_rows(rows: np.ndarray) -> Scorer:
            return fit_encoder(
                features[rows],
                fitting.targets[rows],
                fitting.n_labels,
                fitting.weights[rows],
                params,
                encoder,
                fitting.head,
            )

        return Plan(fit_rows, params_to_json(params))

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return EncoderModel.load(folder, card["hyper_parameters"], threads)


registry.recipes.register("encoder")(Encoder())
