"""The logistic-regression layer both recipes end in, fitted with scikit-learn, stored as arrays.

At inference the head is one matrix product (``features @ weight.T + bias``), so a loaded model
needs numpy only, never a pickled scikit-learn object. Arrays are written as safetensors, which
serialise the same bytes for the same values (the model hash is reproducible).

The product runs on one BLAS thread: it is tiny, and OpenBLAS's threads keep spinning for a
while after it, taking the cores from ONNX Runtime's next batch (int8 encoder + head at batch
64 on 2 cores: 473 texts/s with two BLAS threads, 808 with one; bench/encoder_variants.py).
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.sparse import issparse

# The bias of a task label with no training example: its probability is exp(-10000) ≈ 0 after
# any temperature, while staying finite for JSON, safetensors and the NLL of temperature fitting.
ABSENT_LABEL_BIAS = -1.0e4


@dataclass(frozen=True)
class LinearHead:
    """``weight``: shape (k, d) float32, one row per task label; ``bias``: shape (k,) float32."""

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, features: Any) -> np.ndarray:
        """Logits of shape (n, k) for dense or scipy-sparse ``features`` of shape (n, d)."""
        if issparse(features):  # scipy's own loop, no BLAS (nor the ~30 µs of limiting it)
            product = features @ self._weight_t
        else:
            with _one_blas_thread():
                product = features @ self._weight_t
        return np.asarray(product, dtype=np.float64) + self.bias

    @cached_property
    def _weight_t(self) -> np.ndarray:
        """``weight.T`` laid out for the product: scipy would copy the transposed view on every
        call (with the BLAS limit it skips, most of `linear`'s batch-1 time: bench/RESULTS.md,
        run 3 of `linear` vs spaCy textcat)."""
        return np.ascontiguousarray(self.weight.T)

    def arrays(self, prefix: str = "head") -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": self.weight, f"{prefix}.bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "head") -> LinearHead:
        return cls(arrays[f"{prefix}.weight"], arrays[f"{prefix}.bias"])


def _one_blas_thread() -> AbstractContextManager[Any]:
    return _blas_threads().limit(limits=1, user_api="blas")


@cache
def _blas_threads() -> Any:
    """The BLAS libraries loaded so far (numpy's is, by now); found once, as that takes ~0.3 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit_head(
    features: Any,
    y_index: np.ndarray,
    n_labels: int,
    sample_weight: np.ndarray,
    *,
    c: float,
    max_iter: int,
) -> LinearHead:
    """Multinomial logistic regression (lbfgs, L2 with inverse strength ``c``) on ``features``.

    ``y_index``: shape (n,), task-label columns; labels that never occur get a zero weight row
    and :data:`ABSENT_LABEL_BIAS`. lbfgs is deterministic, so the same data gives the same head.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=max_iter, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, y_index, sample_weight=sample_weight)
    dimension = model.coef_.shape[1]
    weight = np.zeros((n_labels, dimension), dtype=np.float32)
    bias = np.full(n_labels, ABSENT_LABEL_BIAS, dtype=np.float32)
    classes = model.classes_.astype(int)
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: logit of the second
        weight[classes[1]] = model.coef_[0]
        bias[classes[0]], bias[classes[1]] = 0.0, model.intercept_[0]
    else:
        weight[classes] = model.coef_
        bias[classes] = model.intercept_
    return LinearHead(weight, bias)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(path))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))


def lbfgs_memory_bytes(n_labels: int, dimension: int, feature_bytes: int) -> int:
    """About what fitting :func:`fit_head` holds: L-BFGS keeps 2·10 vectors of all parameters
    (scipy's default history) plus a few work copies, and scikit-learn a copy of the features."""
    parameters = n_labels * (dimension + 1)
    return 8 * parameters * (2 * 10 + 6) + 2 * feature_bytes
