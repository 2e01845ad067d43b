"""Recipe `encoder-ngrams`: all-MiniLM-L6-v2 embeddings beside the TF-IDF n-grams of `linear`.

One logistic head reads ``[word n-grams | character n-grams | w · embedding]``: each n-gram
block unit length (as in `linear`), the sentence embedding unit length times
``encoder_weight``. The n-grams see the words, the encoder what they mean: on the
prompt-injection corpus the encoder alone is the weaker detector but catches other attacks than
the n-grams do (fake assistant turns, spelled-out and encoded payloads), and the two together
flag 6 points more held-out attacks at the same ≤ 1% false-positive rule (0.785 → 0.847,
bench/RESULTS.md, "guard: a second detector"). ``encoder_weight`` 2 is what was measured there
("guard: a sentence encoder beside the n-grams"): at 1 it caught more but the threshold chosen
on the valid split let 1.4% of clean test texts through; it is not tuned for other tasks.

Texts are embedded one at a time (``batch_size`` 1): the int8 graph quantizes activations with
one scale per batch, so in a batch a text's vector moves with its batch mates (cosine ≥ 0.97,
:mod:`.parts.onnx_encoder`); alone, a text gets the same score in training, in a batch job and
behind a micro-batching server. The model folder holds ``encoder.onnx``, ``tokenizer.json``,
``vocabulary.json`` and ``head.safetensors`` (the head and the n-grams' idf).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from stillhouse import registry
from stillhouse.train.export import copy_into
from stillhouse.train.head import LinearHead, lbfgs_memory_bytes, load_arrays, save_arrays
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, Plan, params_to_json
from stillhouse.train.recipes.encoder import (
    EncoderParams,
    MiniLMRecipe,
    encoder_bytes,
    open_encoder,
)
from stillhouse.train.recipes.linear import (
    LinearParams,
    Tfidf,
    fit_vectorizers,
    load_vectorizers,
    save_vocabularies,
)
from stillhouse.train.recipes.parts.onnx_encoder import OnnxSentenceEncoder
from stillhouse.train.settings import CHAR_NGRAMS, WORD_NGRAMS

HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class EncoderNgramsParams:
    """Hyper-parameters of the encoder-ngrams recipe (recorded in the card)."""

    c: float = 10.0
    max_iter: int = 2000
    word_ngrams: tuple[int, int] | None = WORD_NGRAMS
    char_ngrams: tuple[int, int] | None = CHAR_NGRAMS
    max_features: int | None = None
    quantize: str = "int8"
    encoder_weight: float = 2.0
    batch_size: int = 1

    @property
    def ngrams(self) -> LinearParams:
        """The n-gram part, as the linear recipe's parameters."""
        return LinearParams(
            c=self.c,
            max_iter=self.max_iter,
            word_ngrams=self.word_ngrams,
            char_ngrams=self.char_ngrams,
            max_features=self.max_features,
        )

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> EncoderNgramsParams:
        return cls(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})


class EncoderNgramsModel:
    """ONNX sentence encoder + TF-IDF vectorizers + one head; ``logits(texts)``."""

    recipe = "encoder-ngrams"

    def __init__(
        self,
        encoder: OnnxSentenceEncoder,
        vectorizers: dict[str, Any],
        head: LinearHead,
        params: EncoderNgramsParams,
        files: tuple[Path, Path],
    ) -> None:
        self.encoder = encoder
        self.vectorizers = vectorizers
        self.head = head
        self.params = params
        self._files = files  # the ONNX file and the tokenizer file
        self._tfidf = [Tfidf(vectorizer) for vectorizer in vectorizers.values()]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.embed(texts, batch_size=self.params.batch_size)

    def features(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> Any:
        """The head's input (the embeddings computed unless given)."""
        dense = self.embed(texts) if embeddings is None else embeddings
        return join(dense, [tfidf(texts) for tfidf in self._tfidf], self.params.encoder_weight)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.logits(self.features(texts))

    def save(self, folder: Path) -> None:
        copy_into(self._files[0], folder, "encoder.onnx")
        copy_into(self._files[1], folder, "tokenizer.json")
        arrays = self.head.arrays()
        save_vocabularies(folder, self.vectorizers, arrays)
        save_arrays(folder / HEAD_FILE, arrays)

    @classmethod
    def load(
        cls, folder: Path, hyper_parameters: dict[str, Any], threads: int | None
    ) -> EncoderNgramsModel:
        params = EncoderNgramsParams.from_json(hyper_parameters)
        arrays = load_arrays(folder / HEAD_FILE)
        vectorizers = load_vectorizers(folder, params.ngrams, arrays)
        files = (folder / "encoder.onnx", folder / "tokenizer.json")
        encoder = OnnxSentenceEncoder(*files, threads)
        return cls(encoder, vectorizers, LinearHead.from_arrays(arrays), params, files)


def join(embeddings: np.ndarray, ngrams: list[sp.csr_matrix], weight: float) -> sp.csr_matrix:
    """``[n-gram blocks | weight · embeddings]`` as one sparse matrix."""
    return sp.hstack([*ngrams, sp.csr_matrix(weight * embeddings)], format="csr")


class EncoderNgrams(MiniLMRecipe):
    """all-MiniLM-L6-v2 embeddings (ONNX, one text at a time) beside the `linear` recipe's
    n-grams, one logistic head."""

    name = "encoder-ngrams"
    kinds = ("classify",)
    order = 21
    reads_ngrams = True
    memory_advice = "use fewer labels or examples, or cap the TF-IDF vocabulary (max_features)"

    def plan(self, fitting: Fitting) -> Plan:
        settings, texts = fitting.settings, fitting.texts
        params = EncoderNgramsParams(
            c=settings.c or EncoderNgramsParams.c,
            word_ngrams=settings.word_ngrams,
            char_ngrams=settings.char_ngrams,
            max_features=settings.max_features,
            quantize=settings.quantize or "int8",
        )
        check = self.memory_check(settings)
        check(*encoder_bytes(len(texts), fitting.n_labels, EncoderParams(quantize=params.quantize)))
        fitting.say(
            f"embedding {len(texts)} texts one at a time with all-MiniLM-L6-v2 "
            f"(ONNX, {params.quantize}) beside their n-grams"
        )
        encoder, onnx_path, tokenizer_path = open_encoder(
            EncoderParams(quantize=params.quantize), settings.threads
        )
        embeddings = encoder.embed(texts, batch_size=params.batch_size, progress=fitting.progress)

        def fit_rows(rows: np.ndarray) -> Scorer:
            vectorizers, ngrams = fit_vectorizers([texts[i] for i in rows], params.ngrams)
            features = join(embeddings[rows], [ngrams], params.encoder_weight)
            check(
                lbfgs_memory_bytes(
                    fitting.n_labels,
                    features.shape[1],
                    features.data.nbytes + features.indices.nbytes,
                ),
                f"{fitting.n_labels} labels × {features.shape[1]:,} features",
            )
            head = fitting.head_on(rows, features, c=params.c, max_iter=params.max_iter)
            files = (onnx_path, tokenizer_path)
            return EncoderNgramsModel(encoder, vectorizers, head, params, files)

        return Plan(fit_rows, params_to_json(params))

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return EncoderNgramsModel.load(folder, card["hyper_parameters"], threads)


registry.recipes.register("encoder-ngrams")(EncoderNgrams())
