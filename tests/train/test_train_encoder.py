"""Recipe `encoder`: the ONNX export matches sentence-transformers, int8 is ≥ 3.5× smaller and
close, and training on banking77 (10 intents × 10) is reproducible and loads without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_data import (
    accuracy_in_a_fresh_process,
    banking77_sample,
    banking77_task,
    nusax_train,
    write_task,
)

from stillhouse.data.io import write_jsonl
from stillhouse.llm.fewshot import embed
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train
from stillhouse.train.export import base_model_path, exported_encoder
from stillhouse.train.recipes.parts.onnx_encoder import (
    PADDING_SLACK,
    OnnxSentenceEncoder,
    _similar_length_batches,
)

pytestmark = pytest.mark.slow


def test_onnx_embeddings_match_sentence_transformers() -> None:
    # long and short texts in one batch: padding and truncation must not change a text's vector
    texts = [row["text"] for row in nusax_train(48)] + ["ok", "Where is my card? " * 80]
    reference = embed(texts)
    tokenizer = base_model_path() / "tokenizer.json"
    fp32 = OnnxSentenceEncoder(exported_encoder("none"), tokenizer, threads=2).embed(texts)
    int8 = OnnxSentenceEncoder(exported_encoder("int8"), tokenizer, threads=2).embed(texts)
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (fp32 * reference).sum(axis=1).min() > 0.9999
    cosine = (int8 * reference).sum(axis=1)
    assert cosine.mean() > 0.99 and cosine.min() > 0.94  # "ok" (3 tokens) is the worst: 0.95
    assert exported_encoder("none").stat().st_size > 3.5 * exported_encoder("int8").stat().st_size
    # batching by token count: the fp32 vectors are those of each text alone
    alone = OnnxSentenceEncoder(exported_encoder("none"), tokenizer, threads=2)
    singles = np.concatenate([alone.embed([text]) for text in texts[-6:]])
    np.testing.assert_allclose(fp32[-6:], singles, atol=1e-5)


def test_batches_keep_padding_within_the_slack() -> None:
    lengths = [3, 40, 12, 12, 13, 5, 4, 256, 12, 11, 3, 3]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = list(_similar_length_batches(order, lengths, batch_size=3))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        assert len(batch) <= 3
        assert len(batch) == 1 or max(sizes) * len(batch) <= (1 + PADDING_SLACK) * sum(sizes)
    assert [len(batch) for batch in batches] == [3, 2, 3, 2, 1, 1]


def test_encoder_training_is_reproducible_and_runs_without_torch(tmp_path: Path) -> None:
    rows = banking77_sample(labels=10, per_label=10)
    task = load_task(write_task(tmp_path, banking77_task(rows)))
    data = write_jsonl(tmp_path / "train.jsonl", rows) and tmp_path / "train.jsonl"
    settings = TrainSettings(recipe="encoder", latency_texts=10, throughput_texts=50, threads=2)
    first = train(task, tmp_path / "m1", settings, data=data).card
    second = train(task, tmp_path / "m2", settings, data=data).card
    assert first["model_sha256"] == second["model_sha256"]
    assert first["base_model"] == {
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "license": "Apache-2.0",
    }
    assert first["quantization"] == "int8" and set(first["files"]) == {
        "encoder.onnx",
        "tokenizer.json",
        "head.safetensors",
    }
    assert first["held_out"]["n"] == 20 and first["held_out"]["accuracy"]["estimate"] >= 0.6

    test = banking77_sample(labels=10, per_label=5, split="test")
    output = accuracy_in_a_fresh_process(tmp_path / "m1", test)
    assert output["torch"] is False  # inference is onnxruntime + tokenizers only
    assert output["accuracy"] >= 0.7  # 10 intents, chance 0.1
