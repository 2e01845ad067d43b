"""Recipe `linear`: TF-IDF word 1–2-grams and character 2–5-grams, logistic regression head.

The fast baseline. Character n-grams (within word boundaries) carry morphology, so it also
works for languages a pretrained English encoder does not know. Either family can be switched
off or given another range (``--word-ngrams``, ``--char-ngrams``): words alone predict 13–19×
faster (scikit-learn's character analyzer is a Python loop over every n-gram), for a point
or two of accuracy (bench/RESULTS.md). Saved as the vocabularies (JSON) and the arrays
(safetensors); loading rebuilds the vectorizers without pickle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from stillhouse import registry
from stillhouse.train.head import LinearHead, fit_head, lbfgs_memory_bytes, load_arrays, save_arrays
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, Plan, Recipe, params_to_json
from stillhouse.train.settings import CHAR_NGRAMS, WORD_NGRAMS, TrainSettings

FILES = ("vocabulary.json", "weights.safetensors")


@dataclass(frozen=True)
class LinearParams:
    """Hyper-parameters of the linear recipe (recorded in the card)."""

    c: float = 10.0
    max_iter: int = 1000
    word_ngrams: tuple[int, int] | None = WORD_NGRAMS  # None: no word n-grams
    char_ngrams: tuple[int, int] | None = CHAR_NGRAMS  # None: no character n-grams
    min_df: int = 1
    max_features: int | None = None


def _vectorizers(params: LinearParams) -> dict[str, TfidfVectorizer]:
    common: dict[str, Any] = {
        "sublinear_tf": True,
        "lowercase": True,
        "dtype": np.float32,
        "min_df": params.min_df,
        "max_features": params.max_features,
    }
    families = {"word": ("word", params.word_ngrams), "char": ("char_wb", params.char_ngrams)}
    return {
        name: TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, **common)
        for name, (analyzer, ngrams) in families.items()
        if ngrams is not None
    }


class Tfidf:
    """A fitted vectorizer's prediction path: ``tfidf(texts)`` equals ``vectorizer.transform``
    for the recipe's settings (sublinear tf, idf, l2 norm) up to float rounding (tested), at a
    fraction of its cost.

    scikit-learn's transform validates its input on every call (most of a small call's time)
    and counts terms in a Python loop that raises and catches a ``KeyError`` for every term
    outside the vocabulary. Here terms are looked up in one ``map`` of ``dict.get`` over the
    batch and counted by scipy with 32-bit indices (64-bit ones cost scipy a conversion on
    every call); word tokens come from one regular expression
    without scikit-learn's word-boundary checks (same tokens). Measured in
    bench/featurize_cost.py and bench/train.py (bench/RESULTS.md)."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.vectorizer = vectorizer
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float32)
        default_words = (
            vectorizer.analyzer == "word"
            and vectorizer.token_pattern == DEFAULT_TOKEN_PATTERN
            and vectorizer.tokenizer is None
            and vectorizer.preprocessor is None
            and vectorizer.stop_words is None
            and vectorizer.lowercase
            and vectorizer.strip_accents is None
        )
        self.terms = (
            _word_terms(vectorizer.ngram_range) if default_words else vectorizer.build_analyzer()
        )

    def __call__(self, texts: Sequence[str]) -> sp.csr_matrix:
        counts = self.counts(texts)
        data = counts.data
        np.log(data, out=data)
        data += 1.0
        data *= self.idf[counts.indices]
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=counts.shape[0]))
        data /= norms[rows]
        return counts

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Term counts, float32, one row per text, sorted column indices (CountVectorizer's)."""
        per_text = [self.terms(text) for text in texts]
        flat = list(chain.from_iterable(per_text))
        columns = np.fromiter(map(self.vocabulary.get, flat, repeat(-1)), np.int32, len(flat))
        known = columns >= 0
        lengths = np.fromiter(map(len, per_text), np.int64, len(per_text))
        rows = np.repeat(np.arange(len(per_text)), lengths)[known]
        indptr = np.zeros(len(per_text) + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=len(per_text)), out=indptr[1:])
        counts = sp.csr_matrix(
            (np.ones(rows.size, np.float32), columns[known], indptr),
            shape=(len(per_text), len(self.vocabulary)),
        )
        counts.sum_duplicates()
        return counts


DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# Finds the same tokens in the same order: a match of \w\w+ can only start where a run of word
# characters starts (a later start means the earlier one failed, i.e. a run of one character)
# and, greedy, ends where the run ends. It skips the \b checks, which cost time.
_WORDS = re.compile(r"\w\w+")


def _word_terms(ngram_range: tuple[int, int]) -> Callable[[str], list[str]]:
    """scikit-learn's word analyzer for the default token pattern, lowercase, no stop words:
    the same terms in the same order (tested)."""
    findall = _WORDS.findall
    low, high = ngram_range

    def terms(text: str) -> list[str]:
        tokens = findall(text.lower())
        if high == 1:
            return tokens
        grams = tokens[:] if low == 1 else []
        for n in range(max(low, 2), high + 1):
            grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return grams

    return terms


class LinearModel:
    """Fitted TF-IDF vectorizers and head; ``logits(texts)`` of shape (n, k)."""

    recipe = "linear"

    def __init__(
        self, vectorizers: dict[str, TfidfVectorizer], head: LinearHead, params: LinearParams
    ) -> None:
        self.vectorizers = vectorizers
        self.head = head
        self.params = params
        self._tfidf = [Tfidf(vectorizer) for vectorizer in vectorizers.values()]

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        blocks = [tfidf(texts) for tfidf in self._tfidf]
        return blocks[0] if len(blocks) == 1 else sp.hstack(blocks, format="csr")

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.logits(self.features(texts))

    def save(self, folder: Path) -> None:
        arrays = self.head.arrays()
        save_vocabularies(folder, self.vectorizers, arrays)
        save_arrays(folder / "weights.safetensors", arrays)

    @classmethod
    def load(cls, folder: Path, hyper_parameters: dict[str, Any]) -> LinearModel:
        params = LinearParams(
            **{
                key: tuple(value) if isinstance(value, list) else value
                for key, value in hyper_parameters.items()
            }
        )
        arrays = load_arrays(folder / "weights.safetensors")
        vectorizers = load_vectorizers(folder, params, arrays)
        return cls(vectorizers, LinearHead.from_arrays(arrays), params)


def save_vocabularies(
    folder: Path, vectorizers: dict[str, TfidfVectorizer], arrays: dict[str, np.ndarray]
) -> None:
    """Write the fitted vectorizers' vocabularies to ``vocabulary.json`` and put their idf
    vectors into ``arrays`` (saved by the caller with the head's)."""
    vocabularies = {}
    for name, vectorizer in vectorizers.items():
        terms = [""] * len(vectorizer.vocabulary_)
        for term, column in vectorizer.vocabulary_.items():
            terms[column] = term
        vocabularies[name] = terms
        arrays[f"{name}.idf"] = vectorizer.idf_.astype(np.float32)
    text = json.dumps(vocabularies, ensure_ascii=False, separators=(",", ":"))
    (folder / "vocabulary.json").write_text(text, encoding="utf-8")


def load_vectorizers(
    folder: Path, params: LinearParams, arrays: dict[str, np.ndarray]
) -> dict[str, TfidfVectorizer]:
    """The vectorizers :func:`save_vocabularies` wrote, rebuilt without pickle."""
    vocabularies = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    vectorizers = _vectorizers(params)
    for name, vectorizer in vectorizers.items():
        vectorizer.set_params(
            vocabulary={term: column for column, term in enumerate(vocabularies[name])}
        )
        vectorizer.idf_ = arrays[f"{name}.idf"]
    return vectorizers


def fit_linear(
    texts: Sequence[str],
    y_index: np.ndarray,
    n_labels: int,
    weights: np.ndarray,
    params: LinearParams,
    check_memory: Any,
    head_fitter: Any = fit_head,
) -> LinearModel:
    """Fit the vectorizers and the head; ``check_memory(needed_bytes, detail)`` may refuse
    (E710) once the number of features is known, before the expensive fit. ``head_fitter``
    (signature of :func:`fit_head`) fits another head on the same features: one-vs-rest heads
    for multilabel tasks."""
    vectorizers, features = fit_vectorizers(texts, params)
    check_memory(
        lbfgs_memory_bytes(
            n_labels, features.shape[1], features.data.nbytes + features.indices.nbytes
        ),
        f"{n_labels} labels × {features.shape[1]:,} features",
    )
    head = head_fitter(features, y_index, n_labels, weights, c=params.c, max_iter=params.max_iter)
    return LinearModel(vectorizers, head, params)


def fit_vectorizers(
    texts: Sequence[str], params: LinearParams
) -> tuple[dict[str, TfidfVectorizer], sp.csr_matrix]:
    """The recipe's vectorizers fitted on ``texts``, and the texts' n-gram features."""
    vectorizers = _vectorizers(params)
    features = sp.hstack(
        [vectorizer.fit_transform(list(texts)) for vectorizer in vectorizers.values()], format="csr"
    )
    return vectorizers, features


def linear_params(settings: TrainSettings) -> LinearParams:
    """The recipe's hyper-parameters from the training settings."""
    return LinearParams(
        c=settings.c or LinearParams.c,
        max_features=settings.max_features,
        word_ngrams=settings.word_ngrams,
        char_ngrams=settings.char_ngrams,
    )


class Linear(Recipe):
    """TF-IDF n-grams and a logistic head (classify: multinomial; multilabel: one-vs-rest)."""

    name = "linear"
    kinds = ("classify", "multilabel")
    order = 10
    reads_ngrams = True
    runtime = "numpy/scipy"
    memory_advice = "use fewer labels or examples, or cap the TF-IDF vocabulary (max_features)"

    def quantize_advice(self, quantize: str) -> str:
        return "it has no dense network to quantize"

    def plan(self, fitting: Fitting) -> Plan:
        params = linear_params(fitting.settings)
        check = self.memory_check(fitting.settings)

        def fit_rows(rows: np.ndarray) -> Scorer:
            texts = [fitting.texts[i] for i in rows]
            targets, weights = fitting.targets[rows], fitting.weights[rows]
            return fit_linear(
                texts, targets, fitting.n_labels, weights, params, check, fitting.head
            )

        return Plan(fit_rows, params_to_json(params))

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return LinearModel.load(folder, card["hyper_parameters"])


registry.recipes.register("linear")(Linear())
