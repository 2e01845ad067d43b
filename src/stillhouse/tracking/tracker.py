"""The open tracking store: MLflow imported (lazily: it takes seconds), configured to stay off
the network, the store opened and the experiment found or made, all before a command's work
starts; then :meth:`Tracker.log_run` writes one run (with nested runs) after the work is done.

What is done before the work is the check that the URI can be written: opening a SQLite store
creates or migrates its tables and making the experiment writes a row, so a database that
cannot be written (read-only, not a database, locked) fails here, with E974, and not after a
long training run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import stillhouse
from stillhouse.errors import Errors, StillhouseError, fail
from stillhouse.tracking.names import metric_key, param_value
from stillhouse.tracking.target import TrackingTarget

# Set before MLflow is imported (each only when the user has not set it): no usage telemetry,
# no progress bars on stderr, no environment variables recorded with models, and a tracking
# server that does not answer fails in seconds instead of minutes of retries.
_QUIET_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_RECORD_ENV_VARS_IN_MODEL_LOGGING": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "GIT_PYTHON_REFRESH": "quiet",
}
# Their INFO lines (table migrations, "created experiment") would mix into the command's output.
_QUIET_LOGGERS = ("mlflow", "alembic", "git")
# MLflow's own limits: a param value holds at most 6000 characters, a batch 100 params.
_PARAMS_PER_CALL = 100


def import_mlflow(source: str) -> ModuleType:
    """MLflow, imported quietly; E970 (naming ``source``) when it is not installed."""
    for name, value in _QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import mlflow
    except ImportError:
        raise fail(Errors.E970, source=source) from None
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].rstrip(".")


class RunLog:
    """One MLflow run being written: params, metrics, tags, artifacts and child runs. Values are
    made what MLflow takes (names sanitised, a None param is ``null``, a None metric skipped,
    long params cut)."""

    def __init__(self, mlflow: ModuleType, run_id: str) -> None:
        self.mlflow = mlflow
        self.run_id = run_id

    def params(self, values: Mapping[str, Any]) -> None:
        cleaned = {metric_key(key): param_value(value) for key, value in values.items()}
        items = list(cleaned.items())
        for start in range(0, len(items), _PARAMS_PER_CALL):
            self.mlflow.log_params(dict(items[start : start + _PARAMS_PER_CALL]))

    def metrics(self, values: Mapping[str, float | None]) -> None:
        cleaned = {
            metric_key(key): float(value) for key, value in values.items() if value is not None
        }
        if cleaned:
            self.mlflow.log_metrics(cleaned)  # MLflow sends them in batches of at most 1000

    def tags(self, values: Mapping[str, Any]) -> None:
        self.mlflow.set_tags({key: param_value(value) for key, value in values.items()})

    def artifact(self, path: str | Path, folder: str | None = None) -> None:
        """A file (or every file of a folder) under the run's artifacts, in ``folder``."""
        path = Path(path)
        if path.is_dir():
            self.mlflow.log_artifacts(str(path), folder)
        else:
            self.mlflow.log_artifact(str(path), folder)

    def json(self, name: str, value: Any) -> None:
        """``value`` as the JSON artifact ``name``."""
        self.mlflow.log_dict(value, name)

    @contextlib.contextmanager
    def child(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[RunLog]:
        """A nested run (an evaluated system, say) under this one."""
        with self.mlflow.start_run(run_name=name, nested=True, tags=dict(tags or {})) as run:
            yield RunLog(self.mlflow, run.info.run_id)


class Tracker:
    """An opened tracking store and experiment (see :func:`open_tracker`)."""

    def __init__(self, target: TrackingTarget, mlflow: ModuleType, experiment_id: str) -> None:
        self.target = target
        self.mlflow = mlflow
        self.experiment_id = experiment_id
        self.run_ids: list[str] = []

    def log_run(
        self,
        command: str,
        name: str,
        write: Callable[[RunLog], None],
        *,
        what: str,
        where: str,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Start a run of ``command`` called ``name``, let ``write`` log into it, end it; return
        its id. A failure while logging ends the run FAILED and raises E977, which says the
        command's outputs (``what``, at ``where``) are whole."""
        mlflow = self.mlflow
        run_tags = {
            "stillhouse.command": command,
            "stillhouse.version": stillhouse.__version__,
            **(tags or {}),
        }
        try:
            with mlflow.start_run(
                experiment_id=self.experiment_id, run_name=name, tags=run_tags
            ) as run:
                self.run_ids.append(run.info.run_id)
                write(RunLog(mlflow, run.info.run_id))
        except StillhouseError:
            raise
        except Exception as error:  # the store or the artifact folder failed mid-way
            raise fail(
                Errors.E977,
                what=what,
                where=where,
                uri=self.target.uri,
                detail=_first_line(error),
            ) from None
        return run.info.run_id


def open_tracker(target: TrackingTarget) -> Tracker:
    """Open ``target``'s store and find or make its experiment; E970 without MLflow, E974 when
    the store cannot be opened or written (nothing of the command's work has been done)."""
    mlflow = import_mlflow(target.source)

    def refuse(detail: str) -> StillhouseError:
        return fail(Errors.E974, source=target.source, uri=target.given, detail=detail)

    try:
        mlflow.set_tracking_uri(target.uri)
        mlflow.set_registry_uri(target.uri)
        client = mlflow.MlflowClient(target.uri)
        experiment = client.get_experiment_by_name(target.experiment)
        if experiment is None:
            experiment_id = client.create_experiment(
                target.experiment, artifact_location=target.artifact_location
            )
            experiment = client.get_experiment(experiment_id)
        elif experiment.lifecycle_stage == "deleted":
            raise refuse(
                f"its experiment {target.experiment!r} is deleted; restore it "
                "(`mlflow experiments restore`) or name another in [tracking] experiment"
            )
        if target.uri.startswith("sqlite:"):
            _probe_sqlite_write(target.uri)
    except StillhouseError:
        raise
    except Exception as error:  # MlflowException, SQLAlchemy's, requests'…
        raise refuse(_first_line(error)) from None
    problem = _unwritable_local_folder(experiment.artifact_location)
    if problem is not None:
        raise refuse(f"the experiment's artifact location {problem}")
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return Tracker(target, mlflow, experiment.experiment_id)


def _probe_sqlite_write(uri: str) -> None:
    """Write (and roll back) in the database: an existing store on a read-only file system
    opens and reads fine, and would fail only at the first run written."""
    import sqlite3

    path = uri[len("sqlite:///") :].partition("?")[0]
    connection = sqlite3.connect(path, timeout=10)
    try:
        connection.execute("BEGIN IMMEDIATE")  # takes the write lock: fails when it cannot write
        connection.rollback()
    finally:
        connection.close()


def _unwritable_local_folder(location: str | None) -> str | None:
    """Why a local artifact location cannot take files (its nearest existing folder is not
    writable), or None (also for remote locations: the server's business)."""
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(parsed.path)
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        return f"{location} is below {path}, which is not a folder"
    try:  # os.access says yes to root on a read-only mount: really create a file
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        return f"{location} cannot be written ({error.strerror or error})"
    return None
