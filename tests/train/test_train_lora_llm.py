"""Recipe `lora-llm` on SmolLM2-135M (real GGUF, llama.cpp, transformers + PEFT, NusaX English):
the GGUF adapter computes in llama.cpp what PEFT computes in transformers; a killed training run
resumes; a few dozen steps beat the base model's zero-shot label scoring; the folder serves
through predict/evaluate; a different base or a bad quantization is refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_data import (
    NUSAX_TASK,
    kill_after_first_checkpoint,
    nusax_test,
    nusax_train,
    reseal,
    write_task,
)

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.llm.prompts import build_prompt
from stillhouse.task import Task, load_task
from stillhouse.train import TrainSettings, load_model, train
from stillhouse.train.recipe import check_settings
from stillhouse.train.recipes import lora_llm
from stillhouse.train.recipes.parts import gguf_lora
from stillhouse.train.recipes.parts.hf_from_gguf import hf_folder

TASK = NUSAX_TASK + '[llm]\nmodel = "smollm2-135m"\n'
# 120 NusaX rows: 96 train (12 steps of 8 per epoch) + 24 held out; 20 steps ≈ 1.7 epochs
SETTINGS: dict[str, Any] = dict(
    recipe="lora-llm",
    epochs=2,
    max_steps=20,
    checkpoint_every=4,
    threads=2,
    latency_texts=2,
    throughput_texts=8,
)
TRAIN_SCRIPT = """
import sys
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train
folder = sys.argv[1]
settings = TrainSettings(**{settings!r})
train(load_task(folder + "/task.toml"), folder + "/model", settings, data=folder + "/train.jsonl")
"""


@pytest.fixture(scope="module", autouse=True)
def stillhouse_home(cli_home: Path) -> Iterator[Path]:
    """The CLI runs' STILLHOUSE_HOME in this process too: SmolLM2 is dequantized for
    transformers once per test session."""
    before = os.environ.get("STILLHOUSE_HOME")
    os.environ["STILLHOUSE_HOME"] = str(cli_home)
    yield cli_home
    if before is None:
        os.environ.pop("STILLHOUSE_HOME")
    else:
        os.environ["STILLHOUSE_HOME"] = before


def train_in(folder: Path, settings: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Train ``folder``/train.jsonl with ``folder``/task.toml into ``folder``/model; the card."""
    return train(
        load_task(folder / "task.toml"),
        folder / "model",
        TrainSettings(**settings),
        data=folder / "train.jsonl",
        **kwargs,
    ).card


def nusax_task() -> Task:
    import tomllib

    return Task.model_validate(tomllib.loads(TASK))


@pytest.mark.slow
def test_the_gguf_adapter_computes_in_llama_cpp_what_peft_computes(tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    task = nusax_task()
    params = lora_llm.LoraLlmParams(
        target_modules=("q_proj", "k_proj", "v_proj"), score_tolerance=0.0, max_text_tokens=48
    )
    texts = [row["text"] for row in nusax_train(4)]
    base = lora_llm.resolve_base("smollm2-135m")
    encoded = lora_llm.encode(base.path, task, texts, params, threads=2)
    source = hf_folder(base.path, base.sha256)

    # transformers' tokenizer and chat template from the GGUF give llama.cpp's prompt tokens
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    backend = lora_llm.open_scoring(base.path, task, params, 2, None)
    for text, tokens in zip(texts, encoded.prompts, strict=True):
        messages = build_prompt(task, backend.truncate(text, 48)[0]).messages()
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        # the same text: transformers' chat template renders what label scoring tokenizes
        assert backend.llm.detokenize(tokens, special=True).decode("utf-8") == rendered
        # the same tokens: both tokenizers read the GGUF's vocabulary and merges
        llama_tokens = backend.llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
        assert tokenizer(rendered, add_special_tokens=False)["input_ids"] == llama_tokens
    backend.close()

    trainer = lora_llm.LlmTrainer(source, encoded, np.zeros(4, int), np.ones(4), params)
    with torch.no_grad():  # a LoRA that changes the model: random B (PEFT starts B at zero)
        for name, value in trainer.model.named_parameters():
            if "lora_B" in name:
                value.normal_(0.0, 0.02)
    expected = trainer.label_log_likelihoods(encoded.prompts)
    with trainer.model.disable_adapter():
        without = trainer.label_log_likelihoods(encoded.prompts)
    layout = gguf_lora.base_layout(base.path)
    tensors = gguf_lora.adapter_tensors(trainer.lora_state(), layout)
    assert len(tensors) == 3 * 30 and "blk.0.attn_k.weight" in tensors
    adapter = tmp_path / "adapter.gguf"
    gguf_lora.write_adapter(adapter, tensors, layout, params.alpha)

    def scores(model: Path, lora: Path | None) -> np.ndarray:
        backend = lora_llm.open_scoring(model, task, params, 2, lora)
        try:
            return lora_llm.score_texts(backend, task, texts, params.max_text_tokens)
        finally:
            backend.close()

    # On a float copy of the base llama.cpp computes what transformers does (the Q4_1 base
    # quantizes activations too, which moves log-probs by ~0.3 by itself).
    f32 = tmp_path / "base-f32.gguf"
    gguf_lora.write_merged(base.path, {}, params.alpha, f32, dequantize_all=True)
    assert np.abs(scores(f32, None) - without).max() < 0.05
    assert np.abs(expected - without).max() > 0.2  # the adapter matters ...
    assert np.abs(scores(f32, adapter) - expected).max() < 0.05  # ... and converts exactly
    merged = tmp_path / "merged-f32.gguf"
    gguf_lora.write_merged(base.path, tensors, params.alpha, merged, dequantize_all=True)
    assert np.abs(scores(merged, None) - expected).max() < 0.05
    quantized = tmp_path / "merged-q8_0.gguf"
    gguf_lora.quantize(merged, quantized, "q8_0", threads=2)
    assert quantized.stat().st_size < merged.stat().st_size / 3
    assert np.isfinite(scores(quantized, None)).all()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run killed after its first checkpoints, then the same run again (it resumes)."""
    folder = tmp_path_factory.mktemp("lora-llm")
    rows = nusax_train(120)
    write_task(folder, TASK)
    write_jsonl(folder / "train.jsonl", rows)
    kill_after_first_checkpoint(TRAIN_SCRIPT.format(settings=SETTINGS), folder, 180)

    messages: list[str] = []
    progress: list[tuple[Any, ...]] = []
    started = time.perf_counter()
    card = train_in(
        folder, SETTINGS, log=messages.append, progress=lambda *args: progress.append(args)
    )
    return {
        "folder": folder,
        "card": card,
        "messages": messages,
        "progress": progress,
        "seconds": time.perf_counter() - started,
    }


@pytest.mark.slow
def test_a_killed_run_resumes_and_beats_the_base_models_zero_shot(trained: dict[str, Any]) -> None:
    card, folder = trained["card"], trained["folder"]
    run = card["training_run"]
    assert any(m.startswith("resuming from the checkpoint at step") for m in trained["messages"])
    assert run["resumed_from_step"] is not None and 4 <= run["resumed_from_step"] < 20
    assert run["steps"] == 20 and run["stopped"] == "max_steps" and run["seed"] == 0
    assert [e["step"] for e in run["evaluations"]] == [0, 12, 20]
    assert trained["progress"][-1][:2] == (20, 20) and "loss" in trained["progress"][-1][2]
    # step 0 is SmolLM2's zero-shot label scoring of the held-out texts (in llama.cpp)
    zero_shot = run["evaluations"][0]["accuracy"]
    print(f"held-out evaluations {run['evaluations']}; card {card['held_out']['accuracy']}")
    print(
        f"train {card['train_seconds']:.0f} s (fixture {trained['seconds']:.0f} s); speed {card['speed']}"
    )
    assert card["held_out"]["accuracy"]["estimate"] >= zero_shot + 0.15, run["evaluations"]
    assert card["refit"] is False and card["quantization"] == "none"
    assert card["base_model"]["name"] == "smollm2-135m"
    assert card["base_model"]["sha256"].startswith("b179c952")
    assert card["base_model"]["license"] == "Apache-2.0"
    assert sorted(card["files"]) == ["adapter.gguf", "prompt.json"]
    assert card["hyper_parameters"]["target_modules"] == ["q_proj", "v_proj"]
    assert not (folder / ".model.checkpoints").exists()
    model = load_model(folder / "model")
    assert model.describe()["runtime"] == "llama.cpp"
    assert "smollm2-135m" in (folder / "model" / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_predict_and_evaluate_load_the_folder(trained: dict[str, Any], run_cli: Any) -> None:
    folder = trained["folder"]
    write_jsonl(folder / "test.jsonl", nusax_test(12))
    predicted = run_cli(
        folder, "predict", "--model", "model", "--input", "test.jsonl", "--out", "preds.jsonl"
    )
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in (folder / "preds.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]["probs"]) == {"positive", "neutral", "negative"}
    assert len({row["label"] for row in rows}) >= 2  # not the base model's single answer
    evaluated = run_cli(
        folder,
        *("evaluate", "--task", "task.toml", "--test", "test.jsonl", "--bootstrap", "100"),
        *("--system", "tuned=model:model", "--system", "file=preds:preds.jsonl", "--out", "report"),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    systems = json.loads((folder / "report" / "results.json").read_text())["systems"]
    assert systems["tuned"]["metrics"]["accuracy"] == systems["file"]["metrics"]["accuracy"]


@pytest.mark.slow
def test_quantize_q8_0_writes_a_self_contained_merged_model(tmp_path: Path) -> None:
    """``--quantize q8_0`` through train(): the adapter is merged and re-quantized by llama.cpp,
    and the folder serves without the base model."""
    import gguf

    write_task(tmp_path, TASK)
    write_jsonl(tmp_path / "train.jsonl", nusax_train(40))
    messages: list[str] = []
    settings = {**SETTINGS, "max_steps": 4, "checkpoint_every": 100, "quantize": "q8_0"}
    card = train_in(tmp_path, settings, log=messages.append)
    assert card["quantization"] == "q8_0" and card["hyper_parameters"]["quantize"] == "q8_0"
    assert sorted(card["files"]) == ["model.gguf", "prompt.json"]
    assert any("re-quantizing to q8_0" in message for message in messages)
    types = {t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "model" / "model.gguf").tensors}
    assert "Q8_0" in types and not types & {"Q4_1", "Q4_K"}, types  # not the Q4_1 base's
    # self-contained: the card's base may point nowhere
    card_path = tmp_path / "model" / "card.json"
    recorded = json.loads(card_path.read_text())
    recorded["base_model"]["name"] = str(tmp_path / "gone.gguf")
    card_path.write_text(json.dumps(recorded))
    reseal(tmp_path / "model")  # as if train had written it so
    model = load_model(tmp_path / "model")
    probabilities = model.probabilities([row["text"] for row in nusax_test(6)])
    assert probabilities.shape == (6, 3) and np.allclose(probabilities.sum(axis=1), 1.0)


@pytest.mark.slow
def test_a_folder_whose_base_model_differs_is_refused(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained["folder"] / "model", copy)
    card_path = copy / "card.json"
    card = json.loads(card_path.read_text())
    card["base_model"]["sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    reseal(copy)  # as if train had written it so
    with pytest.raises(StillhouseError) as error:
        load_model(copy)
    assert error.value.code == "E731" and "smollm2-135m" in error.value.message
    card["base_model"]["name"] = str(tmp_path / "gone.gguf")
    card_path.write_text(json.dumps(card))
    reseal(copy)
    with pytest.raises(StillhouseError) as error:
        load_model(copy)
    assert error.value.code == "E732" and "gone.gguf" in error.value.message


@pytest.mark.slow
def test_out_of_memory_prone_settings_are_refused_with_the_estimate(tmp_path: Path) -> None:
    write_task(tmp_path, TASK)
    write_jsonl(tmp_path / "train.jsonl", nusax_train(60))
    with pytest.raises(StillhouseError) as error:
        train(
            load_task(tmp_path / "task.toml"),
            tmp_path / "model",
            TrainSettings(recipe="lora-llm", max_memory_gb=0.05),
            data=tmp_path / "train.jsonl",
        )
    assert error.value.code == "E710" and "LoRA training of smollm2-135m" in error.value.message
    needed = float(re.search(r"would need about ([\d.]+) GB", error.value.message)[1])
    assert 1.0 < needed < 8.0  # 0.54 GB of fp32 weights + activations of 8 × ~150 tokens
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("settings", "code", "fragment"),
    [
        (TrainSettings(recipe="lora-llm", quantize="int8"), "E709", "none, q8_0, q4_k_m"),
        (TrainSettings(recipe="lora-llm", max_steps=0), "E708", "--max-steps"),
        (TrainSettings(recipe="lora-llm", max_minutes=0.0), "E708", "--max-minutes"),
    ],
)
def test_bad_lora_llm_settings_are_refused_before_any_work(
    settings: TrainSettings, code: str, fragment: str
) -> None:
    with pytest.raises(StillhouseError) as error:
        check_settings(settings)
    assert error.value.code == code and fragment in error.value.message


def test_a_remote_llm_cannot_be_fine_tuned() -> None:
    with pytest.raises(StillhouseError) as error:
        lora_llm.resolve_base("openai:http://localhost:8000/v1#qwen")
    assert error.value.code == "E730" and "smollm2-135m" in error.value.message
