"""Recipes `llm-embed` and `llm-embed-ngrams`: the task's GGUF LLM as a multilingual encoder.

The task's ``[llm] model`` (an embedded model such as ``qwen2.5-0.5b`` or a ``.gguf`` path) is
cut to its first ``layers`` transformer blocks and run by llama.cpp in embedding mode
(:mod:`.parts.llm_embedder`): the mean of that layer's hidden states over the text's first
``max_tokens`` tokens, unit length, feeds the calibrated logistic head. ``llm-embed-ngrams``
concatenates the TF-IDF character 2–5-grams of the `linear` recipe (each block unit length), so
the head sees both what the LLM knows of the language and the surface forms of the training
data.

Why: the `encoder` recipe's all-MiniLM-L6-v2 is English-only; the LLM has seen far more
languages (Qwen2.5: 29+), and no packaged multilingual sentence encoder usable here was found on
PyPI (bench/RESULTS.md, "Multilingual"). What it costs: llama.cpp runs ~1 GFLOP per token for a
0.5B model, so even cut to a quarter of its blocks it embeds a few texts per second on 2 cores
(bench/multilingual.py measures it).

The model folder holds ``model.gguf`` (the cut model: token embeddings, the kept blocks, the
final norm; quantized as the base was), ``head.safetensors`` and, for ``llm-embed-ngrams``,
``vocabulary.json`` (the character n-grams; their idf is in ``head.safetensors``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from stillhouse import registry
from stillhouse.train.export import copy_into
from stillhouse.train.head import LinearHead, lbfgs_memory_bytes, load_arrays, save_arrays
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, Plan, Recipe, params_to_json
from stillhouse.train.recipes.linear import Tfidf
from stillhouse.train.recipes.parts.llm_embedder import (
    LlamaEmbedder,
    block_count,
    cached_truncation,
)

MODEL_FILE = "model.gguf"
HEAD_FILE = "head.safetensors"
VOCABULARY_FILE = "vocabulary.json"
# The share of the model's blocks kept when none is given: a quarter of Qwen2.5-0.5B's 24 is 6,
# ~4× cheaper than the whole model (bench/RESULTS.md, "Multilingual", for what it buys).
DEFAULT_LAYER_SHARE = 0.25


@dataclass(frozen=True)
class LlmEmbedParams:
    """Hyper-parameters of the llm-embed recipes (recorded in the card). ``layers``: blocks
    kept (None: :data:`DEFAULT_LAYER_SHARE` of the model's); ``char_ngrams``: the character
    n-gram range concatenated (None: embeddings alone)."""

    c: float = 10.0
    max_iter: int = 2000
    layers: int | None = None
    max_tokens: int = 64
    char_ngrams: tuple[int, int] | None = None


def default_layers(total: int) -> int:
    """The blocks kept by default of a model with ``total`` blocks."""
    return max(1, round(total * DEFAULT_LAYER_SHARE))


def _char_vectorizer(ngrams: tuple[int, int]) -> TfidfVectorizer:
    """The `linear` recipe's character n-gram vectorizer (within word boundaries)."""
    return TfidfVectorizer(
        analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True, lowercase=True, dtype=np.float32
    )


class LlmEmbedModel:
    """Cut GGUF model (llama.cpp) + optional character n-grams + head; ``logits(texts)``."""

    def __init__(
        self,
        recipe: str,
        embedder: LlamaEmbedder,
        head: LinearHead,
        params: LlmEmbedParams,
        vectorizer: TfidfVectorizer | None,
    ) -> None:
        self.recipe = recipe
        self.embedder = embedder
        self.head = head
        self.params = params
        self.vectorizer = vectorizer
        self._tfidf = Tfidf(vectorizer) if vectorizer is not None else None

    def features(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> Any:
        """The head's input: the embeddings (computed unless given), and the n-grams after them."""
        dense = self.embedder.embed(texts) if embeddings is None else embeddings
        return join_features(dense, self._tfidf(texts) if self._tfidf is not None else None)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.logits(self.features(texts))

    def save(self, folder: Path) -> None:
        copy_into(self.embedder.path, folder, MODEL_FILE)
        arrays = self.head.arrays()
        if self.vectorizer is not None:
            terms = [""] * len(self.vectorizer.vocabulary_)
            for term, column in self.vectorizer.vocabulary_.items():
                terms[column] = term
            text = json.dumps({"char": terms}, ensure_ascii=False, separators=(",", ":"))
            (folder / VOCABULARY_FILE).write_text(text, encoding="utf-8")
            arrays["char.idf"] = self.vectorizer.idf_.astype(np.float32)
        save_arrays(folder / HEAD_FILE, arrays)

    @classmethod
    def load(
        cls, recipe: str, folder: Path, hyper_parameters: dict[str, Any], threads: int | None
    ) -> LlmEmbedModel:
        params = params_from_json(hyper_parameters)
        arrays = load_arrays(folder / HEAD_FILE)
        vectorizer = None
        if params.char_ngrams is not None:
            terms = json.loads((folder / VOCABULARY_FILE).read_text(encoding="utf-8"))["char"]
            vectorizer = _char_vectorizer(params.char_ngrams)
            vectorizer.set_params(vocabulary={term: column for column, term in enumerate(terms)})
            vectorizer.idf_ = arrays["char.idf"]
        embedder = LlamaEmbedder(folder / MODEL_FILE, params.max_tokens, threads)
        return cls(recipe, embedder, LinearHead.from_arrays(arrays), params, vectorizer)


def join_features(embeddings: np.ndarray, ngrams: sp.csr_matrix | None) -> Any:
    """The embeddings alone, or [embeddings | n-grams] as one sparse matrix (both unit rows)."""
    if ngrams is None:
        return embeddings
    return sp.hstack([sp.csr_matrix(embeddings), ngrams], format="csr")


def _local_base(model: str, recipe: str) -> Any:
    """The task's [llm] model as a verified local GGUF (lora-llm's BaseModel); E753 when it is
    remote or not a GGUF."""
    from stillhouse.errors import Errors, StillhouseError, fail
    from stillhouse.llm.models import EMBEDDED_MODELS
    from stillhouse.train.recipes.lora_llm import resolve_base

    try:
        return resolve_base(model)
    except StillhouseError as error:
        if error.code != "E730":
            raise
        raise fail(
            Errors.E753, recipe=recipe, model=model, names=", ".join(EMBEDDED_MODELS)
        ) from None


def params_from_json(values: dict[str, Any]) -> LlmEmbedParams:
    ngrams = values.get("char_ngrams")
    return LlmEmbedParams(**{**values, "char_ngrams": tuple(ngrams) if ngrams else None})


class LlmEmbed(Recipe):
    """Hidden states of the task's GGUF LLM (llama.cpp, cut to ``layers`` blocks) and a
    logistic head; ``llm-embed-ngrams`` adds the character n-grams."""

    name = "llm-embed"
    kinds = ("classify",)
    order = 30
    runtime = "llama.cpp"
    memory_advice = "use fewer examples, or the linear recipe (no LLM features)"
    # None: any language the task's LLM was trained on (no English-only encoder inside)
    languages: ClassVar[tuple[str, ...] | None] = None
    char_ngrams: ClassVar[tuple[int, int] | None] = None

    def __init__(self) -> None:
        self._base: dict[str, str] | None = None

    def plan(self, fitting: Fitting) -> Plan:
        settings, texts = fitting.settings, fitting.texts
        base = _local_base(fitting.task.llm.model, self.name)
        total = block_count(base.path)
        layers = default_layers(total)
        params = LlmEmbedParams(
            c=settings.c or LlmEmbedParams.c, layers=layers, char_ngrams=self.char_ngrams
        )
        path = cached_truncation(base.path, base.sha256, layers)
        dimension_guess = 4096  # the hidden size is known once loaded; an upper bound for 0.5–1B
        self.memory_check(settings)(
            path.stat().st_size
            + 4 * len(texts) * dimension_guess
            + lbfgs_memory_bytes(
                fitting.n_labels, dimension_guess, 4 * len(texts) * dimension_guess
            ),
            f"{len(texts):,} texts × the LLM's hidden size, the cut model ({layers} blocks)",
        )
        fitting.say(
            f"embedding {len(texts)} texts with {base.name} cut to {layers} of {total} blocks "
            f"(llama.cpp, first {params.max_tokens} tokens)"
        )
        embedder = LlamaEmbedder(path, params.max_tokens, settings.threads)
        embeddings = embedder.embed(texts, progress=fitting.progress)
        self._base = {**base.to_json(), "blocks_kept": f"{layers} of {total}"}

        def fit_rows(rows: np.ndarray) -> Scorer:
            vectorizer = None
            ngrams = None
            if params.char_ngrams is not None:
                vectorizer = _char_vectorizer(params.char_ngrams)
                ngrams = vectorizer.fit_transform([texts[i] for i in rows])
            features = join_features(embeddings[rows], ngrams)
            head = fitting.head_on(rows, features, c=params.c, max_iter=params.max_iter)
            return LlmEmbedModel(self.name, embedder, head, params, vectorizer)

        return Plan(fit_rows, params_to_json(params))

    def base_model(self, model: Any) -> dict[str, str] | None:
        return self._base

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return LlmEmbedModel.load(self.name, folder, card["hyper_parameters"], threads)


class LlmEmbedNgrams(LlmEmbed):
    """`llm-embed` with the character 2–5-grams of `linear` concatenated."""

    name = "llm-embed-ngrams"
    order = 31
    char_ngrams = (2, 5)


registry.recipes.register("llm-embed")(LlmEmbed())
registry.recipes.register("llm-embed-ngrams")(LlmEmbedNgrams())
