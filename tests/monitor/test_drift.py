"""Drift statistics against the formulas written out directly (numpy, and scipy's distributions
rather than its tests where a test is what we call)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2, kstwo

from stillhouse.monitor import drift


def psi_by_hand(base_counts: np.ndarray, window_counts: np.ndarray, eps: float) -> float:
    b = np.maximum(base_counts / base_counts.sum(), eps)
    w = np.maximum(window_counts / window_counts.sum(), eps)
    return float(np.sum((w - b) * np.log(w / b)))


def test_psi_is_the_sum_of_share_differences_times_log_ratios() -> None:
    base = np.array([50, 30, 15, 5])
    window = np.array([20, 30, 30, 20])
    found = drift.population_stability_index(drift.shares(base), drift.shares(window))
    # the terms written out: (0.2-0.5)ln(0.2/0.5) + 0 + (0.3-0.15)ln 2 + (0.2-0.05)ln 4
    expected = -0.3 * np.log(0.4) + 0.15 * np.log(2) + 0.15 * np.log(4)
    assert found == pytest.approx(expected, rel=1e-12)
    assert found == pytest.approx(psi_by_hand(base, window, drift.PSI_EPSILON), rel=1e-12)
    assert drift.population_stability_index(drift.shares(base), drift.shares(base)) == 0.0


def test_psi_is_symmetric_and_an_empty_label_gives_a_large_finite_term() -> None:
    base, window = np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2])
    forward = drift.population_stability_index(base, window)
    assert forward == pytest.approx(drift.population_stability_index(window, base))
    term = drift.psi_terms(base, window)[2]
    assert term == pytest.approx((0.2 - 1e-4) * np.log(0.2 / 1e-4))
    assert np.isfinite(forward) and forward > drift.PSI_MAJOR


def test_chi_square_is_the_homogeneity_statistic_and_leaves_out_empty_labels() -> None:
    base = np.array([120, 80, 40, 0, 10])
    window = np.array([60, 70, 50, 0, 20])
    found = drift.chi_square(base.tolist(), window.tolist())
    table = np.array([base, window], dtype=float)[:, (base + window) > 0]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    assert found["dof"] == dof == 3
    assert found["statistic"] == pytest.approx(statistic, rel=1e-12)
    assert found["p_value"] == pytest.approx(chi2.sf(statistic, dof), rel=1e-9)


def test_chi_square_of_one_label_or_an_empty_side_says_no_difference() -> None:
    assert drift.chi_square([10, 0], [5, 0]) == {"statistic": 0.0, "dof": 0, "p_value": 1.0}
    assert drift.chi_square([0, 0], [5, 3])["p_value"] == 1.0


def test_ks_statistic_is_the_largest_gap_between_the_empirical_distributions() -> None:
    rng = np.random.default_rng(3)
    base, window = rng.beta(5, 2, 400), rng.beta(3, 2, 300)
    found = drift.ks_test(base, window)
    points = np.concatenate([base, window])
    gap = np.max(
        np.abs(
            np.searchsorted(np.sort(window), points, side="right") / window.size
            - np.searchsorted(np.sort(base), points, side="right") / base.size
        )
    )
    assert found["statistic"] == pytest.approx(gap, abs=1e-12)
    # the asymptotic p of that statistic for the effective sample size, as a sanity bound
    n = base.size * window.size / (base.size + window.size)
    assert found["p_value"] == pytest.approx(kstwo.sf(gap, round(n)), rel=0.2, abs=1e-6)


def test_ks_with_many_ties_falls_back_quietly(recwarn: pytest.WarningsRecorder) -> None:
    base = np.repeat([0.5, 0.9], 3000)
    window = np.repeat([0.5, 0.9, 0.95], 2000)
    found = drift.ks_test(base, window)
    assert found["statistic"] == pytest.approx(1 / 3, abs=1e-9)
    assert not [w for w in recwarn if "ks_2samp" in str(w.message)]


def test_psi_of_two_samples_of_one_distribution_is_about_the_noise_level() -> None:
    """(k − 1)(1/n + 1/m): the PSI a threshold must allow for with no shift at all."""
    rng = np.random.default_rng(0)
    k, n, m = 20, 500, 400
    probabilities = rng.dirichlet(np.full(k, 5.0))
    values = [
        drift.population_stability_index(
            drift.shares(rng.multinomial(m, probabilities)),
            drift.shares(rng.multinomial(n, probabilities)),
        )
        for _ in range(300)
    ]
    expected = drift.psi_without_shift(k, n, m)
    assert expected == pytest.approx(19 * (1 / 500 + 1 / 400))
    assert np.mean(values) == pytest.approx(expected, rel=0.15)


def test_label_shift_counts_top_labels_and_levels() -> None:
    labels = ["a", "b", "c"]
    found = drift.label_shift(labels, {"a": 50, "b": 50, "c": 0}, {"a": 10, "b": 10, "c": 80})
    assert found["psi"] == pytest.approx(
        psi_by_hand(np.array([50, 50, 0]), np.array([10, 10, 80]), drift.PSI_EPSILON)
    )
    assert found["level"] == "major" and found["top"][0]["label"] == "c"
    assert found["window_counts"] == {"a": 10, "b": 10, "c": 80}
    assert found["expected_without_shift"] == pytest.approx(2 * (1 / 100 + 1 / 100))
    calm = drift.label_shift(labels, {"a": 50, "b": 50, "c": 0}, {"a": 49, "b": 51, "c": 0})
    assert calm["level"] == "none" and calm["chi_square"]["p_value"] > 0.5
    assert drift.psi_level(0.1) == "moderate" and drift.psi_level(0.0999) == "none"


def test_confidence_histograms_are_shares_over_twenty_bins() -> None:
    found = drift.confidence_shift(np.array([0.1, 0.2, 0.97, 1.0]), np.array([0.5, 0.5]))
    histogram = found["histogram"]
    assert len(histogram["edges"]) == 21 and sum(histogram["baseline"]) == pytest.approx(1)
    assert histogram["window"][10] == 1.0  # 0.5 falls in [0.5, 0.55)
    assert histogram["baseline"][-1] == 0.5  # 0.97 and 1.0 in the last, closed bin
    assert found["window"]["mean"] == 0.5 and found["baseline"]["n"] == 4


def test_language_mix_finds_the_texts_outside_the_task_languages() -> None:
    english = [
        "The delivery arrived two days late and the box was damaged.",
        "I would like to change the address on my account, please.",
        "Thank you so much, the new phone works perfectly.",
        "Why was my card declined at the supermarket this morning?",
    ]
    german = [
        "Meine Karte wurde gestern gestohlen, bitte sperren Sie sie sofort.",
        "Ich möchte mein Konto kündigen und das Geld überweisen lassen.",
    ]
    found = drift.language_mix(english + german, english, ["en"])
    assert found["window"] == {"en": pytest.approx(4 / 6), "de": pytest.approx(2 / 6)}
    assert found["outside_task_languages"] == pytest.approx(2 / 6)
    assert found["baseline"] == {"en": 1.0} and found["baseline_outside_task_languages"] == 0
    assert found["psi"] == pytest.approx(
        drift.population_stability_index([0.0, 1.0], [2 / 6, 4 / 6])
    )
