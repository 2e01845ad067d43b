"""Tracking on MLflow: `train`, `evaluate`, `annotate` and `audit` log their runs (params,
metrics with interval bounds, artifacts; a trained model as a pyfunc) to a tracking URI given
by ``--track`` or task.toml ``[tracking] uri``. No server is needed: ``sqlite:///mlflow.db``
keeps runs in a file next to task.toml and artifacts in ``mlartifacts/`` beside it.

:func:`start_tracking` resolves and opens the store before a command's work (E970–E978), and
:mod:`.commands` logs what the command wrote. MLflow is imported only when tracking is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stillhouse.tracking.target import TrackingTarget, resolve_target

if TYPE_CHECKING:
    from stillhouse.task import Task
    from stillhouse.tracking.tracker import Tracker

__all__ = ["TrackingTarget", "resolve_target", "start_tracking"]


def start_tracking(task: Task, track: str | None, register: str | None = None) -> Tracker | None:
    """The opened tracker for a command run on ``task`` with ``--track`` / ``--register``
    (None: task.toml's values), or None when tracking is off. Raises before any work: E970
    (no MLflow), E971–E976, E978 (the URI or name), E974 (the store cannot be written)."""
    target = resolve_target(task, track, register)
    if target is None:
        return None
    from stillhouse.tracking.tracker import open_tracker

    return open_tracker(target)
