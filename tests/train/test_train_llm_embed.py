"""Recipes `llm-embed` / `llm-embed-ngrams` on SmolLM2-135M (a real GGUF run by llama.cpp in
embedding mode, cut to its first blocks): the cut GGUF has those blocks only, training writes
a folder that reloads to the same probabilities and answers through predict; a remote LLM is
refused; the language warning names the recipe to use instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_data import NUSAX_TASK, nusax_test, nusax_train, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.task import Task, load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.languages import language_warning
from stillhouse.train.recipe import find_recipe
from stillhouse.train.recipes.parts.llm_embedder import block_count, truncated_gguf

TASK = NUSAX_TASK + '[llm]\nmodel = "smollm2-135m"\n'
FAST = dict(threads=2, latency_texts=2, throughput_texts=8)

pytestmark = pytest.mark.slow


def test_truncated_gguf_keeps_the_first_blocks(tmp_path: Path) -> None:
    import gguf

    from stillhouse.llm.models import resolve_embedded

    base = resolve_embedded("smollm2-135m")
    cut = tmp_path / "cut.gguf"
    truncated_gguf(base, 3, cut)
    assert block_count(base) == 30 and block_count(cut) == 3
    names = {tensor.name for tensor in gguf.GGUFReader(cut).tensors}
    assert "blk.2.attn_q.weight" in names and not any(n.startswith("blk.3.") for n in names)
    assert "token_embd.weight" in names and "output_norm.weight" in names
    # the token embeddings (49152 × 576) stay whole; 27 of 30 blocks are gone
    assert cut.stat().st_size < base.stat().st_size / 2


def test_llm_embed_ngrams_trains_reloads_and_predicts(tmp_path: Path, run_cli) -> None:
    write_task(tmp_path, TASK)
    write_jsonl(tmp_path / "train.jsonl", nusax_train(60))
    write_jsonl(tmp_path / "test.jsonl", nusax_test(20))
    task = load_task(tmp_path / "task.toml")
    lines: list[str] = []
    summary = train(
        task,
        tmp_path / "model",
        TrainSettings(recipe="llm-embed-ngrams", **FAST),
        data=tmp_path / "train.jsonl",
        log=lines.append,
    )
    card = summary.card
    assert card["recipe"] == "llm-embed-ngrams"
    assert card["base_model"]["name"] == "smollm2-135m"
    assert card["base_model"]["blocks_kept"] == "8 of 30"  # a quarter, rounded
    assert card["hyper_parameters"]["char_ngrams"] == [2, 5]
    files = {path.name for path in (tmp_path / "model").iterdir()}
    assert {"model.gguf", "head.safetensors", "vocabulary.json", "card.json"} <= files
    assert any("cut to 8 of 30 blocks" in line for line in lines)
    texts = [row["text"] for row in nusax_test(20)]
    first = load_model(tmp_path / "model", task=task)
    probs = first.probabilities(texts)
    assert probs.shape == (20, 3) and np.allclose(probs.sum(axis=1), 1)
    # a fresh load computes the same probabilities, one text at a time or all at once
    again = load_model(tmp_path / "model", task=task)
    assert np.allclose(again.probabilities(texts), probs, atol=1e-6)
    assert np.allclose(again.probabilities(texts[:1]), probs[:1], atol=1e-6)
    # and the CLI's predict answers with it
    result = run_cli(
        tmp_path,
        "predict",
        "--model",
        "model",
        "--input",
        "test.jsonl",
        "--out",
        "preds.jsonl",
        "--task",
        "task.toml",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    labels = task.label_names
    assert [row["label"] for row in rows] == [labels[i] for i in probs.argmax(axis=1)]


def test_llm_embed_alone_has_no_ngrams(tmp_path: Path) -> None:
    write_task(tmp_path, TASK)
    write_jsonl(tmp_path / "train.jsonl", nusax_train(40))
    task = load_task(tmp_path / "task.toml")
    card = train(
        task,
        tmp_path / "model",
        TrainSettings(recipe="llm-embed", refit=False, **FAST),
        data=tmp_path / "train.jsonl",
    ).card
    assert card["hyper_parameters"]["char_ngrams"] is None
    assert not (tmp_path / "model" / "vocabulary.json").exists()
    assert load_model(tmp_path / "model", task=task).probabilities(["good food"]).shape == (1, 3)


def test_llm_embed_refuses_a_remote_llm(tmp_path: Path) -> None:
    write_task(tmp_path, NUSAX_TASK + '[llm]\nmodel = "openai:http://127.0.0.1:9/v1#m"\n')
    write_jsonl(tmp_path / "train.jsonl", nusax_train(30))
    with pytest.raises(StillhouseError) as raised:
        train(
            load_task(tmp_path / "task.toml"),
            tmp_path / "model",
            TrainSettings(recipe="llm-embed", **FAST),
            data=tmp_path / "train.jsonl",
        )
    assert raised.value.code == "E753" and "openai:" in raised.value.message
    assert not (tmp_path / "model").exists()


def test_language_warning_names_the_languages_and_the_recipes_instead() -> None:
    task = Task(name="t", labels={"a": "", "b": ""}, languages=("en", "jv", "bug"))
    warning = language_warning(task, find_recipe("encoder", "classify"))
    assert warning is not None
    assert "jv, bug" in warning and "`encoder`" in warning
    assert "`linear`" in warning and "`llm-embed-ngrams`" in warning
    assert language_warning(task, find_recipe("linear", "classify")) is None
    english = Task(name="t", labels={"a": "", "b": ""}, languages=("en",))
    assert language_warning(english, find_recipe("encoder", "classify")) is None


def test_train_says_the_warning(tmp_path: Path) -> None:
    name = 'name = "nusax-en"\n'
    write_task(tmp_path, NUSAX_TASK.replace(name, name + 'languages = ["en", "jv"]\n'))
    write_jsonl(tmp_path / "train.jsonl", nusax_train(30))
    lines: list[str] = []
    train(
        load_task(tmp_path / "task.toml"),
        tmp_path / "model",
        TrainSettings(recipe="encoder", **FAST),
        data=tmp_path / "train.jsonl",
        log=lines.append,
    )
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "jv" in warnings[0] and "`linear`" in warnings[0]
