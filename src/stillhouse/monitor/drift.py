"""Drift statistics: how the window's predictions differ from the baseline's.

- **Label shift**: the population stability index over the labels,
  PSI = Σ_label (w − b) · ln(w / b), with w and b the window's and the baseline's shares of
  answers with that label; a share of 0 is replaced by ε = 1e-4 (:data:`PSI_EPSILON`), so a
  label one side never gives adds a large but finite term. Conventional reading: < 0.1 no
  shift, 0.1–0.25 moderate, ≥ 0.25 major. PSI grows with sampling noise alone: without any
  shift its expected value is about (k − 1)(1/n + 1/m) for k labels and n, m answers
  (``expected_without_shift``), 0.1 for 77 labels and 1,540 answers a side — read it before
  choosing a threshold, or use the chi-square test of homogeneity (scipy's
  ``chi2_contingency`` on the two rows of counts, labels absent from both left out), whose p
  accounts for the sample sizes.
- **Confidence shift**: the two-sample Kolmogorov–Smirnov test (scipy's ``ks_2samp``) between
  the confidences of the window's answers and the baseline model's on its test set.
- **Text length** (characters; KS test) and **language mix** (lingua over the audit's candidate
  languages, in its low-accuracy mode; PSI over languages), when texts are logged.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PSI_EPSILON = 1e-4
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
# What a chi-square or KS p below this is called: a significant difference.
ALPHA = 0.01
TOP_LABELS = 10
HISTOGRAM_BINS = 20
# lingua on more texts than this reads a seeded sample of them.
LANGUAGE_SAMPLE = 5000
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def shares(counts: Sequence[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi_terms(
    baseline: Sequence[float], window: Sequence[float], epsilon: float = PSI_EPSILON
) -> np.ndarray:
    """Each bin's term (w − b)·ln(w / b) of the PSI; ``baseline`` and ``window`` are shares
    (each summing to 1), zeros replaced by ``epsilon``."""
    b = np.maximum(np.asarray(baseline, dtype=float), epsilon)
    w = np.maximum(np.asarray(window, dtype=float), epsilon)
    return (w - b) * np.log(w / b)


def population_stability_index(
    baseline: Sequence[float], window: Sequence[float], epsilon: float = PSI_EPSILON
) -> float:
    """PSI between two distributions over the same bins (shares); see the module docstring."""
    return float(psi_terms(baseline, window, epsilon).sum())


def psi_level(psi: float) -> str:
    if psi >= PSI_MAJOR:
        return "major"
    return "moderate" if psi >= PSI_MODERATE else "none"


def psi_without_shift(bins: int, n: int, m: int) -> float:
    """About what PSI is between two samples of n and m from one distribution over ``bins``
    bins: (bins − 1)(1/n + 1/m)."""
    if n <= 0 or m <= 0:
        return math.inf
    return max(bins - 1, 0) * (1 / n + 1 / m)


def chi_square(baseline_counts: Sequence[int], window_counts: Sequence[int]) -> dict[str, Any]:
    """Chi-square test that both samples come from one distribution over the bins."""
    from scipy.stats import chi2_contingency

    table = np.array([baseline_counts, window_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return {"statistic": 0.0, "dof": 0, "p_value": 1.0}
    result = chi2_contingency(table, correction=False)
    return {
        "statistic": float(result.statistic),
        "dof": int(result.dof),
        "p_value": float(result.pvalue),
    }


def label_shift(
    labels: Sequence[str], baseline_counts: Mapping[str, int], window_counts: Mapping[str, int]
) -> dict[str, Any]:
    """PSI and chi-square between the baseline's and the window's label counts (see the
    module docstring), with the labels that contribute most."""
    base = np.array([baseline_counts.get(label, 0) for label in labels], dtype=float)
    seen = np.array([window_counts.get(label, 0) for label in labels], dtype=float)
    b, w = shares(base), shares(seen)
    terms = psi_terms(b, w)
    psi = float(terms.sum())
    used = int(((base > 0) | (seen > 0)).sum())
    order = np.argsort(-np.abs(terms), kind="stable")[:TOP_LABELS]
    return {
        "psi": psi,
        "level": psi_level(psi),
        "epsilon": PSI_EPSILON,
        "expected_without_shift": psi_without_shift(used, int(seen.sum()), int(base.sum())),
        "chi_square": chi_square(base.astype(int).tolist(), seen.astype(int).tolist()),
        "window_answers": int(seen.sum()),
        "baseline_answers": int(base.sum()),
        "window_counts": {label: int(count) for label, count in zip(labels, seen, strict=True)},
        "baseline_counts": {label: int(count) for label, count in zip(labels, base, strict=True)},
        "top": [
            {
                "label": labels[i],
                "baseline_share": float(b[i]),
                "window_share": float(w[i]),
                "psi_term": float(terms[i]),
            }
            for i in order
        ],
    }


def distribution_summary(values: np.ndarray) -> dict[str, Any]:
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES},
    }


def ks_test(baseline: np.ndarray, window: np.ndarray) -> dict[str, float]:
    """scipy's two-sample KS test (window vs baseline); where ties make its exact p-value fail,
    scipy falls back to the asymptotic one, as it says in a warning kept off the terminal."""
    from scipy.stats import ks_2samp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        result = ks_2samp(window, baseline)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue)}


def confidence_shift(baseline: np.ndarray, window: np.ndarray) -> dict[str, Any]:
    """KS test between the two samples of confidences, their summaries and a histogram of each
    (shares in :data:`HISTOGRAM_BINS` equal-width bins on [0, 1])."""
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)

    def histogram(values: np.ndarray) -> list[float]:
        counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)
        return shares(counts).tolist()

    return {
        "ks": ks_test(baseline, window),
        "window": distribution_summary(window),
        "baseline": distribution_summary(baseline),
        "histogram": {
            "edges": edges.tolist(),
            "window": histogram(window),
            "baseline": histogram(baseline),
        },
    }


def length_shift(baseline: np.ndarray | None, window: np.ndarray) -> dict[str, Any]:
    """Text length in characters: the window's summary, and with a baseline its summary and
    the KS test."""
    found: dict[str, Any] = {"window": distribution_summary(window)}
    if baseline is not None and baseline.size:
        found["baseline"] = distribution_summary(baseline)
        found["ks"] = ks_test(baseline, window)
    return found


def language_mix(
    window_texts: Sequence[str], baseline_texts: Sequence[str] | None, languages: Sequence[str]
) -> dict[str, Any] | None:
    """The language of every text (lingua over the audit's languages, low-accuracy mode; a
    seeded sample of :data:`LANGUAGE_SAMPLE` per side above that), shares per language, the
    share outside the task's ``languages`` and, with baseline texts, the PSI between the two
    mixes. None when lingua (the ``audit`` extra) is not installed."""
    from importlib.util import find_spec

    from stillhouse.audit.language import detect_languages

    if find_spec("lingua") is None:
        return None

    def sample(texts: Sequence[str]) -> list[str]:
        chosen = list(texts)
        if len(chosen) > LANGUAGE_SAMPLE:
            picked = np.random.default_rng(0).choice(len(chosen), LANGUAGE_SAMPLE, replace=False)
            chosen = [chosen[i] for i in sorted(picked)]
        return chosen

    window_sample = sample(window_texts)
    baseline_sample = sample(baseline_texts) if baseline_texts else []
    # one detector, one pass over both sides, in lingua's low-accuracy mode (trigram models):
    # loading the high-accuracy models takes ~6 s on a 2-core machine, more than the rest of a
    # monitor run, and a mix over many sentence-long texts hardly moves (both sides are read
    # the same way, so a shift between them is what it shows)
    texts = [*window_sample, *baseline_sample]
    codes, unsupported = detect_languages(texts, languages, fast=True)
    window = Counter(codes[: len(window_sample)])
    found: dict[str, Any] = {
        "detected": len(window_sample),
        "window": _language_shares(window),
        "outside_task_languages": _outside(window, languages),
        "undetectable_task_languages": unsupported,
    }
    if baseline_sample:
        baseline = Counter(codes[len(window_sample) :])
        names = sorted(set(window) | set(baseline))
        b = shares([baseline[name] for name in names])
        w = shares([window[name] for name in names])
        found |= {
            "baseline_detected": len(baseline_sample),
            "baseline": _language_shares(baseline),
            "baseline_outside_task_languages": _outside(baseline, languages),
            "psi": population_stability_index(b, w),
        }
    return found


def _language_shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {code: count / total for code, count in counts.most_common()}


def _outside(counts: Counter[str], languages: Sequence[str]) -> float:
    total = sum(counts.values())
    outside = sum(count for code, count in counts.items() if code not in set(languages))
    return outside / total if total else 0.0
