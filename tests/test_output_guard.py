"""The output guard: an output that would land on an input, another output, or a place that
cannot be written is refused before any work, naming the option and the path; the atomic writer
turns operating-system errors into the same kind of message and leaves the old file whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.output_guard import Input, Output, check_outputs, store_inputs, task_inputs


def refused(outputs: list[Output], inputs: list[Input]) -> StillhouseError:
    with pytest.raises(StillhouseError) as error:
        check_outputs(outputs, inputs)
    return error.value


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "task.toml").write_text('name = "t"\n')
    (tmp_path / "task" / "stillhouse.db").write_bytes(b"SQLite format 3\x00")
    (tmp_path / "data.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "card.json").write_text("{}")
    return tmp_path


def inputs_of(workspace: Path) -> list[Input]:
    return [
        *task_inputs(workspace / "task" / "task.toml", workspace / "task" / "stillhouse.db"),
        Input("the input data", workspace / "data.jsonl"),
        Input("the model folder", workspace / "model", folder=True),
    ]


@pytest.mark.parametrize(
    ("relative", "what", "relation"),
    [
        ("task/stillhouse.db", "the store", "is"),
        ("task/stillhouse.db-wal", "the store", "is"),
        ("task/task.toml", "the task file", "is"),
        ("task/../data.jsonl", "the input data", "is"),
        ("model/predictions.jsonl", "the model folder", "is inside"),
        ("model", "the model folder", "is"),
    ],
)
def test_an_output_on_an_input_is_refused_naming_both(
    workspace: Path, relative: str, what: str, relation: str
) -> None:
    error = refused([Output("--out", workspace / relative)], inputs_of(workspace))
    assert error.code == "E120"
    assert f"--out {workspace / relative} {relation} {what} this command reads" in error.message


def test_symlinks_and_hard_links_to_an_input_are_the_input(workspace: Path) -> None:
    (workspace / "alias.jsonl").symlink_to(workspace / "data.jsonl")
    (workspace / "folder-link").symlink_to(workspace / "task")
    os.link(workspace / "task" / "task.toml", workspace / "hard.toml")
    for path, what in [
        (workspace / "alias.jsonl", "the input data"),
        (workspace / "folder-link" / "stillhouse.db", "the store"),
        (workspace / "hard.toml", "the task file"),
    ]:
        error = refused([Output("-o", path)], inputs_of(workspace))
        assert error.code == "E120" and what in error.message, error.message


def test_two_outputs_of_one_command_must_differ(workspace: Path) -> None:
    outputs = [
        Output("--out", workspace / "r" / "audit.json"),
        Output("--fix", workspace / "r/audit.json"),
    ]
    error = refused(outputs, [])
    assert error.code == "E121" and "--fix" in error.message and "--out" in error.message


def test_a_folder_where_a_file_goes_and_the_reverse(workspace: Path) -> None:
    assert refused([Output("--out", workspace / "model")], []).code == "E122"
    assert refused([Output("--out", workspace / "data.jsonl", folder=True)], []).code == "E123"
    blocked = refused([Output("--out", workspace / "data.jsonl" / "x" / "p.jsonl")], [])
    assert blocked.code == "E124" and str(workspace / "data.jsonl") in blocked.message


def test_free_space_is_checked_before_the_work(workspace: Path) -> None:
    error = refused([Output("--out", workspace / "new" / "big.jsonl", needed_bytes=1 << 62)], [])
    assert error.code == "E126" and "free" in error.message and str(workspace) in error.message


def test_good_outputs_pass_and_leave_nothing_behind(workspace: Path) -> None:
    before = sorted(workspace.rglob("*"))
    check_outputs(
        [
            Output("--out", workspace / "reports" / "run1" / "results.json"),
            Output("--out", workspace / "models" / "linear", folder=True),
            Output("--fix", workspace / "clean.jsonl"),
        ],
        inputs_of(workspace),
    )
    assert sorted(workspace.rglob("*")) == before  # probes removed, no folder created


def test_store_inputs_name_sqlites_companion_files(tmp_path: Path) -> None:
    names = [entry.path.name for entry in store_inputs(tmp_path / "stillhouse.db")]
    assert names == ["stillhouse.db", "stillhouse.db-wal", "stillhouse.db-shm"]


def run_in_private_mounts(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``script`` (Python) run as root in a private mount namespace, where tmp_path/ro is a
    read-only bind mount and tmp_path/small a 256 KiB tmpfs."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "small").mkdir()
    shell = (
        f"mount --bind {tmp_path}/ro {tmp_path}/ro && mount -o remount,bind,ro {tmp_path}/ro && "
        f"mount -t tmpfs -o size=256k tmpfs {tmp_path}/small && "
        f'exec "{sys.executable}" -c "$0"'
    )
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", shell, script], capture_output=True, text=True, timeout=60
    )


def test_read_only_and_full_file_systems_are_clean_messages(tmp_path: Path) -> None:
    script = f"""
from pathlib import Path
from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.output_guard import Output, check_outputs
root = Path({str(tmp_path)!r})
try:
    check_outputs([Output("--out", root / "ro" / "p.jsonl")], [])
except StillhouseError as error:
    print(error.code, error.message)
(root / "small" / "old.jsonl").write_text("kept\\n")
try:
    write_jsonl(root / "small" / "old.jsonl", ({{"text": "x" * 1000}} for _ in range(10_000)))
except StillhouseError as error:
    print(error.code, error.message)
print(sorted(p.name for p in (root / "small").iterdir()), (root / "small" / "old.jsonl").read_text())
"""
    done = run_in_private_mounts(script, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("E125") and "Read-only file system" in lines[0], lines
    assert lines[1].startswith("E112") and f"{tmp_path}/small/old.jsonl" in lines[1], lines
    assert lines[2] == "['old.jsonl'] kept"  # the old file whole, the temporary file gone


def test_the_atomic_writer_names_the_path_of_a_folder_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "out.jsonl").mkdir()
    with pytest.raises(StillhouseError) as error:
        write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    assert error.value.code == "E113" and str(tmp_path / "out.jsonl") in error.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
