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
from typing import Any

import numpy as np

from stillhouse.train.export import base_model_path, copy_into, exported_encoder
from stillhouse.train.head import LinearHead, fit_head, load_arrays, save_arrays
from stillhouse.train.onnx_encoder import OnnxSentenceEncoder

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
    y_index: np.ndarray,
    n_labels: int,
    weights: np.ndarray,
    params: EncoderParams,
    encoder: tuple[OnnxSentenceEncoder, Path, Path],
) -> EncoderModel:
    """Fit the head on precomputed embeddings ``features`` (shape (n, 384)) of the texts."""
    head = fit_head(features, y_index, n_labels, weights, c=params.c, max_iter=params.max_iter)
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
