"""An input path that exists but is the wrong kind is named for what it is (a folder, a file, a
device such as /dev/null), never "does not exist"; a path with nothing there still is."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from stillhouse.errors import Errors, StillhouseError
from stillhouse.llm.models import check_gguf
from stillhouse.paths import require_file, require_folder, what_is
from stillhouse.train.load import read_card


def error_of(call: Callable[[], object]) -> StillhouseError:
    with pytest.raises(StillhouseError) as raised:
        call()
    return raised.value


def test_what_is_names_folders_files_devices_and_pipes(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "pipe")

    assert what_is(tmp_path) == "a folder"
    assert what_is(tmp_path / "file") == "a file"
    assert what_is(Path("/dev/null")) == "a device file"
    assert what_is(tmp_path / "pipe") == "a named pipe"


def test_require_file_and_folder_pass_the_right_kind_through(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")

    assert require_file(tmp_path / "file", Errors.E101, Errors.E108) == tmp_path / "file"
    assert require_folder(tmp_path, Errors.E720, Errors.E727) == tmp_path


def test_a_named_pipe_is_refused_before_anything_reads_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")  # reading it would block until a writer comes

    error = error_of(lambda: require_file(tmp_path / "pipe.jsonl", Errors.E101, Errors.E108))

    assert error.code == "E108" and "is a named pipe, not a regular file" in error.message


@pytest.mark.parametrize("kind", ["folder", "device"])
def test_a_gguf_path_that_is_not_a_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    path = tmp_path if kind == "folder" else Path("/dev/null")

    error = error_of(lambda: check_gguf(path))

    assert error.code == "E314"
    what = "a folder" if kind == "folder" else "a device file"
    assert f"Model file {path} is {what}, not a regular file" in error.message


def test_a_model_folder_that_is_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "model.jsonl").write_text("{}\n")

    missing = error_of(lambda: read_card(tmp_path / "nothing"))
    a_file = error_of(lambda: read_card(tmp_path / "model.jsonl"))

    assert missing.code == "E720" and "does not exist" in missing.message
    assert a_file.code == "E727"
    assert f"Model folder {tmp_path / 'model.jsonl'} is a file, not a folder" in a_file.message
