"""Recipe `lora-encoder`: a run killed with SIGKILL resumes from its checkpoint and finishes a
complete model folder (merged, ONNX int8) that predicts without torch; bad bounds are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_data import (
    accuracy_in_a_fresh_process,
    banking77_sample,
    banking77_task,
    kill_after_first_checkpoint,
    write_task,
)

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train
from stillhouse.train.recipe import check_settings

# 6 intents × 15 = 90 short texts: 72 train (5 steps of 16 per epoch) + 18 held out
SETTINGS = dict(
    recipe="lora-encoder",
    max_steps=12,
    checkpoint_every=2,
    threads=2,
    latency_texts=5,
    throughput_texts=20,
)
TRAIN_SCRIPT = """
import sys
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train
folder = sys.argv[1]
settings = TrainSettings(**{settings!r})
train(load_task(folder + "/task.toml"), folder + "/model", settings, data=folder + "/train.jsonl")
"""


@pytest.mark.slow
def test_a_killed_run_resumes_and_writes_a_model_that_runs_without_torch(
    tmp_path: Path,
) -> None:
    rows = banking77_sample(labels=6, per_label=15)
    write_task(tmp_path, banking77_task(rows))
    write_jsonl(tmp_path / "train.jsonl", rows)
    kill_after_first_checkpoint(TRAIN_SCRIPT.format(settings=SETTINGS), tmp_path, 120)

    messages: list[str] = []
    card = train(
        load_task(tmp_path / "task.toml"),
        tmp_path / "model",
        TrainSettings(**SETTINGS),  # type: ignore[arg-type]
        data=tmp_path / "train.jsonl",
        log=messages.append,
    ).card
    run = card["training_run"]
    assert any(message.startswith("resuming from the checkpoint at step") for message in messages)
    assert run["resumed_from_step"] is not None and 2 <= run["resumed_from_step"] < 12
    assert run["steps"] == 12 and run["stopped"] == "max_steps"
    # held-out evaluations at step 0 (linear probe), after each epoch (5, 10) and at the end
    assert [evaluation["step"] for evaluation in run["evaluations"]] == [0, 5, 10, 12]
    assert run["best_step"] in (0, 5, 10, 12)
    assert not (tmp_path / ".model.checkpoints").exists()  # removed once the folder is complete
    assert card["recipe"] == "lora-encoder" and card["quantization"] == "int8"
    assert card["refit"] is False and card["base_model"]["license"] == "Apache-2.0"
    assert set(card["files"]) == {"encoder.onnx", "tokenizer.json", "head.safetensors"}
    assert card["hyper_parameters"]["rank"] == 8 and card["hyper_parameters"]["max_length"] == 64
    assert card["files"]["encoder.onnx"]["bytes"] < 30e6  # int8, not the 90 MB fp32 graph
    assert card["held_out"]["n"] == 18 and card["held_out"]["accuracy"]["estimate"] >= 0.6
    readme = (tmp_path / "model" / "README.md").read_text(encoding="utf-8")
    assert "lora-encoder" in readme and "sentence-transformers/all-MiniLM-L6-v2" in readme
    assert "resumed from step" in readme

    test = banking77_sample(labels=6, per_label=5, split="test")
    output = accuracy_in_a_fresh_process(tmp_path / "model", test)
    assert output["torch"] is False and output["runtime"] == "onnxruntime"
    assert output["accuracy"] >= 0.6  # 6 intents, chance 0.17


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        (TrainSettings(recipe="lora-encoder", max_steps=0), "E708"),
        (TrainSettings(recipe="lora-encoder", max_minutes=-1.0), "E708"),
        (TrainSettings(recipe="lora-encoder", epochs=0), "E708"),
        (TrainSettings(recipe="lora-encoder", quantize="q8_0"), "E709"),
        (TrainSettings(recipe="lora-llm", max_steps=0), "E708"),
    ],
)
def test_bad_lora_settings_are_refused_before_any_work(settings: TrainSettings, code: str) -> None:
    with pytest.raises(StillhouseError) as error:
        check_settings(settings)
    assert error.value.code == code
