"""Paired tests against scipy and against their definitions written out as loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from stillhouse.evaluate.bootstrap import resample_indices
from stillhouse.evaluate.paired import describe_difference, holm, mcnemar_exact, paired_bootstrap


def two_systems(n: int, accuracy_a: float, accuracy_b: float, agreement: float, seed: int):
    """Correctness of two systems that share most of their mistakes (as real ones do)."""
    rng = np.random.default_rng(seed)
    shared = rng.uniform(size=n)
    own = rng.uniform(size=(2, n))
    use_shared = rng.uniform(size=n) < agreement
    correct_a = np.where(use_shared, shared, own[0]) < accuracy_a
    correct_b = np.where(use_shared, shared, own[1]) < accuracy_b
    return correct_a.astype(int), correct_b.astype(int)


@pytest.mark.parametrize(
    ("n", "accuracy_a", "accuracy_b", "seed"),
    [(40, 0.7, 0.7, 0), (200, 0.8, 0.7, 1), (500, 0.85, 0.83, 2), (1000, 0.9, 0.6, 3)],
)
def test_mcnemar_matches_scipy_binomtest_and_the_statsmodels_formula(
    n: int, accuracy_a: float, accuracy_b: float, seed: int
) -> None:
    correct_a, correct_b = two_systems(n, accuracy_a, accuracy_b, agreement=0.7, seed=seed)
    pairs = list(zip(correct_a.tolist(), correct_b.tolist(), strict=True))
    b = sum(pair == (1, 0) for pair in pairs)
    c = sum(pair == (0, 1) for pair in pairs)
    result = mcnemar_exact(correct_a, correct_b)
    assert (result.b, result.c) == (b, c)
    assert result.p_value == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    tail = sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c)
    assert result.p_value == pytest.approx(min(1.0, 2 * tail), rel=1e-9)


def test_mcnemar_edge_cases() -> None:
    same = np.array([1, 0, 1, 1])
    assert mcnemar_exact(same, same) == (0, 0, 1.0)  # no discordant items
    assert mcnemar_exact([1, 1, 0, 0], [0, 0, 1, 1]).p_value == 1.0  # b == c
    # 10 items only A got right, none only B: p = 2 / 2**10
    assert mcnemar_exact([1] * 10, [0] * 10) == (10, 0, pytest.approx(2 / 1024))


def brute_force_holm(p: list[float]) -> list[float]:
    m = len(p)
    rank = {i: sorted(range(m), key=lambda j: (p[j], j)).index(i) for i in range(m)}
    return [
        max(min(1.0, (m - rank[j]) * p[j]) for j in range(m) if rank[j] <= rank[i])
        for i in range(m)
    ]


def test_holm_matches_the_step_down_definition() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        p = rng.choice([rng.uniform(0, 0.05), rng.uniform()], size=int(rng.integers(1, 12))).round(
            3
        )
        assert holm(p) == pytest.approx(brute_force_holm(p.tolist()), abs=1e-12)


def test_holm_on_a_worked_example() -> None:
    # sorted: 0.01·4 = 0.04, 0.02·3 = 0.06, max(0.06, 0.03·2) = 0.06, max(0.06, 0.5·1) = 0.5
    assert holm([0.5, 0.01, 0.03, 0.02]).tolist() == pytest.approx([0.5, 0.04, 0.06, 0.06])


def test_paired_bootstrap_matches_a_loop_over_resamples() -> None:
    correct_a, correct_b = two_systems(300, 0.8, 0.75, agreement=0.6, seed=5)
    indices = resample_indices(300, n_resamples=999, seed=0)
    accuracy_a = correct_a[indices].mean(axis=1)
    accuracy_b = correct_b[indices].mean(axis=1)
    observed = correct_a.mean() - correct_b.mean()
    result = paired_bootstrap(accuracy_a, accuracy_b, observed)

    differences = [
        sum(correct_a[i] for i in row) / 300 - sum(correct_b[i] for i in row) / 300
        for row in indices
    ]
    extreme = sum(abs(d - observed) >= abs(observed) for d in differences)
    low, high = np.percentile(differences, [2.5, 97.5])
    assert result == pytest.approx((observed, low, high, (1 + extreme) / 1000), abs=1e-12)


def test_paired_bootstrap_separates_real_from_absent_differences() -> None:
    indices = resample_indices(500, n_resamples=999, seed=1)
    better, worse = two_systems(500, 0.9, 0.75, agreement=0.8, seed=6)
    clear = paired_bootstrap(
        better[indices].mean(axis=1), worse[indices].mean(axis=1), better.mean() - worse.mean()
    )
    assert clear.low > 0 and clear.p_value == 1 / 1000  # no resample as extreme under the null
    identical = paired_bootstrap(better[indices].mean(axis=1), better[indices].mean(axis=1), 0.0)
    assert identical == (0.0, 0.0, 0.0, 1.0)


def test_describe_difference_names_the_better_system_first() -> None:
    assert describe_difference("distilled", "llm", 0.031, 0.012, 0.050, 0.002) == (
        "distilled is better than llm by 3.1 points (95% CI 1.2–5.0, p=0.002 after Holm): "
        "a real difference."
    )
    assert describe_difference("distilled", "llm", -0.031, -0.050, -0.012, 0.0004) == (
        "llm is better than distilled by 3.1 points (95% CI 1.2–5.0, p<0.001 after Holm): "
        "a real difference."
    )


def test_describe_difference_says_when_it_is_not_significant() -> None:
    sentence = describe_difference("distilled", "llm", 0.004, -0.012, 0.020, 0.61)
    assert sentence == (
        "distilled is ahead of llm by 0.4 points (95% CI -1.2 to 2.0, p=0.61 after Holm), "
        "but the difference is not significant at α=0.05."
    )
    # significance is decided by the adjusted p-value, printed to 3 significant digits
    assert "not significant" in describe_difference("a", "b", 0.03, 0.001, 0.06, 0.0501)
    assert "0.0501" in describe_difference("a", "b", 0.03, 0.001, 0.06, 0.0501)


def test_describe_difference_for_a_loss_where_lower_is_better() -> None:
    # expected calibration error of A minus that of B: A is 2 points lower, so A is better
    sentence = describe_difference("a", "b", -0.02, -0.03, -0.01, 0.01, higher_is_better=False)
    assert sentence.startswith("a is better than b by 2.0 points (95% CI 1.0–3.0, p=0.01")
