"""Recipe `contrastive-encoder`: SetFit's contrastive fine-tuning really changes the encoder,
the folder predicts without torch, the run is bounded by steps and minutes, and nothing of the
trainer's chatter reaches stdout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_data import accuracy_in_a_fresh_process, banking77_sample, banking77_task, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.export import base_model_path, exported_encoder
from stillhouse.train.recipes.parts.onnx_encoder import OnnxSentenceEncoder

pytestmark = pytest.mark.slow

# 6 intents × 15 = 90 short texts: 72 train + 18 held out
SETTINGS = dict(
    recipe="contrastive-encoder", max_steps=15, threads=2, latency_texts=5, throughput_texts=20
)


def write_workspace(folder: Path) -> None:
    rows = banking77_sample(labels=6, per_label=15)
    write_task(folder, banking77_task(rows))
    write_jsonl(folder / "train.jsonl", rows)


def test_the_tuned_encoder_predicts_without_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_workspace(tmp_path)
    steps: list[tuple] = []
    card = train(
        load_task(tmp_path / "task.toml"),
        tmp_path / "model",
        TrainSettings(**SETTINGS),  # type: ignore[arg-type]
        data=tmp_path / "train.jsonl",
        progress=lambda *args: steps.append(args),
    ).card
    assert capsys.readouterr().out == ""  # the trainer's loss dicts stay off stdout
    assert [step[:2] for step in steps if len(step) == 3] == [(i, 15) for i in range(1, 16)]
    assert card["recipe"] == "contrastive-encoder" and card["quantization"] == "int8"
    assert card["refit"] is False and card["base_model"]["license"] == "Apache-2.0"
    assert card["hyper_parameters"]["max_steps"] == 15
    assert set(card["files"]) == {"encoder.onnx", "tokenizer.json", "head.safetensors"}
    assert card["files"]["encoder.onnx"]["bytes"] < 30e6  # int8, not the 90 MB fp32 graph
    assert card["held_out"]["n"] == 18 and card["held_out"]["accuracy"]["estimate"] >= 0.6
    assert card["calibration"]["temperature"] > 0
    assert not (tmp_path / ".model.checkpoints").exists()

    # fine-tuning moved the sentence vectors away from the bundled encoder's
    texts = [row["text"] for row in banking77_sample(labels=6, per_label=3, split="test")]
    tokenizer = base_model_path() / "tokenizer.json"
    tuned = OnnxSentenceEncoder(tmp_path / "model" / "encoder.onnx", tokenizer, 2).embed(texts)
    base = OnnxSentenceEncoder(exported_encoder("int8"), tokenizer, 2).embed(texts)
    cosines = np.sum(tuned * base, axis=1)
    assert cosines.mean() < 0.99, cosines

    test = banking77_sample(labels=6, per_label=5, split="test")
    output = accuracy_in_a_fresh_process(tmp_path / "model", test)
    assert output["torch"] is False and output["runtime"] == "onnxruntime"
    assert output["accuracy"] >= 0.6  # 6 intents, chance 0.17
    probs = load_model(tmp_path / "model").probabilities([row["text"] for row in test])
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_max_minutes_stops_the_fine_tuning(tmp_path: Path) -> None:
    write_workspace(tmp_path)
    steps: list[tuple] = []
    train(
        load_task(tmp_path / "task.toml"),
        tmp_path / "model",
        TrainSettings(**SETTINGS | {"max_minutes": 1e-6}),  # type: ignore[arg-type]
        data=tmp_path / "train.jsonl",
        progress=lambda *args: steps.append(args),
    )
    assert [step[0] for step in steps if len(step) == 3] == [1]  # stopped after the first step
