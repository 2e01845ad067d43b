"""Shared fixtures: the bundled NusaX sample, task folders that use the small model, the real CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

# llama.cpp's OpenMP threads spin while they wait for each other; on a machine where other
# processes compete for the cores that turns a 0.5 s decode into 8 s. Must be set before
# llama_cpp (and with it libgomp) is loaded; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
# rich fixes a console's width when it is made (from COLUMNS; 80 under TERM=dumb otherwise), and
# the CLI makes its consoles when first imported: whichever test of a worker imports it first,
# every in-process command prints 200 columns wide, as the CliRunner environments ask.
os.environ["COLUMNS"] = "200"

REPO = Path(__file__).resolve().parents[1]
NUSAX = REPO / "examples" / "nusax-sentiment-en"
SMALL_MODEL = "smollm2-135m"

Rows = list[dict[str, Any]]
TaskWriter = Callable[..., Path]
CLI = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def nusax_rows() -> Rows:
    """The NusaX-Senti English test rows in file order: ``{"id", "text", "label"}``."""
    with (NUSAX / "test.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows as CSV (columns of the first row) or JSONL, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
        )
    return path


@pytest.fixture(scope="session")
def write_rows() -> Callable[[Path, Sequence[dict[str, Any]]], Path]:
    """``write_rows(path, rows)``: rows as CSV (columns of the first row) or JSONL, by suffix."""
    return _write_rows


def nusax_task_text(*, batch_size: int = 4, extra_llm: str = "") -> str:
    """The bundled NusaX task.toml, switched to the small model, 2 threads and small batches,
    with ``[guard] injection = "off"``: the injection detector flags about 5% of NusaX's clean
    test texts (2 of the first 10), which the default (``route``) keeps from the LLM; tests of
    the guard turn it on (tests/guard/test_screen*.py, tests/serve/test_serve_guard.py)."""
    # the example's own [gate] (its last table) is left out: tests append the gates they check
    text = (NUSAX / "task.toml").read_text(encoding="utf-8").partition("\n[gate]\n")[0]
    assert text.count("\n[llm]\n") == 1, "examples/nusax-sentiment-en/task.toml changed"
    text = text.replace("\n[llm]\n", '\n[guard]\ninjection = "off"\n\n[llm]\n')
    replaced = text.replace('model = "qwen2.5-0.5b"', f'model = "{SMALL_MODEL}"\nthreads = 2')
    replaced = replaced.replace("batch_size = 16", f"batch_size = {batch_size}")
    assert replaced.count(SMALL_MODEL) == 1 and f"batch_size = {batch_size}" in replaced, (
        "examples/nusax-sentiment-en/task.toml changed: update nusax_task_text"
    )
    return replaced + extra_llm


@pytest.fixture(scope="session")
def write_task() -> TaskWriter:
    """``write_task(folder, text=None, **kwargs)`` writes ``folder/task.toml`` (by default the
    NusaX task on the small model; ``kwargs`` go to :func:`nusax_task_text`) and returns its path."""

    def write(folder: Path, text: str | None = None, **kwargs: Any) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "task.toml"
        path.write_text(text if text is not None else nusax_task_text(**kwargs), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One STILLHOUSE_HOME for every CLI run of the session: the model file is hashed once."""
    return tmp_path_factory.mktemp("stillhouse-home")


@pytest.fixture(scope="session")
def cli_env(cli_home: Path) -> dict[str, str]:
    """Environment for a CLI subprocess: private model-hash cache, wide plain output."""
    return {
        **os.environ,
        "STILLHOUSE_HOME": str(cli_home),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }


@pytest.fixture(scope="session")
def run_cli(cli_env: dict[str, str]) -> CLI:
    """``run_cli(cwd, *args, timeout=120)``: the real ``stillhouse`` command in a subprocess."""

    def run(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stillhouse.cli", *args],
            cwd=cwd,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


# The slowest test modules, run first: `make test` runs the suite on every core
# (pytest-xdist, whole modules per worker), and a long module started last would finish alone.
SLOW_MODULES_FIRST = (
    "train/test_train_lora_llm.py",
    "train/test_train_spans.py",
    "train/test_train_contrastive.py",
    "train/test_train_lora_encoder.py",
    "test_annotate.py",
    "test_evaluate_llm.py",
    "audit/test_audit_cli.py",
    "review/test_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(REPO / "tests").as_posix()
        return (
            SLOW_MODULES_FIRST.index(path)
            if path in SLOW_MODULES_FIRST
            else len(SLOW_MODULES_FIRST)
        )

    items.sort(key=rank)  # stable: the order within a module and among the rest is kept
