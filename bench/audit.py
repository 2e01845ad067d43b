"""Benchmark of the audit: label-error detection against cleanlab's Datalab default, PII
precision/recall per entity type, near duplicates at 100k texts.

1. Label errors: banking77 train (10,003 texts, 77 intents), embedded once with all-MiniLM-L6-v2
   (cached under $STILLHOUSE_HOME/bench/, by default ~/.cache/stillhouse/bench/). Noise injected
   with a fixed seed: uniform 5%, 10%, 20% (a flipped label goes to a random other label) and
   class-conditional 10% (a flipped label goes to the label its class is most often confused
   with by a clean cross-validated model).
   The audit's detector (the mean of K-fold logistic regression and leave-one-out kNN
   probabilities + cleanlab.filter.find_label_issues) and
   ``Datalab(...).find_issues(features=embeddings)`` (cleanlab's default run) see the same
   embeddings and noisy labels; both are scored by precision / recall / F1 of the flagged set
   against the injected flips. Several settings of ours are listed, not just the best.
2. PII: presidio (as the audit configures it) on presidio-research's synth_dataset_v2 (1,500
   texts); a gold span counts as found when a predicted span of the mapped entity type overlaps
   it; a predicted span is correct when it overlaps a gold span whose type maps to it.
3. Near duplicates: 100,000 texts: every distinct banking77 and NusaX (12 languages) text, 5,000
   of them copied with 1–2 planted character edits, the rest two random texts joined; time,
   recall of the planted pairs (same group) and peak memory of the check.

Run: nice -n 10 .venv/bin/python bench/audit.py [--parts labels,pii,near]
Prints markdown tables; append them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import time
import warnings
from collections import Counter

import numpy as np
from _common import BANKING77, DATASETS, NUSAX, bench_cache_dir, cached_array, read_csv, table_head

SEED = 0


def cached_embeddings(texts: list[str], name: str) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``texts`` ((n, 384)), cached by the texts' sha256."""
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]

    def embed_texts() -> np.ndarray:
        from stillhouse.llm.fewshot import embed

        started = time.perf_counter()
        vectors = embed(texts)
        print(f"embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s")
        return vectors

    return cached_array(bench_cache_dir() / f"{name}-minilm-{digest}.npy", embed_texts)


# 1. label errors ----------------------------------------------------------------------------


def confusable_partner(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """For each class, the other class a clean model most often predicts for it."""
    n = probabilities.shape[1]
    confusion = np.zeros((n, n))
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    np.fill_diagonal(confusion, -1)
    return confusion.argmax(axis=1)


def inject_noise(
    labels: np.ndarray, rate: float, rng: np.random.Generator, partner: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    n_classes = int(labels.max()) + 1
    flipped = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
    noisy = labels.copy()
    for row in flipped:
        if partner is not None:
            noisy[row] = partner[labels[row]]
        else:
            noisy[row] = rng.choice([c for c in range(n_classes) if c != labels[row]])
    return noisy, np.isin(np.arange(len(labels)), flipped)


def scores(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    hits = int((flagged & truth).sum())
    precision = hits / flagged.sum() if flagged.sum() else 0.0
    recall = hits / truth.sum()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": int(flagged.sum())}


def datalab_default(labels: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, float]:
    from cleanlab import Datalab

    started = time.perf_counter()
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(features=features)
    flagged = lab.get_issues("label")["is_label_issue"].to_numpy()
    return flagged, time.perf_counter() - started


def bench_labels() -> list[str]:
    from stillhouse.audit.label_issues import (
        FILTER_BY,
        find_issues,
        neighbour_probabilities,
        out_of_sample_probabilities,
    )

    rows = read_csv(BANKING77 / "train.csv")
    texts = [row["text"] for row in rows]
    names = sorted({row["category"] for row in rows})
    labels = np.array([names.index(row["category"]) for row in rows])
    features = cached_embeddings(texts, "banking77-train")
    clean = out_of_sample_probabilities(features, labels, len(names), seed=SEED)
    partner = confusable_partner(labels, clean)
    print(f"clean out-of-sample accuracy {np.mean(clean.argmax(1) == labels):.3f}")
    levels = [("uniform 5%", 0.05, None), ("uniform 10%", 0.10, None), ("uniform 20%", 0.20, None)]
    levels.append(("class-conditional 10%", 0.10, partner))
    lines = table_head(
        "noise",
        "detector",
        "flagged",
        "precision",
        "recall",
        "F1",
        "F1 ratio vs Datalab",
        "seconds",
    )
    for level, rate, pairs in levels:
        rng = np.random.default_rng(SEED)
        noisy, truth = inject_noise(labels, rate, rng, pairs)
        flagged, seconds = datalab_default(noisy, features)
        peer = scores(flagged, truth)
        lines.append(_row(level, "cleanlab Datalab default (features)", peer, None, seconds))
        started = time.perf_counter()
        regression = out_of_sample_probabilities(features, noisy, len(names), seed=SEED)
        regression_seconds = time.perf_counter() - started
        started = time.perf_counter()
        neighbours = neighbour_probabilities(features, noisy, len(names))
        neighbour_seconds = time.perf_counter() - started
        ensemble = (regression + neighbours) / 2
        variants = [
            ("LR 5-fold", regression, "prune_by_noise_rate", regression_seconds),
            ("LR 5-fold", regression, "both", regression_seconds),
            ("kNN leave-one-out", neighbours, "both", neighbour_seconds),
            (
                "mean(LR, kNN)",
                ensemble,
                "prune_by_noise_rate",
                regression_seconds + neighbour_seconds,
            ),
            ("mean(LR, kNN)", ensemble, "both", regression_seconds + neighbour_seconds),
        ]
        for name, probabilities, filter_by, seconds in variants:
            started = time.perf_counter()
            mask, _ = find_issues(noisy, probabilities, filter_by=filter_by)
            label = f"audit: {name}, {filter_by}"
            if name.startswith("mean") and filter_by == FILTER_BY:
                label = f"**audit default: {name}, {filter_by}**"
            ours = scores(mask, truth)
            elapsed = seconds + time.perf_counter() - started
            lines.append(_row(level, label, ours, peer["f1"], elapsed))
        print("\n".join(lines[-len(variants) - 1 :]), flush=True)
    return lines


def _row(level: str, name: str, s: dict[str, float], peer_f1: float | None, seconds: float) -> str:
    ratio = "1.00" if peer_f1 is None else f"{s['f1'] / peer_f1:.2f}"
    return (
        f"| {level} | {name} | {s['flagged']} | {s['precision']:.3f} | {s['recall']:.3f} | "
        f"{s['f1']:.3f} | {ratio} | {seconds:.0f} |"
    )


# 2. PII ---------------------------------------------------------------------------------------

# presidio-research's entity types → the presidio analyzer type that should find them.
PII_TYPES = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "LOCATION",
    "GPE": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
    "CREDIT_CARD": "CREDIT_CARD",
    "DATE_TIME": "DATE_TIME",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "AGE": "AGE",
    "NRP": "NRP",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "DOMAIN_NAME": "URL",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "ZIP_CODE": None,
    "TITLE": None,
}


def bench_pii() -> list[str]:
    from stillhouse.audit.pii import SCORE_THRESHOLD, find_pii
    from stillhouse.data.records import Example

    records = json.loads((DATASETS / "presidio_pii" / "synth_dataset_v2.json").read_text())
    examples = [Example(str(i), record["full_text"]) for i, record in enumerate(records)]
    started = time.perf_counter()
    hits = find_pii(examples)
    seconds = time.perf_counter() - started
    gold = [
        (str(i), s["entity_type"], s["start_position"], s["end_position"])
        for i, r in enumerate(records)
        for s in r["spans"]
    ]
    by_text: dict[str, list[tuple[str, int, int]]] = {}
    for text_id, kind, start, end in gold:
        by_text.setdefault(text_id, []).append((kind, start, end))
    found, total = Counter(), Counter()
    for text_id, kind, start, end in gold:
        total[kind] += 1
        target = PII_TYPES.get(kind)
        if any(
            h.id == text_id and h.entity == target and h.start < end and start < h.end
            for h in hits_by(hits, text_id)
        ):
            found[kind] += 1
    correct, predicted = Counter(), Counter()
    for hit in hits:
        predicted[hit.entity] += 1
        if any(
            PII_TYPES.get(kind) == hit.entity and hit.start < end and start < hit.end
            for kind, start, end in by_text.get(hit.id, [])
        ):
            correct[hit.entity] += 1
    lines = [
        f"{len(examples)} texts in {seconds:.1f} s ({len(examples) / seconds:.0f} texts/s), score ≥ {SCORE_THRESHOLD}",
        "",
        *table_head(
            "gold entity type",
            "presidio type",
            "gold spans",
            "recall",
            "presidio precision (that type)",
        ),
    ]
    for kind, count in total.most_common():
        target = PII_TYPES.get(kind)
        precision = (
            f"{correct[target] / predicted[target]:.3f} ({predicted[target]})"
            if target and predicted[target]
            else "–"
        )
        lines.append(
            f"| {kind} | {target or '(none)'} | {count} | {found[kind] / count:.3f} | {precision} |"
        )
    all_found, all_total = sum(found.values()), sum(total.values())
    all_correct, all_predicted = sum(correct.values()), sum(predicted.values())
    lines.append(
        f"| all | | {all_total} | {all_found / all_total:.3f} | {all_correct / all_predicted:.3f} ({all_predicted}) |"
    )
    return lines


_HITS_CACHE: dict[int, dict[str, list]] = {}


def hits_by(hits: list, text_id: str) -> list:
    index = _HITS_CACHE.get(id(hits))
    if index is None:
        index = {}
        for hit in hits:
            index.setdefault(hit.id, []).append(hit)
        _HITS_CACHE[id(hits)] = index
    return index.get(text_id, [])


# 3. near duplicates ---------------------------------------------------------------------------


def planted_edit(text: str, rng: random.Random) -> str:
    """1–2 random character edits (substitute, delete or insert a letter)."""
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        position = rng.randrange(len(chars))
        action = rng.choice(("substitute", "delete", "insert"))
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
        if action == "substitute":
            chars[position] = letter
        elif action == "delete" and len(chars) > 1:
            del chars[position]
        else:
            chars.insert(position, letter)
    return "".join(chars)


def bench_near(total: int = 100_000, planted: int = 5000, threshold: float = 0.8) -> list[str]:
    from stillhouse.audit.near_duplicates import jaccard, near_duplicate_groups, shingles
    from stillhouse.audit.normalize import normalize_text
    from stillhouse.data.records import Example

    texts = [r["text"] for split in ("train", "test") for r in read_csv(BANKING77 / f"{split}.csv")]
    for language in sorted(p.name for p in NUSAX.iterdir() if p.is_dir()):
        for split in ("train", "valid", "test"):
            texts += [r["text"] for r in read_csv(NUSAX / language / f"{split}.csv")]
    base = list(dict.fromkeys(texts))
    rng = random.Random(SEED)
    sources = rng.sample(range(len(base)), planted)
    copies = [planted_edit(base[i], rng) for i in sources]
    joined = [f"{rng.choice(base)} {rng.choice(base)}" for _ in range(total - len(base) - planted)]
    corpus = base + copies + joined
    examples = [Example(str(i), text) for i, text in enumerate(corpus)]
    pairs = [(i, len(base) + k) for k, i in enumerate(sources)]
    above = [
        (a, b) for a, b in pairs
        if normalize_text(corpus[a]) != normalize_text(corpus[b])
        and jaccard(shingles(normalize_text(corpus[a])), shingles(normalize_text(corpus[b]))) >= threshold
    ]  # fmt: skip
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_before = _rss_kb()
    started = time.perf_counter()
    groups = near_duplicate_groups(examples, [None] * len(examples), threshold=threshold)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    group_of = {example_id: n for n, group in enumerate(groups) for example_id in group.ids}
    together = sum(group_of.get(str(a), -1) == group_of.get(str(b), -2) for a, b in above)
    any_pair = sum(group_of.get(str(a), -1) == group_of.get(str(b), -2) for a, b in pairs)
    growth = max(peak, baseline) - rss_before
    return [
        *table_head(
            "texts",
            "planted pairs (Jaccard ≥ 0.8)",
            "recall on those",
            "recall on all planted",
            "groups",
            "seconds",
            "peak RSS growth",
        ),
        f"| {len(corpus):,} | {len(above):,} of {planted:,} | {together / len(above):.3f} | "
        f"{any_pair / planted:.3f} | {len(groups):,} | {seconds:.1f} | {growth / 1024:.0f} MB |",
    ]


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="near,pii,labels")
    args = parser.parse_args()
    parts = args.parts.split(",")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "near" in parts:  # first, so its peak memory is its own
        print("\n### Near duplicates (100k texts)\n")
        print("\n".join(bench_near()), flush=True)
    if "pii" in parts:
        print("\n### PII (presidio, synth_dataset_v2)\n")
        print("\n".join(bench_pii()), flush=True)
    if "labels" in parts:
        print("\n### Label errors (banking77 train, MiniLM embeddings)\n")
        print("\n".join(bench_labels()), flush=True)


if __name__ == "__main__":
    main()
