"""The window: which logged predictions a monitor run reads — one system's, between --since and
--until — from the task's store (read only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from stillhouse.data.store import LoggedSystem, PredictionRecord, Store
from stillhouse.errors import Errors, fail
from stillhouse.task import Task


@dataclass(frozen=True)
class Window:
    """One system's logged predictions with ``since`` ≤ time < ``until`` (None: open), in time
    order; ``store`` is the store's path."""

    system: str
    since: float | None
    until: float | None
    records: list[PredictionRecord]
    store: str


def parse_time(option: str, value: str | None) -> float | None:
    """Seconds since the epoch for a date (``2026-12-01``: midnight) or an ISO 8601 time
    (``2026-12-01T08:00``, ``2026-12-01 08:00:00+02:00``, ``…Z``); without an offset it is UTC.
    None stays None; anything else is E831 naming ``option``."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(Errors.E831, option=option, value=value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(seconds: float | None) -> str | None:
    """The time as ISO 8601 in UTC, to the second (None stays None)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def read_window(
    task: Task,
    *,
    since: str | None = None,
    until: str | None = None,
    system: str | None = None,
) -> Window:
    """The predictions ``system`` logged in the window (``since``/``until`` as the CLI takes
    them). The store is opened read only and checked against the task (E204–E206). E831/E832
    for a malformed or empty window; E833 when it holds no prediction; E834 for a system with
    none in it; E835 when several systems logged and none was chosen."""
    start, end = parse_time("--since", since), parse_time("--until", until)
    if start is not None and end is not None and end <= start:
        raise fail(Errors.E832, since=since, until=until)
    with Store.for_task(task, create=False) as store:
        present = store.logged_systems(start, end)
        where = _window_words(since, until)
        if not present:
            everything = store.logged_systems()
            raise fail(
                Errors.E833,
                path=store.path,
                window=where,
                holds=_holdings(everything, windowed=bool(where)),
            )
        names = [entry.name for entry in present]
        if system is None:
            if len(present) > 1:
                raise fail(Errors.E835, path=store.path, window=where, names=_listed(present))
            system = names[0]
        elif system not in names:
            raise fail(
                Errors.E834, name=system, path=store.path, window=where, names=_listed(present)
            )
        records = store.logged_predictions(task.kind, system, start, end)
        return Window(system, start, end, records, str(store.path))


def _window_words(since: str | None, until: str | None) -> str:
    if since is not None and until is not None:
        return f" from {since} until {until}"
    if since is not None:
        return f" since {since}"
    if until is not None:
        return f" before {until}"
    return ""


def _listed(systems: list[LoggedSystem]) -> str:
    return ", ".join(f"`{entry.name}` ({entry.count})" for entry in systems)


def _holdings(systems: list[LoggedSystem], *, windowed: bool) -> str:
    """What the store holds outside the window, for E833 (empty when it holds nothing)."""
    if not systems or not windowed:
        return ""
    count = sum(entry.count for entry in systems)
    first = min(entry.first for entry in systems)
    last = max(entry.last for entry in systems)
    return f" (it holds {count} from {iso(first)} to {iso(last)})"
