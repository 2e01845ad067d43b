"""train: distil labels into small, fast, calibrated models.

``train(task, out, TrainSettings(recipe=...), data=... | from_store=True)`` writes a model
folder; ``load_model(path)`` opens one as a Predictor. The flows and their shared machinery
(settings, training set, held-out split, calibration, card, folder, memory estimate, speed)
are the modules here; each recipe is a module of :mod:`.recipes`.
"""

from stillhouse.train.load import load_model, read_card
from stillhouse.train.model import TrainedModel
from stillhouse.train.recipe import recipe_names
from stillhouse.train.run import train
from stillhouse.train.settings import TrainSettings, TrainSummary

__all__ = [
    "TrainSettings",
    "TrainSummary",
    "TrainedModel",
    "load_model",
    "read_card",
    "recipe_names",
    "train",
]
