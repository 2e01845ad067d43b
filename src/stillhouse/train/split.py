"""The held-out split: a stratified, seeded share of each label kept out of training.

It is what the temperature is fitted on and what the card's held-out metrics are measured on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_holdout(
    labels: Sequence[str], share: float, seed: int
) -> tuple[list[int], list[int]]:
    """Row indices ``(train, held_out)``: about ``share`` of each label's rows held out.

    Every label keeps at least one training row; a label with one row is not held out. Both
    lists are sorted, so the result depends only on the labels, ``share`` and ``seed``.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        by_label.setdefault(label, []).append(row)
    held_out: list[int] = []
    for label in sorted(by_label):
        rows = np.array(by_label[label])
        count = min(len(rows) - 1, round(share * len(rows)))
        if share > 0 and len(rows) >= 2:
            count = max(count, 1)
        held_out.extend(int(row) for row in rng.permutation(rows)[:count])
    held = set(held_out)
    return [row for row in range(len(labels)) if row not in held], sorted(held)
