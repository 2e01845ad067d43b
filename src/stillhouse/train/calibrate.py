"""Temperature scaling on the held-out split, with the calibration error before and after.

The model's logits are divided by one temperature T fitted to minimise the held-out negative
log-likelihood (Guo et al. 2017); T does not change which label wins, only how sure the model
says it is. The fitting itself is :func:`stillhouse.evaluate.calibration.fit_temperature`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stillhouse.evaluate.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)


@dataclass(frozen=True)
class Calibration:
    """The fitted temperature and the held-out ECE (10 equal-mass bins) before and after it."""

    temperature: float
    ece_before: float
    ece_after: float
    held_out: int


def calibrate(logits: np.ndarray, y_index: np.ndarray) -> Calibration:
    """Fit T on held-out ``logits`` (shape (n, k)) with gold columns ``y_index`` (shape (n,))."""
    temperature = fit_temperature(logits, y_index)
    return Calibration(
        temperature=temperature,
        ece_before=held_out_ece(apply_temperature(logits, 1.0), y_index),
        ece_after=held_out_ece(apply_temperature(logits, temperature), y_index),
        held_out=len(y_index),
    )


def held_out_ece(probs: np.ndarray, y_index: np.ndarray) -> float:
    """ECE with 10 equal-mass bins (the figure `stillhouse evaluate` reports first)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_index
    return expected_calibration_error(confidence, correct, bins=10, scheme="mass")
