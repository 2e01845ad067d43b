"""Recipe `lora-encoder`: PEFT LoRA fine-tuning of all-MiniLM-L6-v2 for classification.

Model: the MiniLM transformer (``AutoModel`` from the bundled folder) → mean pooling over the
non-padding tokens → L2 normalisation (the sentence-transformers pipeline, not BERT's CLS
pooler, which this checkpoint never trained) → a fresh linear head. The head starts as the
logistic regression of the `encoder` recipe fitted on the frozen embeddings (linear probing
then fine-tuning, Kumar et al. 2022), so few steps suffice and step 0 is already a good model.
LoRA adapters (r=8) go on every attention and feed-forward projection; the head trains in full.

Training is bounded (``epochs``, ``max_steps``, ``max_minutes``), uses short sequences
(``max_length`` 64), evaluates the held-out split at step 0 and after every epoch, keeps the
best state (held-out accuracy, then loss) and stops early after ``patience`` evaluations
without improvement. State (adapters, head, optimizer, schedule, random generators, best
state) is checkpointed atomically into a checkpoint folder beside the output, so a killed
run started again with the same data and settings resumes where the last checkpoint left it.

The best adapters are merged into the transformer (``merge_and_unload``) and exported to ONNX
and quantized exactly as the `encoder` recipe's encoder (:mod:`stillhouse.train.export`); the
folder holds ``encoder.onnx``, ``tokenizer.json`` and ``head.safetensors`` and runs with
ONNX Runtime and `tokenizers` only.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse import registry
from stillhouse.provenance import json_sha256
from stillhouse.train.export import base_model_path, export_tuned
from stillhouse.train.head import LinearHead, fit_head, lbfgs_memory_bytes
from stillhouse.train.memory import minilm_config, minilm_weights, transformer_training_bytes
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, Plan
from stillhouse.train.recipes.encoder import (
    MiniLMRecipe,
    load_onnx_with_head,
    save_onnx_with_head,
)
from stillhouse.train.recipes.parts import lora_loop
from stillhouse.train.recipes.parts.lora_loop import (
    LoraParams,
    RunContext,
    RunInfo,
    loop_settings,
    lora_params,
    params_to_json,
    prepare_torch,
    read_state,
    run_loop,
)
from stillhouse.train.recipes.parts.onnx_encoder import DIMENSION, OnnxSentenceEncoder

FILES = ("encoder.onnx", "tokenizer.json", "head.safetensors")


@dataclass(frozen=True)
class LoraEncoderParams(LoraParams):
    """Hyper-parameters of the lora-encoder recipe (recorded in the card): LoraParams' defaults
    (r 8, alpha 16, dropout 0.1, lr 5e-4, batch 16, 3 epochs, patience 2) and these."""

    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    max_length: int = 64
    head_c: float = 10.0
    quantize: str = "int8"
    pooling: str = "mean"


class LoraEncoderModel:
    """The merged, exported encoder + head; ``logits(texts)`` of shape (n, k)."""

    recipe = "lora-encoder"

    def __init__(
        self,
        encoder: OnnxSentenceEncoder,
        head: LinearHead,
        params: LoraEncoderParams,
        onnx_path: Path,
        tokenizer_path: Path,
        run_info: RunInfo | None = None,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.params = params
        self.run_info = run_info
        self._onnx_path = onnx_path
        self._tokenizer_path = tokenizer_path
        # inference truncates where training did
        encoder.tokenizer.enable_truncation(max_length=params.max_length)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.head.logits(self.encoder.embed(texts, batch_size=32))

    def save(self, folder: Path) -> None:
        save_onnx_with_head(folder, self._onnx_path, self._tokenizer_path, self.head)

    @classmethod
    def load(
        cls, folder: Path, hyper_parameters: dict[str, Any], threads: int | None = None
    ) -> LoraEncoderModel:
        encoder, head = load_onnx_with_head(folder, threads)
        params = params_from_json(hyper_parameters)
        return cls(encoder, head, params, folder / "encoder.onnx", folder / "tokenizer.json")


def params_from_json(values: dict[str, Any]) -> LoraEncoderParams:
    return lora_loop.params_from_json(LoraEncoderParams, values)


def fit_lora_encoder(
    texts: Sequence[str],
    y_index: np.ndarray,
    weights: np.ndarray,
    n_labels: int,
    train_rows: np.ndarray,
    held_rows: np.ndarray,
    params: LoraEncoderParams,
    run: RunContext,
) -> LoraEncoderModel:
    """Fine-tune on ``train_rows`` (indices into ``texts``), stop early on ``held_rows``, merge,
    export and return the model."""
    checkpoints, seed, threads, say = run.checkpoints, run.seed, run.threads, run.say
    prepare_torch(threads, seed)
    source = base_model_path()
    trainer = _Trainer(texts, y_index, weights, n_labels, params, source, seed)
    key = json_sha256(
        {
            "texts": json_sha256(list(texts)),
            "labels": y_index.tolist(),
            "weights": weights.tolist(),
            "train": train_rows.tolist(),
            "held": held_rows.tolist(),
            "params": params_to_json(params),
            "seed": seed,
        }
    )
    checkpoints.mkdir(parents=True, exist_ok=True)
    info = trainer.run(train_rows, held_rows, key, run)

    say(f"merging the adapters and exporting to ONNX ({params.quantize})")
    merged = checkpoints / "merged"
    shutil.rmtree(merged, ignore_errors=True)
    trainer.merged_transformer().save_pretrained(str(merged))
    onnx_path = export_tuned(merged, checkpoints, params.quantize)
    encoder = OnnxSentenceEncoder(onnx_path, source / "tokenizer.json", threads)
    return LoraEncoderModel(
        encoder, trainer.head_arrays(), params, onnx_path, source / "tokenizer.json", info
    )


class _Trainer:
    """The torch side: model, LoRA wrapping, optimizer, loop, checkpoints."""

    def __init__(
        self,
        texts: Sequence[str],
        y_index: np.ndarray,
        weights: np.ndarray,
        n_labels: int,
        params: LoraEncoderParams,
        source: Path,
        seed: int,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.texts, self.y_index, self.weights = list(texts), y_index, weights
        self.n_labels, self.params, self.seed = n_labels, params, seed
        self.tokenizer = AutoTokenizer.from_pretrained(str(source))
        # the pooler stays (unused) so the merged folder reloads without missing weights
        self.transformer = AutoModel.from_pretrained(str(source))
        self.head = torch.nn.Linear(DIMENSION, n_labels)

    # --- the model -------------------------------------------------------------------------
    def _batch(self, rows: Sequence[int]) -> dict[str, Any]:
        return dict(
            self.tokenizer(
                [self.texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.params.max_length,
                return_tensors="pt",
            )
        )

    def _embed(self, batch: dict[str, Any]) -> Any:
        torch = self.torch
        hidden = self.transformer(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    def _logits(self, rows: Sequence[int]) -> Any:
        return self.head(self._embed(self._batch(rows)))

    def parameters(self) -> list[Any]:
        trainable = [p for p in self.transformer.parameters() if p.requires_grad]
        return trainable + list(self.head.parameters())

    def loss(self, rows: Sequence[int]) -> Any:
        torch = self.torch
        logits = self._logits(rows)
        target = torch.as_tensor(self.y_index[list(rows)], dtype=torch.long)
        weight = torch.as_tensor(self.weights[list(rows)], dtype=torch.float32)
        losses = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        return (losses * weight).sum() / weight.sum()

    def _linear_probe(self, rows: np.ndarray) -> None:
        """Initialise the head with the logistic regression on the frozen embeddings."""
        torch = self.torch
        self.transformer.eval()
        with torch.no_grad():
            features = np.concatenate(
                [
                    self._embed(self._batch(rows[start : start + 64])).numpy()
                    for start in range(0, len(rows), 64)
                ]
            )
        head = fit_head(
            features,
            self.y_index[rows],
            self.n_labels,
            self.weights[rows],
            c=self.params.head_c,
            max_iter=2000,
        )
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(head.weight))
            self.head.bias.copy_(torch.from_numpy(head.bias))

    def evaluate(self, rows: np.ndarray) -> dict[str, float]:
        torch = self.torch
        self.transformer.eval()
        correct, loss_sum = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, len(rows), 64):
                chosen = rows[start : start + 64]
                logits = self._logits(chosen)
                target = torch.as_tensor(self.y_index[chosen], dtype=torch.long)
                loss_sum += float(
                    torch.nn.functional.cross_entropy(logits, target, reduction="sum")
                )
                correct += float((logits.argmax(dim=1) == target).sum())
        self.transformer.train()
        return {"accuracy": correct / max(len(rows), 1), "loss": loss_sum / max(len(rows), 1)}

    def trainable(self) -> dict[str, Any]:
        state = {
            f"transformer.{name}": value.detach().clone()
            for name, value in self.transformer.named_parameters()
            if value.requires_grad
        }
        state.update(
            {
                f"head.{name}": value.detach().clone()
                for name, value in self.head.state_dict().items()
            }
        )
        return state

    def restore(self, state: dict[str, Any]) -> None:
        with self.torch.no_grad():
            parameters = dict(self.transformer.named_parameters())
            for name, value in state.items():
                if name.startswith("transformer."):
                    parameters[name.removeprefix("transformer.")].copy_(value)
            self.head.load_state_dict(
                {n.removeprefix("head."): v for n, v in state.items() if n.startswith("head.")}
            )

    # --- the loop --------------------------------------------------------------------------
    def run(
        self,
        train_rows: np.ndarray,
        held_rows: np.ndarray,
        key: str,
        run: RunContext,
    ) -> RunInfo:
        params = self.params
        saved = read_state(run.checkpoints, key, run.say)
        if saved is None:
            run.say(
                f"linear probe: fitting the head on frozen embeddings of {len(train_rows)} texts"
            )
            self._linear_probe(train_rows)
        self.transformer = lora_loop.with_lora(self.transformer, params)
        self.transformer.train()
        return run_loop(self, loop_settings(params), train_rows, held_rows, key, saved, run)

    # --- the result ------------------------------------------------------------------------
    def merged_transformer(self) -> Any:
        return self.transformer.merge_and_unload()

    def head_arrays(self) -> LinearHead:
        return LinearHead(
            self.head.weight.detach().numpy().astype(np.float32).copy(),
            self.head.bias.detach().numpy().astype(np.float32).copy(),
        )


def lora_encoder_bytes(n_texts: int, n_labels: int, params: LoraEncoderParams) -> tuple[int, str]:
    """The lora-encoder recipe: fp32 MiniLM weights, activations of batch × ``max_length``
    tokens through every layer, the LoRA adapters' and the head's optimizer state
    (:func:`transformer_training_bytes`, shared with lora-llm), plus the linear probe's
    embeddings and L-BFGS head."""
    config = minilm_config()
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers = config["num_hidden_layers"]
    weights = minilm_weights(config)
    # in + out features of each module a target name matches in one BERT layer
    matched = {
        "query": 2 * hidden,
        "key": 2 * hidden,
        "value": 2 * hidden,
        "dense": 2 * hidden + 2 * (hidden + inner),  # attention output, intermediate, output
    }
    lora = layers * params.rank * sum(matched.get(name, 0) for name in params.target_modules)
    probe = 4 * n_texts * DIMENSION
    needed = (
        transformer_training_bytes(
            weights=weights,
            hidden=hidden,
            inner=inner,
            heads=config["num_attention_heads"],
            layers=layers,
            batch=params.batch_size,
            length=params.max_length,
            trainable=lora + n_labels * (hidden + 1),
        )
        + probe
        + lbfgs_memory_bytes(n_labels, DIMENSION, probe)
    )
    detail = (
        f"LoRA training of all-MiniLM-L6-v2 (batch {params.batch_size} × {params.max_length} "
        f"tokens, {n_labels} labels)"
    )
    return needed, detail


class LoraEncoder(MiniLMRecipe):
    """LoRA fine-tuning of all-MiniLM-L6-v2 with its head, merged and served as `encoder` is."""

    name = "lora-encoder"
    order = 40
    refits = False  # training stops early on the held-out split
    busy_with = "training"
    bounds = ("epochs", "max_steps", "max_minutes")
    memory_advice = "use the encoder recipe (no fine-tuning) or a machine with more memory"

    def plan(self, fitting: Fitting) -> Plan:
        settings, texts = fitting.settings, fitting.texts
        params = lora_params(LoraEncoderParams, settings, head_c=settings.c)
        self.memory_check(settings)(*lora_encoder_bytes(len(texts), fitting.n_labels, params))
        run = RunContext(
            fitting.checkpoints, settings.seed, settings.threads, fitting.say, fitting.progress
        )

        def fit_rows(rows: np.ndarray) -> Scorer:
            held = np.setdiff1d(np.arange(len(texts)), rows)
            return fit_lora_encoder(
                texts, fitting.targets, fitting.weights, fitting.n_labels, rows, held, params, run
            )

        return Plan(fit_rows, params_to_json(params))

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return LoraEncoderModel.load(folder, card["hyper_parameters"], threads)


registry.recipes.register("lora-encoder")(LoraEncoder())
