"""Where a command logs its run: the tracking URI from ``--track`` or task.toml ``[tracking]``,
resolved and checked on the local file system before any work starts (MLflow is not imported
here, so a command without tracking never pays for it).

A relative path in a URI from task.toml is relative to task.toml's folder (the store and the
task then travel together); one given to ``--track`` is relative to the current folder, as every
other path on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from stillhouse.errors import Errors, fail
from stillhouse.paths import what_is
from stillhouse.task import Task

TRACK_OPTION = "--track"
REGISTER_OPTION = "--register"
# Where a SQLite store keeps artifacts (model folders, reports): beside the database file.
ARTIFACTS_FOLDER = "mlartifacts"
_SERVER_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class TrackingTarget:
    """A resolved tracking destination.

    ``uri``: the tracking URI with every local path absolute; ``source``: where it was given
    (for messages: ``--track`` or ``PATH [tracking] uri``); ``given``: the URI as written;
    ``experiment``: the MLflow experiment's name; ``register``: the registry name a trained
    model is registered under, or None; ``artifact_location``: where a new experiment keeps
    its artifacts (a ``file://`` URI beside a SQLite database), or None to let MLflow choose.
    """

    uri: str
    source: str
    given: str
    experiment: str
    register: str | None = None
    artifact_location: str | None = None


def resolve_target(
    task: Task, track: str | None, register: str | None = None
) -> TrackingTarget | None:
    """The tracking target of a command run with ``--track track`` (None: task.toml's
    ``[tracking] uri``, else no tracking: None is returned) and ``--register register`` (None:
    task.toml's ``[tracking] register``).

    Raises E971 (an empty ``--track``), E976 (an empty ``--register``), E975 (``--register``
    without tracking), E972 (the folder of a local store missing), E973 (a local store's path
    is the wrong kind of thing), E978 (a URI of no form MLflow can write to)."""
    settings = task.tracking
    if register is not None and not register.strip():
        raise fail(Errors.E976, source=REGISTER_OPTION, what="the registry model name")
    if track is not None:
        given, source, base = track, TRACK_OPTION, Path.cwd()
    elif settings.uri is not None:
        given, source, base = settings.uri, f"{task.path} [tracking] uri", task.directory
    else:
        if register is not None:
            raise fail(
                Errors.E975, option=REGISTER_OPTION, name=register, task=task.path or "task.toml"
            )
        return None
    if not given.strip():
        raise fail(Errors.E971, source=source)
    uri, artifacts = _resolve_uri(given.strip(), source, base)
    return TrackingTarget(
        uri=uri,
        source=source,
        given=given,
        experiment=settings.experiment or task.name,
        register=register if register is not None else settings.model_name,
        artifact_location=artifacts,
    )


def _resolve_uri(given: str, source: str, base: Path) -> tuple[str, str | None]:
    """``given`` with local paths made absolute (against ``base``) and checked, and the
    artifact location a new experiment gets (None: MLflow's choice)."""
    scheme = given.partition(":")[0].lower() if ":" in given else ""
    if scheme == "sqlite":
        return _sqlite(given, source, base)
    if scheme == "file" or not scheme or len(scheme) == 1:  # a plain path (or C:\...)
        return _file_store(given, source, base), None
    if scheme in _SERVER_SCHEMES and not urlparse(given).netloc:
        raise fail(Errors.E978, source=source, uri=given, detail="the server URL has no host")
    # a tracking server or a database MLflow knows (postgresql://, mysql://, databricks…):
    # opening it (tracker.open_tracker) says whether it works
    return given, None


def _sqlite(given: str, source: str, base: Path) -> tuple[str, str]:
    # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (in memory)
    rest, _, query = given[len("sqlite://") :].partition("?")
    if not given.lower().startswith("sqlite://") or rest[:1] not in ("", "/"):
        raise fail(
            Errors.E978, source=source, uri=given, detail="a SQLite URI is sqlite:///PATH.db"
        )
    name = unquote(rest[1:]) if rest.startswith("/") else ""
    if not name or name == ":memory:":
        detail = "an in-memory SQLite database keeps no run once the command ends"
        raise fail(Errors.E978, source=source, uri=given, detail=detail)
    path = _absolute(Path(name), base)
    _check_local(path, given, source, "the SQLite database file", needs_file=True)
    uri = f"sqlite:///{path.as_posix()}" + (f"?{query}" if query else "")
    return uri, (path.parent / ARTIFACTS_FOLDER).as_uri()


def _file_store(given: str, source: str, base: Path) -> str:
    if given.lower().startswith("file:"):
        parsed = urlparse(given)
        if parsed.netloc not in ("", "localhost"):
            raise fail(Errors.E978, source=source, uri=given, detail="a file URI on another host")
        path = Path(unquote(parsed.path))
    else:
        path = Path(given).expanduser()
    path = _absolute(path, base)
    _check_local(path, given, source, "the MLflow file store (a folder)", needs_file=False)
    return path.as_uri()


def _absolute(path: Path, base: Path) -> Path:
    # not resolve(): a symlinked folder stays what the user named
    return path if path.is_absolute() else (base / path).absolute()


def _check_local(path: Path, given: str, source: str, needed: str, *, needs_file: bool) -> None:
    """E973 when ``path`` (or a folder above it) is the wrong kind of thing, E972 when its
    folder does not exist. Whether it can be written is checked by opening it."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise fail(
                Errors.E973,
                source=source,
                uri=given,
                path=parent,
                what=what_is(parent),
                needed="a folder",
            )
    if path.exists() and path.is_dir() == needs_file:
        raise fail(
            Errors.E973, source=source, uri=given, path=path, what=what_is(path), needed=needed
        )
    folder = path.parent
    if not folder.is_dir():
        raise fail(Errors.E972, source=source, uri=given, folder=folder, what=needed)
