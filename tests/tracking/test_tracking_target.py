"""Where a run is logged: the tracking URI from --track or task.toml [tracking], made absolute
and checked on the file system before MLflow is even imported (no store is opened here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.task import load_task
from stillhouse.tracking import resolve_target

TASK = 'name = "reviews"\n[labels]\ngood = "g"\nbad = "b"\n'


def task_with(folder: Path, tracking: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.toml"
    path.write_text(TASK + (f"[tracking]\n{tracking}\n" if tracking else ""), encoding="utf-8")
    return path


def refused(code: str, *args: object) -> str:
    with pytest.raises(StillhouseError) as caught:
        resolve_target(*args)  # type: ignore[arg-type]
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def test_no_uri_anywhere_means_no_tracking(tmp_path: Path) -> None:
    assert resolve_target(load_task(task_with(tmp_path)), None) is None


def test_a_relative_sqlite_path_in_task_toml_is_next_to_task_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = load_task(task_with(tmp_path / "t", 'uri = "sqlite:///runs.db?timeout=30"'))
    monkeypatch.chdir(tmp_path)
    target = resolve_target(task, None)
    assert target is not None
    assert target.uri == f"sqlite:///{tmp_path / 't' / 'runs.db'}?timeout=30"
    assert target.artifact_location == (tmp_path / "t" / "mlartifacts").as_uri()
    assert target.experiment == "reviews" and target.register is None
    assert "[tracking] uri" in target.source


def test_track_overrides_task_toml_and_is_relative_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = load_task(
        task_with(
            tmp_path / "t",
            'uri = "sqlite:///a.db"\nexperiment = "exp"\nregister = "from-task"',
        )
    )
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    target = resolve_target(task, "sqlite:///b.db")
    assert target is not None and target.source == "--track"
    assert target.uri == f"sqlite:///{tmp_path / 'here' / 'b.db'}"
    assert target.experiment == "exp" and target.register == "from-task"
    assert resolve_target(task, None, "from-flag").register == "from-flag"  # type: ignore[union-attr]


def test_folder_paths_are_file_stores_and_servers_pass_through(tmp_path: Path) -> None:
    task = load_task(task_with(tmp_path))
    store = resolve_target(task, str(tmp_path / "mlruns"))
    assert store is not None and store.uri == (tmp_path / "mlruns").as_uri()
    assert store.artifact_location is None
    server = resolve_target(task, "https://mlflow.example.org")
    assert server is not None and server.uri == "https://mlflow.example.org"
    database = resolve_target(task, "postgresql://user@db/mlflow")
    assert database is not None and database.uri == "postgresql://user@db/mlflow"


def test_bad_uris_and_names_are_refused_with_their_codes(tmp_path: Path) -> None:
    task = load_task(task_with(tmp_path))
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    assert "--track" in refused("E971", task, "  ")
    assert "does not exist" in refused("E972", task, f"sqlite:///{tmp_path}/no/m.db")
    assert "a file" in refused("E973", task, f"sqlite:///{tmp_path}/file.txt/m.db")
    assert "a folder" in refused("E973", task, f"sqlite:///{tmp_path}")
    assert "a file" in refused("E973", task, f"file://{tmp_path}/file.txt")
    assert "in-memory" in refused("E978", task, "sqlite:///:memory:")
    assert "sqlite:///PATH.db" in refused("E978", task, "sqlite://host/m.db")
    assert "host" in refused("E978", task, "http://")
    assert "--register" in refused("E975", task, None, "model")
    assert "--register" in refused("E976", task, f"sqlite:///{tmp_path}/m.db", "")


def test_tracking_without_mlflow_installed_says_how_to_install_it(tmp_path: Path) -> None:
    task = task_with(tmp_path)
    script = (
        "import sys\n"
        "sys.modules['mlflow'] = None  # as if the tracking extra were not installed\n"
        "from stillhouse.errors import StillhouseError\n"
        "from stillhouse.task import load_task\n"
        "from stillhouse.tracking import start_tracking\n"
        "try:\n"
        f"    start_tracking(load_task({str(task)!r}), 'sqlite:///{tmp_path}/m.db')\n"
        "except StillhouseError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "[E970]" in done.stdout and "stillhouse[tracking]" in done.stdout, done
    assert not (tmp_path / "m.db").exists()
