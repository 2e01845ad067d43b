"""Benchmark: would a sentence encoder beside the n-grams make a better injection detector?

The shipped detector (stillhouse.guard.injection) is recipe `linear` — TF-IDF word 1–2-grams and
char 2–5-grams, logistic head (C = 10) — scored by windows of whole sentences (≤ 100 characters,
a text's score is its most suspicious window's) at the threshold that keeps every valid source's
false-positive rate ≤ 1%. Its held-out recall is 0.786 (goal 0.90). This script asks whether
features that know meaning, not words, win recall back, on the very same corpus (corpus v2, seed
0: train / valid / test splits of stillhouse.guard.injection_corpus) and with the same rules:

- `ngrams`: the shipped detector's features (it reproduces the shipped figures);
- `minilm`: all-MiniLM-L6-v2 int8 ONNX sentence embeddings (the `encoder` recipe's file) alone;
- `ngrams+minilm`, `ngrams+2·minilm`: both, the unit-length embedding appended to the two l2-
  normalised TF-IDF blocks with weight 1 or 2.

One logistic head per variant (C = 10, scikit-learn's lbfgs) on the training rows; windows for
valid and test as the detector makes them; the threshold by the detector's own rule
(`choose_threshold` on the valid split's clean rows); then recall over all held-out attacks and
per family, false-positive rate per clean source, and per task recall at that task's own 1%
false-positive rate (`recall_at_false_positive_rate`). Latency: batch-1 seconds per text on 400
clean task texts (banking77 and NusaX English test, 200 each) on one thread, n-grams alone vs
n-grams + MiniLM int8 (embedding every window of the text, then the head).

Embeddings are cached under ``$STILLHOUSE_HOME/bench/guard-detector-features`` (train ~200 s,
valid ~60 s, test ~80 s of one core). Prints markdown tables.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from _common import BANKING77, NUSAX, bench_cache_dir, machine_description, read_csv, table_head

from stillhouse.guard.injection import (
    INJECTION_LABEL,
    WINDOW_CHARS,
    _family_group,
    choose_threshold,
    recall_at_false_positive_rate,
    windows,
)
from stillhouse.guard.injection_corpus import build_corpus

DATASETS = BANKING77.parent
VARIANTS = (("ngrams", 0.0, True), ("minilm", 1.0, False))
VARIANTS += (("ngrams+minilm", 1.0, True), ("ngrams+2·minilm", 2.0, True))


def main() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from stillhouse.train.recipes.encoder import EncoderParams, open_encoder

    print(f"machine: {machine_description()}\n")
    corpus = {split: build_corpus(DATASETS, split, seed=0) for split in ("train", "valid", "test")}
    encoder = open_encoder(EncoderParams(quantize="int8"), threads=1)[0]
    cache = bench_cache_dir() / "guard-detector-features"
    cache.mkdir(parents=True, exist_ok=True)

    def embed(name: str, texts: list[str]) -> np.ndarray:
        path = cache / f"{name}-{len(texts)}.npy"
        if path.is_file():
            return np.load(path)
        started = time.perf_counter()
        vectors = encoder.embed(texts)
        print(f"embedded {name}: {len(texts)} texts in {time.perf_counter() - started:.0f} s")
        np.save(path, vectors)
        return vectors

    train = corpus["train"]
    train_texts = [row["text"] for row in train]
    targets = np.array([row["label"] == INJECTION_LABEL for row in train])
    split_windows = {split: _windows(corpus[split]) for split in ("valid", "test")}
    embeddings = {"train": embed("train", train_texts)}
    for split, (flat, _) in split_windows.items():
        embeddings[split] = embed(split, flat)
    common = {"sublinear_tf": True, "lowercase": True, "dtype": np.float32}
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), **common)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common)
    grams = [word.fit_transform(train_texts), char.fit_transform(train_texts)]

    def features(texts: list[str] | None, vectors: np.ndarray, weight: float, ngrams: bool):
        parts = grams if texts is None and ngrams else []
        if texts is not None and ngrams:
            parts = [word.transform(texts), char.transform(texts)]
        if weight:
            parts = [*parts, sp.csr_matrix(weight * vectors)]
        return sp.hstack(parts).tocsr()

    test = corpus["test"]
    attacked = np.array([row["label"] == INJECTION_LABEL for row in test])
    sources = np.array([row["source"] for row in test])
    families = np.array([_family_group(row["family"]) for row in test])
    rows, heads = [], {}
    for name, weight, ngrams in VARIANTS:
        head = LogisticRegression(C=10.0, max_iter=3000)
        head.fit(features(None, embeddings["train"], weight, ngrams), targets)
        heads[name] = (head, weight, ngrams)
        scores = {}
        for split, (flat, starts) in split_windows.items():
            margin = head.decision_function(features(flat, embeddings[split], weight, ngrams))
            scores[split] = np.maximum.reduceat(margin, starts)
        clean_valid = [row for row in corpus["valid"] if row["label"] != INJECTION_LABEL]
        valid_clean = np.array([row["label"] != INJECTION_LABEL for row in corpus["valid"]])
        cut = choose_threshold(scores["valid"][valid_clean], [r["source"] for r in clean_valid])
        flagged = scores["test"] >= cut
        per_task = {
            task: recall_at_false_positive_rate(
                scores["test"][sources == task], attacked[sources == task]
            )[0]
            for task in sorted(set(sources[attacked]))
        }
        rows.append(
            {
                "name": name,
                "recall": flagged[attacked].mean(),
                "fpr": flagged[~attacked].mean(),
                "auc": roc_auc_score(attacked, scores["test"]),
                "per_task": per_task,
                "families": {
                    f: flagged[attacked & (families == f)].mean()
                    for f in sorted(set(families[attacked]))
                },
                "sources": {
                    s: flagged[~attacked & (sources == s)].mean()
                    for s in sorted(set(sources[~attacked]))
                },
            }
        )
    print(
        f"corpus rows: train {len(train)}, valid {len(corpus['valid'])}, test {len(test)} "
        f"({int(attacked.sum())} attacked, {int((~attacked).sum())} clean)\n"
    )
    tasks = list(rows[0]["per_task"])
    print(
        *table_head(
            "features",
            "recall, held-out attacks",
            "FPR, clean test rows",
            "ROC AUC",
            *[f"{t}: recall at 1% FPR" for t in tasks],
        ),
        sep="\n",
    )
    for row in rows:
        cells = [f"{row['per_task'][t]:.3f}" for t in tasks]
        print(
            f"| {row['name']} | {row['recall']:.4f} | {row['fpr']:.4f} | {row['auc']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    _breakdown(rows, "families", "recall", ".3f")
    _breakdown(rows, "sources", "FPR", ".4f")
    latency(heads, encoder, word, char)


def _breakdown(rows: list[dict], key: str, what: str, form: str) -> None:
    """A table of ``row[key]`` (group → value) per variant."""
    groups = list(rows[0][key])
    print("\n" + "\n".join(table_head("features", *[f"{what}, {g}" for g in groups])))
    for row in rows:
        print(f"| {row['name']} | " + " | ".join(f"{row[key][g]:{form}}" for g in groups) + " |")


def _windows(rows: list[dict[str, str]]) -> tuple[list[str], np.ndarray]:
    """Every row's windows, flattened, and where each row's start."""
    pieces = [windows(row["text"], WINDOW_CHARS) for row in rows]
    starts = np.cumsum([0] + [len(p) for p in pieces[:-1]])
    return [piece for p in pieces for piece in p], starts


def latency(heads, encoder, word, char) -> None:
    """Batch-1 milliseconds per clean task text: n-grams alone and n-grams + MiniLM."""
    texts = [r["text"] for r in read_csv(BANKING77 / "test.csv")[:200]]
    texts += [r["text"] for r in read_csv(NUSAX / "english" / "test.csv")[:200]]
    measured = {}
    for name in ("ngrams", "ngrams+2·minilm"):
        head, weight, _ = heads[name]
        seconds = []
        for text in texts:
            started = time.perf_counter()
            pieces = windows(text, WINDOW_CHARS)
            parts = [word.transform(pieces), char.transform(pieces)]
            if weight:
                parts.append(sp.csr_matrix(weight * encoder.embed(pieces, batch_size=1)))
            head.decision_function(sp.hstack(parts).tocsr()).max()
            seconds.append(time.perf_counter() - started)
        measured[name] = np.array(seconds) * 1000
    print("\n" + "\n".join(table_head("features", "p50 ms", "p95 ms", "p99 ms")))
    for name, ms in measured.items():
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        print(f"| {name} | {p50:.2f} | {p95:.2f} | {p99:.2f} |")
    print(f"\n({len(texts)} texts: banking77 and NusaX English test, 200 each; one thread)")


if __name__ == "__main__":
    main()
