"""The training loop shared by the LoRA recipes (lora-encoder, lora-llm).

Bounded by epochs, ``max_steps`` and ``max_minutes``; AdamW with a linear decay to zero; the
held-out split is evaluated at step 0 and every ``eval_every`` steps (default: each epoch) and
at the end; the best state (held-out accuracy, then loss) is kept and training stops early after
``patience`` evaluations without improvement. Everything that shapes the rest of the run
(trainable tensors, optimizer, schedule, random generator, evaluations, best state) is
checkpointed atomically to ``state.pt`` in the checkpoint folder, so the same command started
again after a kill resumes where the last checkpoint left it. A checkpoint written for other
data or settings (another ``key``) is ignored.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from stillhouse.train.settings import TrainSettings

STATE_FILE = "state.pt"

Log = Callable[[str], None]
# called as progress(step, total_steps, note) with the running loss in the note
Progress = Callable[..., None]


@dataclass(frozen=True)
class LoraParams:
    """The hyper-parameters every LoRA recipe has (recipes subclass it, add their own and change
    defaults; all are recorded in the card)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ()
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    batch_size: int = 16
    epochs: int = 3
    max_steps: int | None = None
    max_minutes: float | None = None
    patience: int = 2
    checkpoint_every: int = 50


@dataclass(frozen=True)
class RunContext:
    """Where and how a LoRA run goes: the checkpoint folder it resumes from and saves into (kept
    until the caller removes it after a complete model folder is written), the seed, torch
    threads, and the log and progress callbacks."""

    checkpoints: Path
    seed: int = 0
    threads: int | None = None
    log: Log | None = None
    progress: Progress | None = None

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


@dataclass(frozen=True)
class LoopSettings:
    """The bounds and optimizer settings of one run (each recipe fills them from its params)."""

    learning_rate: float
    weight_decay: float
    batch_size: int
    epochs: int
    max_steps: int | None
    max_minutes: float | None
    patience: int
    checkpoint_every: int
    eval_every: int | None = None  # None: after every epoch


@dataclass
class RunInfo:
    """What happened during training (recorded in the card under ``training_run``)."""

    steps: int = 0
    total_steps: int = 0
    best_step: int = 0
    stopped: str = ""
    resumed_from_step: int | None = None
    evaluations: list[dict[str, float]] = field(default_factory=list)
    train_minutes: float = 0.0
    seed: int | None = None


class Trainable(Protocol):
    """What the loop needs from a recipe's torch model."""

    def parameters(self) -> list[Any]: ...

    def loss(self, rows: np.ndarray) -> Any: ...

    def evaluate(self, rows: np.ndarray) -> dict[str, float]: ...

    def trainable(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


P = TypeVar("P", bound=LoraParams)


def loop_settings(params: LoraParams) -> LoopSettings:
    """The loop's settings from a recipe's hyper-parameters (a dataclass with the same names)."""
    return LoopSettings(
        **{f.name: getattr(params, f.name) for f in fields(LoopSettings) if hasattr(params, f.name)}
    )


def lora_params(kind: type[P], settings: TrainSettings, **own: Any) -> P:
    """A LoRA recipe's hyper-parameters: its defaults, with the bounds and quantization the
    settings give, and ``own`` recipe settings where they are not None."""
    defaults = kind()
    return kind(
        quantize=settings.quantize or defaults.quantize,  # type: ignore[call-arg, attr-defined]
        epochs=settings.epochs or defaults.epochs,
        max_steps=settings.max_steps,
        max_minutes=settings.max_minutes,
        checkpoint_every=settings.checkpoint_every or defaults.checkpoint_every,
        **{name: value for name, value in own.items() if value is not None},
    )


def params_to_json(params: LoraParams) -> dict[str, Any]:
    """A recipe's LoRA hyper-parameters as card JSON."""
    values = asdict(params)
    values["target_modules"] = list(params.target_modules)
    return values


def params_from_json(kind: type[P], values: dict[str, Any]) -> P:
    """The hyper-parameters of type ``kind`` back from card JSON (unknown keys ignored)."""
    known = {f.name for f in fields(kind)}
    chosen = {name: value for name, value in values.items() if name in known}
    return kind(**(chosen | {"target_modules": tuple(values["target_modules"])}))


def with_lora(model: Any, params: LoraParams, **options: Any) -> Any:
    """``model`` wrapped by PEFT with LoRA adapters as ``params`` say (no bias training)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
        bias="none",
        **options,
    )
    return get_peft_model(model, config)


def prepare_torch(threads: int | None, seed: int) -> None:
    """Offline transformers without progress bars, torch threads, and the seed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)


def total_steps(settings: LoopSettings, train_size: int) -> int:
    per_epoch = math.ceil(train_size / settings.batch_size)
    steps = settings.epochs * per_epoch
    return min(steps, settings.max_steps) if settings.max_steps is not None else steps


def read_state(checkpoints: Path, key: str, say: Log) -> dict[str, Any] | None:
    """The saved state for ``key``, or None (no checkpoint, unreadable, or another run's)."""
    import torch

    path = checkpoints / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False)
    except Exception as error:  # a checkpoint is disposable: start over rather than stop
        say(f"ignoring the unreadable checkpoint {path} ({error}); starting over")
        return None
    if state.get("key") != key:
        say(f"the checkpoint in {path.parent} is for other data or settings; starting over")
        return None
    return state


def _write_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def run_loop(
    model: Trainable,
    settings: LoopSettings,
    train_rows: np.ndarray,
    held_rows: np.ndarray,
    key: str,
    saved: dict[str, Any] | None,
    run: RunContext,
) -> RunInfo:
    """Train ``model`` on ``train_rows``, resuming from ``saved`` (see :func:`read_state`);
    leaves the model in its best held-out state and returns what happened."""
    import torch

    checkpoints, seed, say, progress = run.checkpoints, run.seed, run.say, run.progress

    checkpoints.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    per_epoch = math.ceil(len(train_rows) / settings.batch_size)
    eval_every = min(settings.eval_every or per_epoch, per_epoch)
    steps_total = total_steps(settings, len(train_rows))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(steps_total, 1))
    )
    info = RunInfo(total_steps=steps_total, seed=seed)
    best: dict[str, Any]
    best_score: tuple[float, float]
    bad = 0
    elapsed_before = 0.0
    if saved is None:
        best_score = _score(model, held_rows, info, step=0, say=say)
        best = model.trainable()
    else:
        model.restore(saved["trainable"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["torch_rng"])
        info = RunInfo(**saved["info"])
        info.resumed_from_step = info.steps
        best, best_score, bad = saved["best"], tuple(saved["best_score"]), saved["bad"]
        elapsed_before = info.train_minutes * 60
        say(f"resuming from the checkpoint at step {info.steps} of {steps_total}")

    def elapsed_minutes() -> float:
        return (elapsed_before + time.perf_counter() - started) / 60

    def checkpoint() -> None:
        info.train_minutes = elapsed_minutes()
        _write_state(
            checkpoints / STATE_FILE,
            {
                "key": key,
                "trainable": model.trainable(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "info": asdict(info),
                "best": best,
                "best_score": list(best_score),
                "bad": bad,
            },
        )

    started = time.perf_counter()
    running: float | None = None
    while not info.stopped:
        if info.steps >= steps_total:
            info.stopped = "max_steps" if settings.max_steps == steps_total else "epochs"
        elif settings.max_minutes is not None and elapsed_minutes() >= settings.max_minutes:
            info.stopped = "max_minutes"
        if info.stopped:
            break
        epoch, offset = divmod(info.steps, per_epoch)
        order = np.random.default_rng(seed + epoch).permutation(train_rows)
        rows = order[offset * settings.batch_size : (offset + 1) * settings.batch_size]
        loss = model.loss(rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        info.steps += 1
        value = loss.item()
        running = value if running is None else 0.9 * running + 0.1 * value
        if progress is not None:
            progress(info.steps, steps_total, f"loss {running:.3f}")
        out_of_time = settings.max_minutes is not None and elapsed_minutes() >= settings.max_minutes
        if info.steps % eval_every == 0 or info.steps == steps_total or out_of_time:
            score = _score(model, held_rows, info, step=info.steps, say=say)
            if score > best_score:
                best, best_score, bad = model.trainable(), score, 0
            else:
                bad += 1
            if bad >= settings.patience and info.steps < steps_total:
                info.stopped = f"early stopping ({bad} evaluations without a better held-out score)"
            checkpoint()
        elif info.steps % settings.checkpoint_every == 0:
            checkpoint()
    info.best_step = int(max(info.evaluations, key=lambda e: (e["accuracy"], -e["loss"]))["step"])
    checkpoint()
    model.restore(best)
    say(
        f"stopped after {info.steps} steps ({info.stopped}); best held-out state at step "
        f"{info.best_step}"
    )
    return info


def _score(
    model: Trainable, held_rows: np.ndarray, info: RunInfo, *, step: int, say: Log
) -> tuple[float, float]:
    result = model.evaluate(held_rows)
    info.evaluations.append({"step": step, **result})
    say(
        f"step {step}/{info.total_steps}: held-out accuracy {result['accuracy']:.3f}, "
        f"loss {result['loss']:.3f}"
    )
    return (result["accuracy"], -result["loss"])
