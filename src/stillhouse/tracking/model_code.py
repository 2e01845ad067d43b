"""The pyfunc's code, logged with every model (MLflow's "models from code"): loading the model
runs this file, which needs only stillhouse installed (no pickled object is unpickled)."""

import mlflow.models

from stillhouse.tracking.pyfunc import StillhouseModel

mlflow.models.set_model(StillhouseModel())
