"""train: distil labels into small, fast, calibrated models (one module per recipe).

``train(task, out, TrainSettings(recipe=...), data=... | from_store=True)`` writes a model
folder; ``load_model(path)`` opens one as a Predictor.
"""

from stillhouse.train.load import TrainedModel, load_model, read_card
from stillhouse.train.run import RECIPES, TrainSettings, TrainSummary, train

__all__ = [
    "RECIPES",
    "TrainSettings",
    "TrainSummary",
    "TrainedModel",
    "load_model",
    "read_card",
    "train",
]
