"""Recipe `encoder-ngrams` (all-MiniLM-L6-v2 int8 beside the TF-IDF n-grams, one head): the
folder holds both and reloads to the same probabilities; a text's score does not depend on its
batch mates; the head reads both blocks; predict answers with it; n-gram options apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from train_data import NUSAX_TASK, nusax_test, nusax_train, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.recipes.parts.onnx_encoder import DIMENSION

FAST = dict(threads=1, latency_texts=2, throughput_texts=8)


def test_encoder_ngrams_trains_reloads_and_predicts(tmp_path: Path, run_cli) -> None:
    write_task(tmp_path, NUSAX_TASK)
    write_jsonl(tmp_path / "train.jsonl", nusax_train(90))
    write_jsonl(tmp_path / "test.jsonl", nusax_test(30))
    task = load_task(tmp_path / "task.toml")
    lines: list[str] = []
    card = train(
        task,
        tmp_path / "model",
        TrainSettings(recipe="encoder-ngrams", **FAST),
        data=tmp_path / "train.jsonl",
        log=lines.append,
    ).card
    assert card["recipe"] == "encoder-ngrams"
    assert card["base_model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    parameters = card["hyper_parameters"]
    assert parameters["word_ngrams"] == [1, 2] and parameters["char_ngrams"] == [2, 5]
    assert parameters["encoder_weight"] == 2.0 and parameters["batch_size"] == 1
    files = {path.name for path in (tmp_path / "model").iterdir()}
    assert {"encoder.onnx", "tokenizer.json", "vocabulary.json", "head.safetensors"} <= files
    assert any("one at a time" in line for line in lines)

    texts = [row["text"] for row in nusax_test(30)]
    model = load_model(tmp_path / "model", task=task)
    probs = model.probabilities(texts)
    assert probs.shape == (30, 3) and np.allclose(probs.sum(axis=1), 1)
    # one text at a time inside: alone or among others, a text gets the same probabilities
    again = load_model(tmp_path / "model", task=task)
    assert np.allclose(again.probabilities(texts), probs, atol=1e-6)
    assert np.allclose(again.probabilities(texts[3:4]), probs[3:4], atol=1e-6)
    assert np.allclose(again.probabilities(texts[::-1])[::-1], probs, atol=1e-6)

    # the head reads both blocks: n-gram columns first, then the 384 embedding columns
    scorer = model.scorer
    width = sum(len(v.vocabulary_) for v in scorer.vectorizers.values())
    weights = scorer.head.weight
    assert weights.shape[-1] == width + DIMENSION
    assert np.abs(weights[..., :width]).sum() > 0 and np.abs(weights[..., width:]).sum() > 0

    result = run_cli(
        tmp_path,
        *("predict", "--model", "model", "--input", "test.jsonl", "--out", "preds.jsonl"),
        *("--task", "task.toml"),
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [row["label"] for row in rows] == [task.label_names[i] for i in probs.argmax(axis=1)]


def test_encoder_ngrams_reads_the_ngram_options(tmp_path: Path) -> None:
    write_task(tmp_path, NUSAX_TASK)
    write_jsonl(tmp_path / "train.jsonl", nusax_train(40))
    card = train(
        load_task(tmp_path / "task.toml"),
        tmp_path / "model",
        TrainSettings(recipe="encoder-ngrams", word_ngrams=(1, 1), char_ngrams=None, **FAST),
        data=tmp_path / "train.jsonl",
    ).card
    assert card["hyper_parameters"]["char_ngrams"] is None
    vocabulary = json.loads((tmp_path / "model" / "vocabulary.json").read_text())
    assert set(vocabulary) == {"word"} and all(" " not in term for term in vocabulary["word"])
