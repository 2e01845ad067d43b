"""Recipe `lora-llm`: PEFT LoRA fine-tuning of the task's small LLM so that label scoring improves.

The base is the task's ``[llm] model`` (an embedded model such as ``smollm2-135m`` or a ``.gguf``
path), loaded into transformers from its GGUF file (dequantized to fp32 once and cached, see
:mod:`.parts.hf_from_gguf`). Every training example is tokenized by llama.cpp itself
(:meth:`LlamaCppBackend.prompt_tokens` of the task prompt of :func:`build_prompt`, then the
label's reply tokens from :meth:`LlamaCppBackend.label_continuations`), so the model trains on
exactly the token sequence that label scoring reads; the loss is the negative log-likelihood
of the gold label's reply tokens only (weighted by the example weights). Texts are cut to
``max_text_tokens`` tokens in training and in scoring alike. LoRA (r=8 on ``q_proj``/``v_proj``
by default) in fp32 on the CPU; the loop (bounds, held-out evaluation, early stopping,
checkpoints, resume) is :mod:`.parts.lora_loop`'s.

Held-out evaluations run in llama.cpp: the current adapter is written as a GGUF LoRA
(:mod:`.parts.gguf_lora`) and the held-out texts are label-scored on the quantized
base with it, so step 0 is the base model's zero-shot accuracy and the best step is chosen on
what the saved model computes.

The model folder holds ``adapter.gguf`` (applied by llama.cpp to the base GGUF named in the card
by name, file and sha256; the base is found through :mod:`stillhouse.llm.models` when the folder
loads and refused when missing or different) and ``prompt.json`` (the task's instructions,
labels and fixed examples that shape the prompt). With ``quantize`` ``q8_0``/``q4_k_m`` the
adapter is merged into the base weights and the merged model re-quantized by llama.cpp; the
folder then holds ``model.gguf`` instead of the adapter and needs no base file.
"""

from __future__ import annotations

import json
import shutil
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse import registry
from stillhouse.errors import Errors, fail
from stillhouse.llm.backend import BackendSettings
from stillhouse.llm.prompts import build_prompt
from stillhouse.provenance import json_sha256
from stillhouse.task import Task
from stillhouse.train.memory import MemoryCheck, transformer_training_bytes
from stillhouse.train.model import Scorer
from stillhouse.train.recipe import Fitting, Plan, Recipe
from stillhouse.train.recipes.parts import gguf_lora, lora_loop
from stillhouse.train.recipes.parts.lora_loop import LoraParams, RunContext, RunInfo, lora_params

ADAPTER_FILE = "adapter.gguf"
MERGED_FILE = "model.gguf"
PROMPT_FILE = "prompt.json"
QUANTIZATIONS = ("none", "q8_0", "q4_k_m")
# what shapes the prompt and its scoring context: saved as prompt.json in the model folder
_PROMPT_FIELDS: dict[str, Any] = {
    **dict.fromkeys(("name", "kind", "instructions", "labels", "examples"), True),
    "llm": {"n_ctx", "seed"},
}


@dataclass(frozen=True)
class LoraLlmParams(LoraParams):
    """Hyper-parameters of the lora-llm recipe (recorded in the card): LoraParams' with these
    defaults, and the recipe's own."""

    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    epochs: int = 1
    patience: int = 3
    checkpoint_every: int = 10
    max_text_tokens: int = 96
    eval_every: int = 50
    score_tolerance: float = 0.05
    quantize: str = "none"


@dataclass(frozen=True)
class BaseModel:
    """The base GGUF model: what the card records about it, and where it is here."""

    name: str
    file: str
    sha256: str
    license: str
    path: Path

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "file": self.file,
            "sha256": self.sha256,
            "license": self.license,
        }


def resolve_base(spec: str) -> BaseModel:
    """The task's [llm] model as a verified local GGUF file (E730 for a remote model)."""
    from stillhouse.llm.models import EMBEDDED_MODELS, check_gguf, resolve_embedded
    from stillhouse.llm.models import verified_sha256 as file_hash

    if spec in EMBEDDED_MODELS:
        model = EMBEDDED_MODELS[spec]
        path = resolve_embedded(spec)
        return BaseModel(spec, model.file_name, model.sha256, model.license, path)
    if spec.startswith("openai:") or not (spec.endswith(".gguf") or Path(spec).is_file()):
        raise fail(Errors.E730, model=spec, names=", ".join(EMBEDDED_MODELS))
    path = check_gguf(Path(spec)).resolve()
    return BaseModel(str(path), path.name, file_hash(path), _gguf_license(path), path)


def _gguf_license(path: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get("general.license")
    return str(field.contents()) if field is not None else "unknown (not in the GGUF metadata)"


def find_base(recorded: dict[str, str], folder: Path) -> Path:
    """The base GGUF a model folder's card names, checked against its sha256 (E731/E732)."""
    from stillhouse.llm.models import verified_sha256 as file_hash

    name, expected = recorded["name"], recorded["sha256"]
    try:
        base = resolve_base(name)
    except Exception as error:  # a missing package or file: say which base the folder needs
        detail = getattr(error, "message", None) or str(error)
        raise fail(
            Errors.E732,
            path=folder,
            name=name,
            file=recorded["file"],
            expected=expected,
            detail=detail,
        ) from None
    found = file_hash(base.path)
    if found != expected:
        raise fail(
            Errors.E731,
            path=folder,
            name=name,
            expected=expected,
            found_path=base.path,
            found=found,
        )
    return base.path


def prompt_task(task: Task) -> Task:
    """The part of the task that shapes the prompt and its scoring context (``prompt.json``)."""
    return Task.model_validate(task.model_dump(mode="json", include=_PROMPT_FIELDS))


def _backend_settings(task: Task, params: LoraLlmParams, threads: int | None) -> BackendSettings:
    return BackendSettings(
        n_ctx=task.llm.n_ctx,
        threads=threads,
        seed=task.llm.seed,
        score_tolerance=params.score_tolerance,
    )


def open_scoring(
    model_path: Path,
    task: Task,
    params: LoraLlmParams,
    threads: int | None,
    lora_path: Path | None,
) -> Any:
    from stillhouse.llm.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        model_path, _backend_settings(task, params, threads), lora_path=lora_path
    )


def score_texts(backend: Any, task: Task, texts: Sequence[str], max_text_tokens: int) -> np.ndarray:
    """Label log-likelihoods (n, k) of the task prompt for each text, cut to the token limit."""
    if not texts:
        return np.zeros((0, len(task.label_names)))
    prompts = [build_prompt(task, backend.truncate(text, max_text_tokens)[0]) for text in texts]
    return np.stack(backend.score_labels_many(prompts, task.label_names))


class LoraLlmModel:
    """The base GGUF with the adapter (or the merged GGUF) in llama.cpp; ``logits(texts)`` are
    the label log-likelihoods of label scoring, shape (n, k)."""

    recipe = "lora-llm"

    def __init__(
        self,
        backend: Any,
        task: Task,
        params: LoraLlmParams,
        model_file: Path,
        base: dict[str, str],
        run_info: RunInfo | None = None,
    ) -> None:
        self.backend = backend
        # close llama.cpp when the model goes, or at exit before the interpreter tears down
        # the modules llama-cpp-python's own finalizer needs
        weakref.finalize(self, backend.close)
        self.task = task
        self.params = params
        self.model_file = model_file  # adapter.gguf, or model.gguf when merged
        self.base_model = base
        self.run_info = run_info

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return score_texts(self.backend, self.task, texts, self.params.max_text_tokens)

    def save(self, folder: Path) -> None:
        name = ADAPTER_FILE if self.params.quantize == "none" else MERGED_FILE
        shutil.copyfile(self.model_file, folder / name)
        (folder / PROMPT_FILE).write_text(
            json.dumps(
                self.task.model_dump(mode="json", include=_PROMPT_FIELDS),
                indent=1,
                ensure_ascii=False,
            )
            + "\n",
            encoding="utf-8",
        )

    @classmethod
    def load(cls, folder: Path, card: dict[str, Any], threads: int | None = None) -> LoraLlmModel:
        params = params_from_json(card["hyper_parameters"])
        task = Task.model_validate_json((folder / PROMPT_FILE).read_text(encoding="utf-8"))
        if params.quantize == "none":
            base = find_base(card["base_model"], folder)
            backend = open_scoring(base, task, params, threads, folder / ADAPTER_FILE)
            return cls(backend, task, params, folder / ADAPTER_FILE, card["base_model"])
        backend = open_scoring(folder / MERGED_FILE, task, params, threads, None)
        return cls(backend, task, params, folder / MERGED_FILE, card["base_model"])


def params_from_json(values: dict[str, Any]) -> LoraLlmParams:
    return lora_loop.params_from_json(LoraLlmParams, values)


@dataclass(frozen=True)
class Encoded:
    """Training sequences as llama.cpp tokenizes them: per text the prompt tokens, per label its
    reply tokens, and the prompt part every text shares (system message, instructions, labels,
    fixed examples: computed once per batch in training)."""

    prompts: list[list[int]]
    continuations: list[list[int]]
    shared: list[int]


def encode(
    base: Path, task: Task, texts: Sequence[str], params: LoraLlmParams, threads: int | None
) -> Encoded:
    backend = open_scoring(base, task, params, threads, None)
    try:
        prompts, fixed_parts = [], set()
        for text in texts:
            fixed, variable = backend.prompt_tokens(
                build_prompt(task, backend.truncate(text, params.max_text_tokens)[0])
            )
            prompts.append(fixed + variable)
            fixed_parts.add(tuple(fixed))
        continuations = backend.label_continuations(task.label_names)
    finally:
        backend.close()
    shared = list(fixed_parts.pop()) if len(fixed_parts) == 1 else []
    return Encoded(prompts, continuations, shared)


def lora_parameter_count(config: Any, params: LoraLlmParams) -> int:
    """How many weights the LoRA adapters of ``params`` add to a model with this config."""
    hidden, inner = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    query = config.num_attention_heads * head_dim
    key_value = getattr(config, "num_key_value_heads", config.num_attention_heads) * head_dim
    shapes = {
        "q_proj": (hidden, query),
        "k_proj": (hidden, key_value),
        "v_proj": (hidden, key_value),
        "o_proj": (query, hidden),
        "gate_proj": (hidden, inner),
        "up_proj": (hidden, inner),
        "down_proj": (inner, hidden),
    }
    per_layer = sum(params.rank * sum(shapes[module]) for module in params.target_modules)
    return per_layer * config.num_hidden_layers


def training_memory_bytes(config: Any, params: LoraLlmParams, length: int, reply: int) -> int:
    """A rough upper estimate of training memory (:func:`transformer_training_bytes`): fp32
    weights, activations of batch × ``length`` tokens, the logits of the reply positions, and
    AdamW state + gradients of the LoRA weights."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return transformer_training_bytes(
        weights=config.vocab_size * hidden + layers * (4 * hidden**2 + 3 * hidden * inner),
        hidden=hidden,
        inner=inner,
        heads=config.num_attention_heads,
        layers=layers,
        batch=params.batch_size,
        length=length,
        trainable=lora_parameter_count(config, params),
        extra=3 * params.batch_size * (reply + 1) * config.vocab_size,  # reply logits
    )


def fit_lora_llm(
    task: Task,
    texts: Sequence[str],
    y_index: np.ndarray,
    weights: np.ndarray,
    train_rows: np.ndarray,
    held_rows: np.ndarray,
    params: LoraLlmParams,
    run: RunContext,
    memory_check: MemoryCheck | None = None,
) -> LoraLlmModel:
    """Fine-tune the task's LLM on ``train_rows``, evaluate and stop early on ``held_rows``, and
    return the model (adapter on the base, or merged and re-quantized)."""
    from stillhouse.train.recipes.parts.hf_from_gguf import hf_folder

    say = run.say
    unknown = [m for m in params.target_modules if m not in gguf_lora.GGUF_NAMES]
    if unknown:
        raise fail(Errors.E734, module=unknown[0], known=", ".join(gguf_lora.GGUF_NAMES))
    lora_loop.prepare_torch(run.threads, run.seed)
    base = resolve_base(task.llm.model)
    layout = gguf_lora.base_layout(base.path)
    shaping = prompt_task(task)
    say(f"tokenizing {len(texts)} prompts with llama.cpp ({base.name})")
    encoded = encode(base.path, shaping, texts, params, run.threads)
    say(f"loading {base.name} into transformers (fp32; converted once and cached)")
    source = hf_folder(base.path, base.sha256)
    if memory_check is not None:
        from transformers import AutoConfig

        length = max(len(encoded.prompts[i]) for i in train_rows)
        reply = max(len(c) for c in encoded.continuations)
        needed = training_memory_bytes(
            AutoConfig.from_pretrained(str(source)), params, length + reply, reply
        )
        memory_check(
            needed,
            f"LoRA training of {base.name} (batch {params.batch_size} × {length + reply} tokens)",
        )
    trainer = LlmTrainer(source, encoded, y_index, weights, params)
    key = json_sha256(
        {
            "base": base.sha256,
            "prompts": json_sha256(encoded.prompts),
            "continuations": encoded.continuations,
            "labels": y_index.tolist(),
            "weights": weights.tolist(),
            "train": train_rows.tolist(),
            "held": held_rows.tolist(),
            "params": lora_loop.params_to_json(params),
            "seed": run.seed,
        }
    )
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    trainer.evaluator = _HeldOutScorer(
        base.path,
        shaping,
        [texts[i] for i in held_rows],
        y_index[held_rows],
        params,
        run.threads,
        layout,
        run.checkpoints / "eval-adapter.gguf",
        trainer,
    )
    saved = lora_loop.read_state(run.checkpoints, key, say)
    settings = lora_loop.loop_settings(params)
    info = lora_loop.run_loop(trainer, settings, train_rows, held_rows, key, saved, run)
    tensors = gguf_lora.adapter_tensors(trainer.lora_state(), layout)
    adapter = run.checkpoints / ADAPTER_FILE
    gguf_lora.write_adapter(adapter, tensors, layout, params.alpha)
    if params.quantize == "none":
        backend = open_scoring(base.path, shaping, params, run.threads, adapter)
        return LoraLlmModel(backend, shaping, params, adapter, base.to_json(), info)
    say(f"merging the adapter into {base.name} and re-quantizing to {params.quantize}")
    merged_f32 = run.checkpoints / "merged-f32.gguf"
    merged = run.checkpoints / f"merged-{params.quantize}.gguf"
    gguf_lora.write_merged(base.path, tensors, params.alpha, merged_f32, dequantize_all=True)
    gguf_lora.quantize(merged_f32, merged, params.quantize, run.threads)
    merged_f32.unlink()
    backend = open_scoring(merged, shaping, params, run.threads, None)
    return LoraLlmModel(backend, shaping, params, merged, base.to_json(), info)


class _HeldOutScorer:
    """Held-out evaluation in llama.cpp with the trainer's current adapter."""

    def __init__(
        self,
        base: Path,
        task: Task,
        texts: list[str],
        y_index: np.ndarray,
        params: LoraLlmParams,
        threads: int | None,
        layout: gguf_lora.BaseLayout,
        adapter: Path,
        trainer: LlmTrainer,
    ) -> None:
        self.base, self.task, self.texts, self.y_index = base, task, texts, y_index
        self.params, self.threads, self.layout, self.adapter = params, threads, layout, adapter
        self.trainer = trainer

    def __call__(self) -> dict[str, float]:
        tensors = gguf_lora.adapter_tensors(self.trainer.lora_state(), self.layout)
        gguf_lora.write_adapter(self.adapter, tensors, self.layout, self.params.alpha)
        backend = open_scoring(self.base, self.task, self.params, self.threads, self.adapter)
        try:
            scores = score_texts(backend, self.task, self.texts, self.params.max_text_tokens)
        finally:
            backend.close()
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(len(self.y_index))
        return {
            "accuracy": float((scores.argmax(axis=1) == self.y_index).mean()),
            "loss": float(-log_probs[rows, self.y_index].mean()),
        }


class LlmTrainer:
    """The torch side: the causal LM with LoRA, and the reply-token loss."""

    def __init__(
        self,
        source: Path,
        encoded: Encoded,
        y_index: np.ndarray,
        weights: np.ndarray,
        params: LoraLlmParams,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.encoded, self.y_index, self.weights, self.params = encoded, y_index, weights, params
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
        self.model = lora_loop.with_lora(model, params, task_type="CAUSAL_LM")
        self.model.train()
        self.evaluator: Callable[[], dict[str, float]] | None = None

    # --- what the loop needs ----------------------------------------------------------------
    def parameters(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, rows: np.ndarray) -> Any:
        torch = self.torch
        sequences = [
            (self.encoded.prompts[i], self.encoded.continuations[self.y_index[i]]) for i in rows
        ]
        per_example = torch.stack([-lp.sum() for lp in self.reply_log_probs(sequences)])
        weight = torch.as_tensor(self.weights[rows], dtype=torch.float32)
        return (per_example * weight).sum() / weight.sum()

    def evaluate(self, rows: np.ndarray) -> dict[str, float]:
        assert self.evaluator is not None
        return self.evaluator()

    def lora_state(self) -> dict[str, Any]:
        return {name: p.detach() for name, p in self.model.named_parameters() if p.requires_grad}

    def trainable(self) -> dict[str, Any]:
        return {name: value.clone() for name, value in self.lora_state().items()}

    def restore(self, state: dict[str, Any]) -> None:
        with self.torch.no_grad():
            parameters = dict(self.model.named_parameters())
            for name, value in state.items():
                parameters[name].copy_(value)

    # --- the model --------------------------------------------------------------------------
    def reply_log_probs(self, sequences: Sequence[tuple[list[int], list[int]]]) -> list[Any]:
        """Per (prompt, reply) pair: the log-probabilities of the reply tokens after the prompt.

        The shared prompt part is run once and its key/value cache repeated for every row (the
        gradient flows through it); the rest is left-padded after it, so every reply ends its
        row and only the last positions need logits."""
        torch = self.torch
        shared = self.encoded.shared
        if not all(prompt[: len(shared)] == shared for prompt, _ in sequences):
            shared = []
        tails = [prompt[len(shared) :] + reply for prompt, reply in sequences]
        length = max(len(tail) for tail in tails)
        keep = max(len(r) for _, r in sequences) + 1
        ids = torch.zeros((len(sequences), length), dtype=torch.long)
        mask = torch.zeros((len(sequences), len(shared) + length), dtype=torch.long)
        mask[:, : len(shared)] = 1
        for row, tail in enumerate(tails):
            ids[row, length - len(tail) :] = torch.as_tensor(tail)
            mask[row, len(shared) + length - len(tail) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, len(shared) :]
        cache = None
        if shared:
            cache = self.model(
                input_ids=torch.as_tensor([shared]), use_cache=True, logits_to_keep=1
            ).cache
            cache.batch_repeat_interleave(len(sequences))
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=cache is not None,
            logits_to_keep=keep,
        ).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        result = []
        for row, (_, reply) in enumerate(sequences):
            n = len(reply)
            # logits at kept position j predict the token at kept position j + 1
            predicted = log_probs[row, keep - n - 1 : keep - 1]
            result.append(predicted.gather(1, torch.as_tensor(reply).unsqueeze(1)).squeeze(1))
        return result

    def label_log_likelihoods(self, prompts: Sequence[list[int]]) -> np.ndarray:
        """transformers' view of label scoring: (n, k) summed reply log-probabilities."""
        torch = self.torch
        continuations = self.encoded.continuations
        self.model.eval()
        with torch.no_grad():
            rows = [
                [float(lp.sum()) for lp in self.reply_log_probs([(p, c) for c in continuations])]
                for p in prompts
            ]
        self.model.train()
        return np.array(rows)


class LoraLlm(Recipe):
    """LoRA fine-tuning of the task's LLM for label scoring, served by llama.cpp."""

    name = "lora-llm"
    order = 50
    quantizations = QUANTIZATIONS
    refits = False  # training stops early on the held-out split
    busy_with = "training"
    bounds = ("epochs", "max_steps", "max_minutes")
    runtime = "llama.cpp"
    memory_advice = (
        "set a smaller [llm] model in the task, or use a recipe that does not fine-tune "
        "the LLM (linear, encoder)"
    )

    def quantize_advice(self, quantize: str) -> str:
        return f"use one of {', '.join(QUANTIZATIONS)} (llama.cpp quantizations)"

    def plan(self, fitting: Fitting) -> Plan:
        task, settings, texts = fitting.task, fitting.settings, fitting.texts
        params = lora_params(LoraLlmParams, settings, score_tolerance=task.llm.score_tolerance)
        check = self.memory_check(settings)
        run = RunContext(
            fitting.checkpoints, settings.seed, settings.threads, fitting.say, fitting.progress
        )

        def fit_rows(rows: np.ndarray) -> Scorer:
            held = np.setdiff1d(np.arange(len(texts)), rows)
            return fit_lora_llm(
                task, texts, fitting.targets, fitting.weights, rows, held, params, run, check
            )

        return Plan(fit_rows, lora_loop.params_to_json(params))

    def base_model(self, model: Any) -> dict[str, str] | None:
        """The base GGUF the model was trained on: name, file, sha256, license."""
        return model.base_model  # type: ignore[no-any-return]

    def load(self, folder: Path, card: dict[str, Any], threads: int | None) -> Scorer:
        return LoraLlmModel.load(folder, card, threads)


registry.recipes.register("lora-llm")(LoraLlm())
