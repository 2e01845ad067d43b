"""Fixtures of the Ray tests: one Ray instance for the module (started and stopped here), a
`linear` NusaX model, and task folders on the small LLM."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from threadpoolctl import threadpool_limits

from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train

NUSAX = Path(__file__).resolve().parents[2] / "examples" / "nusax-sentiment-en"


def nusax(split: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` rows of the bundled NusaX English ``split`` (train or test)."""
    with (NUSAX / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[:count]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray instance with 2 CPUs for the module, in this process (library calls use it as it
    is; a CLI subprocess joins it with --ray-address); stopped at the end."""
    ray = pytest.importorskip("ray", reason="the scale extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="stillhouse")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cli(
    cli_env: dict[str, str], ray_address: str
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``ray_cli(cwd, *args, timeout=240)``: the real command in a subprocess that may join the
    module's Ray instance (Ray's token authentication, on by default, is switched on for it:
    the token is in ~/.ray/auth_token)."""
    env = {**cli_env, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}

    def run(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stillhouse.cli", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.env = env  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory: pytest.TempPathFactory, write_task) -> Path:
    """A `linear` model trained on 200 NusaX rows."""
    folder = tmp_path_factory.mktemp("scale-model")
    task = load_task(write_task(folder / "task"))
    data = write_jsonl(folder / "train.jsonl", nusax("train", 200))
    with threadpool_limits(1):
        train(
            task,
            folder / "linear",
            TrainSettings(recipe="linear", latency_texts=10, throughput_texts=50),
            data=data,
        )
    return folder / "linear"
