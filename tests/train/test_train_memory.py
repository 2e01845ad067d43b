"""E710: every recipe with an estimate refuses settings whose memory estimate exceeds
``max_memory_gb``, says the estimate and what would lower it, and does so before the expensive
work (no embedding, no training step, nothing written). lora-llm's refusal is tested in
test_train_lora_llm.py (it needs the LLM's config)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from structured_data import TYPES, presidio_multilabel, presidio_spans, task_text
from train_data import NUSAX_TASK, nusax_train, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.registry import recipes
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train
from stillhouse.train.recipe import Recipe
from stillhouse.train.recipes.encoder import EncoderParams, encoder_bytes
from stillhouse.train.recipes.lora_encoder import LoraEncoderParams, lora_encoder_bytes
from stillhouse.train.recipes.spacy_ner import spacy_ner_bytes


@pytest.mark.parametrize(
    ("kind", "recipe", "detail"),
    [
        ("classify", "linear", "3 labels × "),
        ("classify", "encoder", "60 texts × 384 embeddings, a 3-label head"),
        ("classify", "encoder-ngrams", "60 texts × 384 embeddings, a 3-label head"),
        ("classify", "contrastive-encoder", "contrastive training of all-MiniLM-L6-v2 ("),
        ("classify", "lora-encoder", "LoRA training of all-MiniLM-L6-v2 (batch 16 × 64 tokens"),
        ("multilabel", "linear", "6 labels × "),
        ("multilabel", "encoder", "60 texts × 384 embeddings, a 6-label head"),
        ("spans", "spacy-ner", "spaCy NER training ("),
    ],
)
def test_a_tiny_memory_budget_refuses_before_any_expensive_work(
    tmp_path: Path, kind: str, recipe: str, detail: str
) -> None:
    if kind == "classify":
        write_task(tmp_path, NUSAX_TASK)
        rows = nusax_train(60)
    elif kind == "spans":
        write_task(tmp_path, task_text("pii", "spans", "spans", TYPES[:4]))
        rows = presidio_spans(0, 60, TYPES[:4])
    else:
        write_task(tmp_path, task_text("pii-kinds", "multilabel", "labels", TYPES))
        rows = presidio_multilabel(0, 60)
    write_jsonl(tmp_path / "train.jsonl", rows)
    said: list[str] = []
    steps: list[tuple] = []
    with pytest.raises(StillhouseError) as error:
        train(
            load_task(tmp_path / "task.toml"),
            tmp_path / "model",
            TrainSettings(recipe=recipe, max_memory_gb=0.001),
            data=tmp_path / "train.jsonl",
            log=said.append,
            progress=lambda *args: steps.append(args),
        )
    message = error.value.message
    assert error.value.code == "E710", message
    assert f"Recipe `{recipe}` would need about" in message and detail in message
    assert message.endswith(f"available; {recipes.get(recipe).memory_advice}.")
    number, unit = re.search(r"would need about ([\d.]+) ([MG]B)", message).groups()
    assert 0.0 < float(number) * (1e6 if unit == "MB" else 1e9) < 4e9, message
    assert "but 1 MB is available" in message
    # refused before embedding or training (linear: once the TF-IDF vocabulary is known, before
    # the head's fit): nothing embedded, no step, no folder, no temporary folder
    assert not steps and not any("embedding" in line for line in said)
    assert recipe == "linear" or not any("fitting" in line for line in said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task.toml", "train.jsonl"]


def test_every_recipe_has_its_own_advice() -> None:
    advice = {name: recipe.memory_advice for name, recipe in recipes.all().items()}
    assert {"linear", "encoder", "contrastive-encoder", "lora-encoder", "lora-llm"} <= set(advice)
    assert "spacy-ner" in advice
    assert Recipe.memory_advice not in advice.values()  # none falls back to the generic advice
    # capping the TF-IDF vocabulary is advised where there is one: the recipes reading n-grams
    for name, text in advice.items():
        assert ("max_features" in text) is recipes.get(name).reads_ngrams, name
    assert "max_features" in advice["linear"] and "max_features" in advice["encoder-ngrams"]


def test_estimates_grow_with_what_drives_them() -> None:
    small, _ = encoder_bytes(1_000, 10, EncoderParams())
    many, _ = encoder_bytes(100_000, 10, EncoderParams())
    fp32, _ = encoder_bytes(1_000, 10, EncoderParams(quantize="none"))
    # 99,000 more texts: at least their float32 embeddings and scikit-learn's float64 copy
    assert many - small >= 99_000 * 384 * (4 + 8)
    assert fp32 > small  # the fp32 ONNX weights are about 4× the int8 ones
    base, _ = lora_encoder_bytes(100, 10, LoraEncoderParams())
    longer, _ = lora_encoder_bytes(100, 10, LoraEncoderParams(max_length=256))
    # all-MiniLM-L6-v2's ~22.7M fp32 weights are in any LoRA estimate
    assert 4 * 22_000_000 < base < longer

    few, _ = spacy_ner_bytes(1_500_000, 96, ["a short text"] * 100, 8)
    more, _ = spacy_ner_bytes(1_500_000, 96, ["a short text"] * 10_000, 8)
    longer, _ = spacy_ner_bytes(1_500_000, 96, ["a short text"] * 99 + ["x" * 30_000], 8)
    # the weights, their gradients, Adam's moments and two serialised copies: 6 × 4 bytes each
    assert 6 * 4 * 1_500_000 < few < more and few < longer
    assert more - few >= 9_900 * 5 * 500  # 5 tokens a text, ~500 bytes per token's Example
