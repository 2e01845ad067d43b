"""The demo's workspace folder: where each step writes, what the demo recorded about it
(``demo.json``), and the checks made before anything is written.

Layout (every path below is relative to the workspace)::

    task.toml README.md LICENSE   copied from examples/nusax-sentiment-en
    pool.csv test.csv             the first --pool training rows, the first --test-limit test rows
    stillhouse.db                 the store: LLM labels, review queues, prediction log
    demo.json                     the settings the workspace was made with (model, pool, test size)
    audit/audit.{json,html}       step audit
    models/<student>/             step train (one folder per student)
    evaluation/results.json       step evaluate, with report.html
    evaluation/gate.json          step gate (the verdict per system)
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stillhouse.data.io import write_json, write_text
from stillhouse.errors import Errors, fail
from stillhouse.output_guard import Output, check_outputs

EXAMPLE = "nusax-sentiment-en"
STEPS = ("annotate", "audit", "train", "evaluate", "gate", "serve", "review")
STATE_FILE = "demo.json"
COPIED = ("task.toml", "README.md", "LICENSE")
# The students: name → (recipe, labels they learn from).
STUDENTS = {
    "linear-llm": ("linear", "llm"),
    "encoder-llm": ("encoder", "llm"),
    "linear-gold": ("linear", "gold"),
    "encoder-gold": ("encoder", "gold"),
}
# Defaults sized for the 10-minute budget on 2 cores (README "Quick start" has the timings).
DEFAULT_MODEL = "qwen2.5-0.5b"
DEFAULT_POOL = 300
DEFAULT_TEST_LIMIT = 100
MIN_POOL = 20
MIN_TEST = 10


def example_dir(name: str = EXAMPLE) -> Path:
    """The bundled example task folder (examples/ in a source checkout); E406 if absent."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / name
        if (candidate / "task.toml").is_file():
            return candidate
    raise fail(Errors.E406, name=name)


@dataclass(frozen=True)
class DemoSettings:
    """What a demo workspace is made with; recorded in demo.json, reused by ``--step``."""

    model: str = DEFAULT_MODEL
    pool: int = DEFAULT_POOL
    test_limit: int = DEFAULT_TEST_LIMIT


@dataclass(frozen=True)
class DemoWorkspace:
    """The paths of a demo workspace rooted at ``root``."""

    root: Path

    @property
    def task_path(self) -> Path:
        return self.root / "task.toml"

    @property
    def pool_path(self) -> Path:
        return self.root / "pool.csv"

    @property
    def test_path(self) -> Path:
        return self.root / "test.csv"

    @property
    def store_path(self) -> Path:
        return self.root / "stillhouse.db"

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_path(self, student: str) -> Path:
        return self.models_dir / student

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    @property
    def results_path(self) -> Path:
        return self.evaluation_dir / "results.json"

    @property
    def report_path(self) -> Path:
        return self.evaluation_dir / "report.html"

    @property
    def gate_path(self) -> Path:
        return self.evaluation_dir / "gate.json"

    def outputs_of(self, step: str) -> list[Path]:
        """What ``step`` leaves behind for the steps after it (serve and review: nothing)."""
        return {
            "annotate": [self.pool_path, self.test_path, self.store_path, self.state_path],
            "audit": [self.audit_dir / "audit.json", self.audit_dir / "audit.html"],
            "train": [self.model_path(name) / "card.json" for name in STUDENTS],
            "evaluate": [self.results_path, self.report_path],
            "gate": [self.gate_path],
        }.get(step, [])

    # -- the recorded state ------------------------------------------------------------------

    def read_state(self) -> dict[str, Any] | None:
        """demo.json as a dict (None when absent); E411 when it cannot be read."""
        if not self.state_path.is_file():
            return None
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            DemoSettings(**state["settings"])
        except (ValueError, KeyError, TypeError) as error:
            raise fail(
                Errors.E411,
                path=self.state_path,
                detail=f"not a demo state ({error})",
                workspace=self.root,
            ) from None
        return state  # type: ignore[no-any-return]

    def write_state(self, settings: DemoSettings, **fields: Any) -> None:
        state = self.read_state() or {}
        state["settings"] = asdict(settings)
        state.update(fields)
        write_json(self.state_path, state)


def resolve_settings(
    workspace: DemoWorkspace,
    step: str,
    *,
    model: str | None,
    pool: int | None,
    test_limit: int | None,
) -> DemoSettings:
    """The settings a run uses, checked before anything is written.

    Options left out (None) take the workspace's recorded value, else the default; a given one
    that differs from the record is E408 (the store and models belong to the recorded choice).
    E123/E124 when the workspace is a file or under one; E409 for a non-empty folder the demo
    did not make; E410 for sizes the example cannot give; E407 when ``step`` is not
    ``annotate`` and an earlier step's output is missing.
    """
    check_outputs([Output("--workspace", workspace.root, folder=True)], [])
    state = workspace.read_state()
    if state is None and workspace.root.is_dir() and any(workspace.root.iterdir()):
        found = ", ".join(sorted(p.name for p in workspace.root.iterdir())[:5])
        raise fail(Errors.E409, workspace=workspace.root, state=STATE_FILE, found=found)
    recorded = DemoSettings(**state["settings"]) if state is not None else None
    if model is not None:
        model = _checked_model(model)
    given = {"--model": model, "--pool": pool, "--test-limit": test_limit}
    chosen = {}
    for (option, value), field in zip(given.items(), ("model", "pool", "test_limit"), strict=True):
        kept = getattr(recorded, field) if recorded is not None else None
        if value is not None and kept is not None and value != kept:
            raise fail(
                Errors.E408,
                workspace=workspace.root,
                option=option,
                recorded=kept,
                given=value,
                state=workspace.state_path,
            )
        chosen[field] = value if value is not None else kept
    settings = DemoSettings(**{k: v for k, v in chosen.items() if v is not None})
    settings = replace(settings, model=_checked_model(settings.model))
    source = example_dir()
    for option, value, file, what, minimum in (
        ("--pool", settings.pool, "train.csv", "training rows", MIN_POOL),
        ("--test-limit", settings.test_limit, "test.csv", "test rows", MIN_TEST),
    ):
        available = _row_count(source / file)
        if not minimum <= value <= available:
            raise fail(
                Errors.E410,
                option=option,
                value=value,
                available=available,
                what=what,
                minimum=minimum,
            )
    for earlier in STEPS[: STEPS.index(step)]:
        for path in workspace.outputs_of(earlier):
            if not path.exists():
                raise fail(
                    Errors.E407, step=step, path=path, maker=earlier, workspace=workspace.root
                )
    return settings


def prepare(workspace: DemoWorkspace, settings: DemoSettings) -> None:
    """Copy the example's task into the workspace and write pool.csv and test.csv (the first
    rows of the example's files: the same rows every time for the same sizes)."""
    source = example_dir()
    workspace.root.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if not (workspace.root / name).exists():
            shutil.copy(source / name, workspace.root / name)
    for file, target, count in (
        ("train.csv", workspace.pool_path, settings.pool),
        ("test.csv", workspace.test_path, settings.test_limit),
    ):
        with (source / file).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows[: count + 1])  # header + count
        write_text(target, buffer.getvalue())
    workspace.write_state(settings)


def _checked_model(spec: str) -> str:
    """An embedded model's name, or the absolute path of a readable .gguf file (the served
    systems run in the workspace folder); E305 for anything else (a remote server gives no label
    probabilities, which the cascade's thresholds need)."""
    from stillhouse.llm.models import EMBEDDED_MODELS, check_gguf

    if spec in EMBEDDED_MODELS:
        return spec
    if spec.endswith(".gguf") or Path(spec).exists():
        return str(check_gguf(Path(spec)).resolve())
    raise fail(Errors.E305, spec=spec, names=", ".join(EMBEDDED_MODELS))


def _row_count(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))
