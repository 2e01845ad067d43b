"""Fixtures of the serve tests: two small real `linear` models (NusaX, trained once a session)
and task folders that serve them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serve_support import nusax_train_rows
from threadpoolctl import threadpool_limits

from stillhouse.data.io import write_jsonl
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train

FAST = TrainSettings(recipe="linear", latency_texts=10, throughput_texts=50)


@pytest.fixture(scope="session")
def linear_models(tmp_path_factory: pytest.TempPathFactory, write_task) -> dict[str, Path]:
    """``big`` (200 NusaX rows) and ``small`` (120 rows): two `linear` model folders with the
    NusaX task's labels and different versions."""
    folder = tmp_path_factory.mktemp("serve-models")
    task = load_task(write_task(folder / "task"))
    models = {}
    for name, rows in (("big", 200), ("small", 120)):
        data = folder / f"{name}.jsonl"
        write_jsonl(data, nusax_train_rows(rows))
        # one BLAS thread: on two busy cores, two threads make L-BFGS several times slower
        with threadpool_limits(1):
            train(task, folder / name, FAST, data=data)
        models[name] = folder / name
    return models


@pytest.fixture(scope="session")
def serve_folder(tmp_path_factory: pytest.TempPathFactory, write_task, linear_models):
    """``serve_folder(name, serve_toml)``: a new task folder holding the NusaX task (on the
    small LLM) with ``serve_toml`` appended and copies of the models under ``models/``."""

    def make(name: str, serve_toml: str = "") -> Path:
        folder = tmp_path_factory.mktemp(name)
        write_task(folder)
        path = folder / "task.toml"
        path.write_text(path.read_text(encoding="utf-8") + serve_toml, encoding="utf-8")
        for model_name, model in linear_models.items():
            shutil.copytree(model, folder / "models" / model_name)
        return folder

    return make
