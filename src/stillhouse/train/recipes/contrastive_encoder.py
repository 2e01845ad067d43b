"""Recipe `contrastive-encoder`: SetFit's contrastive fine-tuning of all-MiniLM-L6-v2, served
as the `encoder` recipe serves its encoder.

The body is fine-tuned with the ``setfit`` library (Tunstall et al. 2022): pairs of training
texts, positive when they share a label, trained with a cosine-similarity loss, ``max_steps``
batches of 16 pairs (SetFit's defaults otherwise: body learning rate 2e-5, seeded). The tuned
transformer is then exported to ONNX and quantized exactly as the `encoder` recipe's encoder
(:mod:`stillhouse.train.export`), and the same logistic-regression head (weighted by the label
policy's sample weights) is fitted on its embeddings; the folder holds ``encoder.onnx``,
``tokenizer.json`` and ``head.safetensors`` and runs with ONNX Runtime and `tokenizers` only —
the accuracy of SetFit's fine-tuning at the `encoder` recipe's speed (bench/RESULTS.md).

The pairs take no sample weights: an LLM label is either in (above ``--min-llm-confidence``) or
out for the body; its probability weights the head only. Training is bounded by ``max_steps``
(default 300) and ``max_minutes``; a killed run starts over (no checkpoints).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse import registry
from stillhouse.train.export import base_model_path, export_tuned
from stillhouse.train.head import fit_head
from stillhouse.train.memory import (
    CHARACTERS_PER_TOKEN,
    minilm_config,
    minilm_weights,
    transformer_training_bytes,
)
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, Plan
from stillhouse.train.recipes.encoder import (
    EncoderModel,
    EncoderParams,
    MiniLMRecipe,
    encoder_bytes,
    load_onnx_with_head,
)
from stillhouse.train.recipes.parts.lora_loop import RunContext, prepare_torch
from stillhouse.train.recipes.parts.onnx_encoder import OnnxSentenceEncoder


@dataclass(frozen=True)
class ContrastiveParams:
    """Hyper-parameters of the contrastive-encoder recipe (recorded in the card)."""

    max_steps: int = 300
    max_minutes: float | None = None
    pairs_per_step: int = 16
    body_learning_rate: float = 2e-5
    c: float = 10.0
    max_iter: int = 2000
    quantize: str = "int8"
    batch_size: int = 32  # texts per ONNX call when embedding (as EncoderParams)


class ContrastiveEncoderModel(EncoderModel):
    """The tuned, exported encoder + head; ``logits(texts)`` of shape (n, k)."""

    recipe = "contrastive-encoder"

    @classmethod
    def load(
        cls, folder: Path, hyper_parameters: dict[str, Any], threads: int | None = None
    ) -> ContrastiveEncoderModel:
        encoder, head = load_onnx_with_head(folder, threads)
        params = ContrastiveParams(**hyper_parameters)
        return cls(encoder, head, params, folder / "encoder.onnx", folder / "tokenizer.json")  # type: ignore[arg-type]


def fit_contrastive(
    texts: Sequence[str],
    y_index: np.ndarray,
    weights: np.ndarray,
    n_labels: int,
    rows: np.ndarray,
    params: ContrastiveParams,
    run: RunContext,
) -> ContrastiveEncoderModel:
    """Fine-tune the body on ``rows`` (indices into ``texts``), export it, fit the head."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    from setfit import SetFitModel, Trainer, TrainingArguments

    prepare_torch(run.threads, run.seed)
    datasets.disable_progress_bars()
    # "model_head.pkl not found ... random weights": the head is ours, fitted below
    logging.getLogger("setfit").setLevel(logging.ERROR)
    source = base_model_path()
    work = run.checkpoints
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    chosen = [texts[i] for i in rows]
    model = SetFitModel.from_pretrained(str(source), device="cpu")
    arguments = TrainingArguments(
        batch_size=params.pairs_per_step,
        num_epochs=1,
        max_steps=params.max_steps,
        body_learning_rate=params.body_learning_rate,
        seed=run.seed,
        show_progress_bar=False,
        report_to="none",
        output_dir=str(work / "setfit"),
        save_strategy="no",
        logging_strategy="no",
    )
    labels = y_index[rows].tolist()
    run.say(f"contrastive fine-tuning of all-MiniLM-L6-v2: {params.max_steps} steps of pairs")
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=datasets.Dataset.from_dict({"text": chosen, "label": labels}),
        callbacks=[_bounds_and_progress(params, run.progress)],
    )
    # the trainer prints its loss dicts to stdout (which `--json` owns); progress says the steps
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train_embeddings(chosen, labels, args=arguments)  # the body; our head follows

    run.say(f"exporting the tuned encoder to ONNX ({params.quantize})")
    body = work / "body"
    model.model_body.save(str(body))
    onnx_path = export_tuned(body, work, params.quantize)
    encoder = OnnxSentenceEncoder(onnx_path, source / "tokenizer.json", run.threads)
    features = encoder.embed(chosen, batch_size=params.batch_size)
    head = fit_head(
        features, y_index[rows], n_labels, weights[rows], c=params.c, max_iter=params.max_iter
    )
    return ContrastiveEncoderModel(encoder, head, params, onnx_path, source / "tokenizer.json")  # type: ignore[arg-type]


def _bounds_and_progress(params: ContrastiveParams, progress: Callable[..., None] | None) -> Any:
    """A transformers callback: ``progress(step, total, note)`` after each step, and a stop
    once ``max_minutes`` have passed."""
    from transformers import TrainerCallback

    class Bounds(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None:
                progress(state.global_step, state.max_steps, "contrastive pairs")
            minutes = (time.perf_counter() - self.started) / 60
            if params.max_minutes is not None and minutes > params.max_minutes:
                control.should_training_stop = True

    return Bounds()


def contrastive_bytes(
    texts: Sequence[str], n_labels: int, params: ContrastiveParams
) -> tuple[int, str]:
    """The contrastive-encoder recipe: fp32 MiniLM weights, all of them trained (value, gradient,
    AdamW's two moments), activations of a batch of pairs (2 × batch texts as long as the
    longest text, a token per 3 characters, at most SetFit's 256) through every layer
    (:func:`transformer_training_bytes`), then the `encoder` recipe's embeddings, head and ONNX
    session (:func:`encoder_bytes`). NusaX English (500 texts, the longest 189 tokens): 3.1 GB
    counted, 1.7 GB measured (peak RSS of a whole 40-step run: bench/memory_estimates.py)."""
    config = minilm_config()
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    layers = config["num_hidden_layers"]
    weights = minilm_weights(config)
    length = min(256, max((len(text) // CHARACTERS_PER_TOKEN + 2 for text in texts), default=2))
    training = transformer_training_bytes(
        weights=weights,
        hidden=hidden,
        inner=inner,
        heads=config["num_attention_heads"],
        layers=layers,
        batch=2 * params.pairs_per_step,
        length=length,
        trainable=weights,
    )
    serving, _ = encoder_bytes(len(texts), n_labels, EncoderParams(quantize=params.quantize))
    detail = (
        f"contrastive training of all-MiniLM-L6-v2 ({params.pairs_per_step} pairs × {length} "
        f"tokens, every weight trained) and a {n_labels}-label head"
    )
    return training + serving, detail


class ContrastiveEncoder(MiniLMRecipe):
    """SetFit's contrastive fine-tuning of all-MiniLM-L6-v2, served as `encoder` is."""

    name = "contrastive-encoder"
    order = 30
    refits = False  # fine-tuning twice costs twice
    busy_with = "training"
    bounds = ("max_steps", "max_minutes")
    memory_advice = "use the encoder recipe (no fine-tuning) or a machine with more memory"

    def plan(self, fitting: Fitting) -> Plan:
        settings = fitting.settings
        params = ContrastiveParams(
            max_steps=settings.max_steps or ContrastiveParams.max_steps,
            max_minutes=settings.max_minutes,
            c=settings.c or ContrastiveParams.c,
            quantize=settings.quantize or ContrastiveParams.quantize,
        )
        self.memory_check(settings)(*contrastive_bytes(fitting.texts, fitting.n_labels, params))
        run = RunContext(
            fitting.checkpoints, settings.seed, settings.threads, fitting.say, fitting.progress
        )

        def fit_rows(rows: np.ndarray) -> Scorer:
            return fit_contrastive(
                fitting.texts,
                fitting.targets,
                fitting.weights,
                fitting.n_labels,
                rows,
                params,
                run,
            )

        return Plan(fit_rows, asdict(params))

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return ContrastiveEncoderModel.load(folder, card["hyper_parameters"], threads)


registry.recipes.register("contrastive-encoder")(ContrastiveEncoder())
