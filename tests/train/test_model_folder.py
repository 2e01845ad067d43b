"""A model folder is exactly what `stillhouse train` wrote: manifest.json lists every file (the
card and its README included) with its size and sha256, and every way of loading a model
(load_model, predict, `model:` and cascade systems) refuses a folder that differs; a killed
run's temporary folder is removed by the next run; the seed and --out are checked up front.
Real `linear` models on 200 NusaX rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_data import NUSAX_TASK, nusax_test, nusax_train, reseal, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.predictors import open_systems
from stillhouse.provenance import file_sha256
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.folder import remove_stale_temporaries, temporary_sibling
from stillhouse.train.predict import predict_file

pytestmark = pytest.mark.slow

FAST = TrainSettings(recipe="linear", latency_texts=5, throughput_texts=20)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("model-folder")
    task = load_task(write_task(folder, NUSAX_TASK))
    data = folder / "train.jsonl"
    write_jsonl(data, nusax_train(200))
    train(task, folder / "models" / "a", FAST, data=data)
    return task, data, folder


@pytest.fixture
def copy(trained, tmp_path: Path) -> Path:
    """A fresh copy of the trained folder, for a test to change."""
    return Path(shutil.copytree(trained[2] / "models" / "a", tmp_path / "copy"))


def error_of(call) -> StillhouseError:
    with pytest.raises(StillhouseError) as error:
        call()
    return error.value


def edit_card(folder: Path, change) -> None:
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    change(card)
    (folder / "card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")


def test_the_manifest_lists_every_other_file_with_its_size_and_sha256(trained) -> None:
    model_dir = trained[2] / "models" / "a"
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "stillhouse-model-manifest"
    assert sorted(manifest["files"]) == [
        "README.md",
        "card.json",
        "vocabulary.json",
        "weights.safetensors",
    ]
    for name, entry in manifest["files"].items():
        path = model_dir / name
        assert entry == {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    assert card["format_version"] == 2 and "speed" in card  # written after the final card
    assert "manifest.json" in (model_dir / "README.md").read_text(encoding="utf-8")


def test_an_edited_temperature_is_refused_naming_the_card(copy: Path) -> None:
    edit_card(copy, lambda card: card["calibration"].update(temperature=0.5))
    error = error_of(lambda: load_model(copy))
    assert error.code == "E725" and "card.json is not the file `stillhouse train` wrote" in str(
        error
    )
    assert "restore it from a copy or train it again" in error.message


def test_a_swapped_label_order_is_refused(copy: Path) -> None:
    edit_card(copy, lambda card: card.update(labels=["negative", "neutral", "positive"]))
    error = error_of(lambda: load_model(copy))
    assert error.code == "E725" and "card.json" in error.message


def test_a_model_file_with_one_byte_changed_is_refused(copy: Path) -> None:
    weights = bytearray((copy / "weights.safetensors").read_bytes())
    weights[-1] ^= 0xFF  # same size: only the hash tells
    (copy / "weights.safetensors").write_bytes(bytes(weights))
    error = error_of(lambda: load_model(copy))
    assert error.code == "E725" and "weights.safetensors" in error.message
    assert "its sha256 differs from the one manifest.json records" in error.message


def test_an_edited_readme_is_refused(copy: Path) -> None:
    with (copy / "README.md").open("a", encoding="utf-8") as readme:
        readme.write("\nA note of mine.\n")
    error = error_of(lambda: load_model(copy))
    assert error.code == "E725" and "README.md" in error.message and "bytes where" in error.message


def test_a_deleted_file_is_refused(copy: Path) -> None:
    (copy / "vocabulary.json").unlink()
    error = error_of(lambda: load_model(copy))
    assert error.code == "E721"
    assert "vocabulary.json is missing (manifest.json lists it)" in error.message


def test_a_folder_without_its_manifest_is_refused(copy: Path) -> None:
    (copy / "manifest.json").unlink()
    error = error_of(lambda: load_model(copy))
    assert error.code == "E721" and "it has no manifest.json" in error.message
    (copy / "manifest.json").write_text("[]", encoding="utf-8")
    error = error_of(lambda: load_model(copy))
    assert error.code == "E721" and "manifest.json is not a model manifest" in error.message


def test_a_folder_of_the_format_before_manifests_is_refused_as_another_version(
    copy: Path,
) -> None:
    (copy / "manifest.json").unlink()
    edit_card(copy, lambda card: card.update(format_version=1))
    error = error_of(lambda: load_model(copy))
    assert error.code == "E722" and "model format version 1" in error.message
    assert "reads version 2. Train it again" in error.message


def test_a_file_added_to_the_folder_is_refused_naming_it(copy: Path) -> None:
    """Whether a loader would read an added file depends on the library (spaCy reads optional
    vocab files when present), so any file the manifest does not list is refused."""
    (copy / ".DS_Store").write_bytes(b"\0")
    error = error_of(lambda: load_model(copy))
    assert error.code == "E726" and ".DS_Store" in error.message
    assert "move it out of the folder" in error.message
    (copy / ".DS_Store").unlink()
    (copy / "extra").mkdir()  # an empty folder holds nothing to read
    assert load_model(copy).labels == ["positive", "neutral", "negative"]
    (copy / "extra" / "weights.safetensors").symlink_to(copy / "weights.safetensors")
    error = error_of(lambda: load_model(copy))
    assert error.code == "E726" and "extra/weights.safetensors" in error.message


def test_the_card_and_the_manifest_must_agree_on_the_model_files(copy: Path) -> None:
    edit_card(copy, lambda card: card["files"]["vocabulary.json"].update(sha256="0" * 64))
    reseal(copy)  # a manifest written over a card that lies
    error = error_of(lambda: load_model(copy))
    assert error.code == "E721" and "card.json lists model file vocabulary.json" in error.message


def test_predict_and_model_and_cascade_systems_refuse_a_changed_folder(
    trained, copy: Path, tmp_path: Path
) -> None:
    task, _, folder = trained
    edit_card(copy, lambda card: card["calibration"].update(temperature=0.5))
    write_jsonl(tmp_path / "texts.jsonl", [{"id": "1", "text": nusax_test(1)[0]["text"]}])
    predicting = error_of(lambda: predict_file(copy, tmp_path / "texts.jsonl", tmp_path / "p"))
    assert predicting.code == "E725" and not (tmp_path / "p").exists()
    assert error_of(lambda: open_systems([f"m=model:{copy}"], task)).code == "E725"
    good = folder / "models" / "a"
    cascade = f"c=cascade:model:{good}@0.9,model:{copy}"
    assert error_of(lambda: open_systems([cascade], task)).code == "E725"
    same = shutil.copytree(good, tmp_path / "same")  # a copy is the same model
    assert open_systems([f"c=cascade:model:{good}@0.9,model:{same}"], task)


def test_a_later_run_removes_temporary_folders_of_killed_runs_only(trained) -> None:
    task, data, folder = trained
    out = folder / "models" / "b"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # a writer that is gone, as after kill -9
    live = temporary_sibling(out)  # this test's process: alive, maybe still writing
    host = live.name.split(".")[2]
    dead = out.parent / f".b.{host}.{ended.pid}.0123abcd.tmp"
    kept = [
        live,
        out.parent / f".b.elsewhere.{ended.pid}.0123abcd.tmp",  # another host's: unknowable
        out.parent / f".b.x.{host}.{ended.pid}.0123abcd.tmp",  # the output b.x's
        out.parent / ".b.0123abcd.tmp",  # an older version's: its writer is unknown
        out.parent / ".b.x.checkpoints",  # a LoRA run's, kept to resume it
    ]
    for path in (dead, *kept):
        path.mkdir(parents=True)
        (path / "weights.safetensors").write_bytes(b"half written")
    said: list[str] = []
    train(task, out, FAST, data=data, log=said.append)
    assert not dead.exists() and all(path.exists() for path in kept)
    assert any(f"left by a training run that was killed (process {ended.pid})" in m for m in said)
    assert load_model(out).labels == ["positive", "neutral", "negative"]
    assert remove_stale_temporaries(out, said.append) == []
    for path in kept:
        shutil.rmtree(path)


def test_an_output_that_is_a_file_or_a_link_is_refused_as_such(trained, tmp_path: Path) -> None:
    task, data, _ = trained
    (tmp_path / "model").write_text("not a folder", encoding="utf-8")
    error = error_of(lambda: train(task, tmp_path / "model", FAST, data=data))
    assert error.code == "E711" and "already exists (a file);" in error.message
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    error = error_of(lambda: train(task, tmp_path / "link", FAST, data=data))
    assert error.code == "E711" and "already exists (a link to nothing)" in error.message
    assert (tmp_path / "model").read_text(encoding="utf-8") == "not a folder"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
def test_a_seed_out_of_range_is_refused_by_the_library(trained, tmp_path: Path, seed) -> None:
    task, data, _ = trained
    settings = TrainSettings(recipe="linear", seed=seed)
    error = error_of(lambda: train(task, tmp_path / "m", settings, data=data))
    assert error.code == "E708"
    assert "--seed must be an integer from 0 to 4294967295" in error.message
    assert not (tmp_path / "m").exists()


def test_a_negative_seed_is_refused_by_the_cli_without_a_traceback(trained, run_cli) -> None:
    _, data, folder = trained
    args = ("train", "--task", "task.toml", "--data", str(data), "--recipe", "linear")
    result = run_cli(folder, *args, "--seed", "-1", "--out", "models/seed")
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "E708" in output and "--seed must be an integer from 0 to 4294967295" in output
    assert "Traceback" not in output and not (folder / "models" / "seed").exists()
