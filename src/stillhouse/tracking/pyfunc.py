"""A trained model folder as an MLflow pyfunc model: ``predict`` takes a DataFrame of texts
(column ``text``; an ``id`` column is passed through) and answers one row per text with exactly
the fields `stillhouse predict` writes (classify: ``label`` and ``probs``, a dict label →
probability rounded to 6 places; multilabel: ``labels`` and ``probs``; spans: ``spans``).

The model folder travels inside the MLflow model as an artifact and is loaded with
:func:`stillhouse.train.load.load_model` (every file checked against its manifest), so the
environment that loads it needs stillhouse (the version in the model's requirements).
Imported only when tracking is on: it imports MLflow.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

import stillhouse
from stillhouse.train.predict import _BATCH, prediction_row

MODEL_ARTIFACT = "model_folder"
TEXT_COLUMN = "text"
ID_COLUMN = "id"
# Pinned in the pyfunc's requirements when installed here, after stillhouse (it opens the
# folder): MLflow itself and what a recipe's folder is read with.
_REQUIREMENTS = (
    "mlflow",
    "mlflow-skinny",
    "pandas",
    "numpy",
    "scikit-learn",
    "scipy",
    "onnxruntime",
)


class StillhouseModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """The pyfunc wrapper: loads the folder once, then answers like `stillhouse predict`."""

    def load_context(self, context: Any) -> None:
        from stillhouse.train.load import load_model

        self._model = load_model(context.artifacts[MODEL_ARTIFACT])
        self._kind = self._model.card["task"].get("kind", "classify")

    # a DataFrame hint: MLflow infers no schema from it (the logged signature is the schema)
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = _as_frame(model_input)
        texts = [str(text) for text in frame[TEXT_COLUMN]]
        ids = [str(i) for i in frame[ID_COLUMN]] if ID_COLUMN in frame else None
        rows: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for start in range(0, len(texts), _BATCH):  # the batches predict_file uses
            batch = texts[start : start + _BATCH]
            for offset, prediction in enumerate(self._model.predict(batch)):
                row = prediction_row("", prediction, self._kind, counts)
                row.pop(ID_COLUMN)
                if ids is not None:
                    row = {ID_COLUMN: ids[start + offset], **row}
                rows.append(row)
        return pd.DataFrame(rows, index=frame.index)


def _as_frame(model_input: Any) -> pd.DataFrame:
    """A DataFrame with a ``text`` column, from one, a Series or a list of strings."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise ValueError(
                f"the input has no `{TEXT_COLUMN}` column (columns: "
                f"{', '.join(map(str, model_input.columns))}); give one text per row in `text`"
            )
        return model_input
    if isinstance(model_input, pd.Series):
        return pd.DataFrame({TEXT_COLUMN: model_input})
    if isinstance(model_input, list | tuple):
        return pd.DataFrame({TEXT_COLUMN: list(model_input)})
    raise TypeError(
        f"the input is a {type(model_input).__name__}; give a DataFrame with a `text` column"
    )


def requirements() -> list[str]:
    """pip requirements of the logged model: stillhouse and the installed versions of what a
    model folder is opened with (written out, so MLflow does not infer them by loading the
    model in a subprocess)."""
    found = [f"stillhouse=={stillhouse.__version__}"]
    for name in _REQUIREMENTS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def log_pyfunc(folder: Path, name: str, register: str | None) -> Any:
    """Log ``folder`` (a model folder) as a pyfunc model called ``name`` in the active run,
    registered as ``register`` when given; returns MLflow's ModelInfo (``model_uri``,
    ``registered_model_version``)."""
    columns = [ColSpec("string", TEXT_COLUMN), ColSpec("string", ID_COLUMN, required=False)]
    signature = ModelSignature(inputs=Schema(columns))
    with warnings.catch_warnings():
        # advice to add an input example: one would make MLflow load and run the model here
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("model_code.py")),
            artifacts={MODEL_ARTIFACT: str(folder)},
            signature=signature,
            pip_requirements=requirements(),
            registered_model_name=register,
        )
