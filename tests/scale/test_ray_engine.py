"""--engine ray gives exactly the local run's annotations and predictions, on a real Ray
instance with real actors (the small LLM, a trained `linear` model); an actor killed mid-run is
replaced with nothing lost or repeated; a killed driver resumes from the store; `audit` on Ray
finds what the local run finds."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import nusax, write_jsonl

from stillhouse.annotate import annotate, backend_settings
from stillhouse.scale.engine import Engine
from stillhouse.task import load_task

pytestmark = pytest.mark.slow

ROWS = 12  # six batches of two: room to kill something mid-run


def store_rows(store: Path) -> list[tuple[Any, ...]]:
    """Every annotation of the store (the LLM's and gold), as stored, sorted."""
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT example_id, annotator, answer, probs, info FROM annotations"
        ).fetchall()
    return sorted(rows)


def workspace(folder: Path, write_task) -> Path:
    """A task folder (NusaX on the small LLM, batches of 2) with ``input.jsonl``."""
    write_task(folder, batch_size=2)
    write_jsonl(folder / "input.jsonl", nusax("test", ROWS))
    return folder


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, write_task) -> tuple[list[tuple], int]:
    """The local run's stored annotations, and how many texts the LLM answered (the task's
    injection guard keeps some of the 12 from it)."""
    folder = workspace(tmp_path_factory.mktemp("local"), write_task)
    summary = annotate(load_task(folder / "task.toml"), folder / "input.jsonl")
    assert summary.annotated >= 6
    return store_rows(folder / "stillhouse.db"), summary.annotated


@pytest.fixture(scope="module")
def local_annotations(local_run: tuple[list[tuple], int]) -> list[tuple]:
    return local_run[0]


def test_annotate_cli_on_ray_equals_local(
    tmp_path: Path, write_task, ray_cli, ray_address: str, local_annotations: list[tuple]
) -> None:
    folder = workspace(tmp_path, write_task)
    result = ray_cli(
        folder,
        *("annotate", "--task", "task.toml", "--input", "input.jsonl", "--json"),
        *("--engine", "ray", "--ray-address", ray_address, "--ray-workers", "2", "--threads", "1"),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert store_rows(folder / "stillhouse.db") == local_annotations


def test_killed_actor_is_replaced_and_nothing_is_lost_or_repeated(
    tmp_path: Path, write_task, ray_address: str, local_run: tuple[list[tuple], int]
) -> None:
    import ray

    from stillhouse.scale.llm import open_ray_llm

    folder = workspace(tmp_path, write_task)
    task = load_task(folder / "task.toml")
    llm = open_ray_llm(task.llm.model, backend_settings(task), task, Engine("ray", workers=2))
    killed: list[int] = []

    def kill_after_first_batch(done: int, total: int) -> None:
        if not killed:  # the batches after this one are queued on both actors now
            ray.kill(llm.pool.actors[0], no_restart=False)
            killed.append(done)

    try:
        summary = annotate(
            task, folder / "input.jsonl", backend=llm, progress=kill_after_first_batch
        )
        nodes = list(llm.pool.batch_nodes)
    finally:
        llm.close()
    local_annotations, answered = local_run
    assert killed == [2]
    assert summary.annotated == answered
    assert len(nodes) == (answered + 1) // 2  # every batch answered once, by a (new) actor
    rows = store_rows(folder / "stillhouse.db")
    assert len({(row[0], row[1]) for row in rows}) == len(rows)  # no duplicates
    assert rows == local_annotations


def test_killed_driver_resumes_from_the_store(
    tmp_path: Path,
    write_task,
    ray_cli,
    ray_address: str,
    local_annotations: list[tuple],
) -> None:
    folder = workspace(tmp_path, write_task)
    args = (
        *("annotate", "--task", "task.toml", "--input", "input.jsonl"),
        *("--engine", "ray", "--ray-address", ray_address, "--ray-workers", "1", "--threads", "1"),
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "stillhouse.cli", *args],
        cwd=folder,
        env=ray_cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = folder / "stillhouse.db"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            if store.exists() and _llm_rows(store) >= 2:
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the run ended before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait()
    kept = _llm_rows(store)
    assert 2 <= kept < len(local_annotations) - ROWS  # LLM rows; the rest are gold
    resumed = ray_cli(folder, *args, "--json", timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert f'"resumed": {kept}' in resumed.stdout
    assert store_rows(store) == local_annotations


def _llm_rows(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=5) as db:
            return db.execute(
                "SELECT COUNT(*) FROM annotations WHERE annotator LIKE 'llm:%'"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_predict_on_ray_writes_the_local_file(
    tmp_path: Path, run_cli, ray_cli, ray_address: str, linear_model: Path
) -> None:
    texts = write_jsonl(
        tmp_path / "texts.jsonl", [{"id": r["id"], "text": r["text"]} for r in nusax("test", 400)]
    )
    local = run_cli(
        tmp_path,
        "predict",
        "--model",
        str(linear_model),
        "--input",
        str(texts),
        "--out",
        "local.jsonl",
    )
    assert local.returncode == 0, local.stderr
    spread = ray_cli(
        tmp_path,
        *("predict", "--model", str(linear_model), "--input", str(texts), "--out", "ray.jsonl"),
        *("--engine", "ray", "--ray-address", ray_address, "--ray-workers", "2"),
        timeout=240,
    )
    assert spread.returncode == 0, spread.stderr
    local_bytes = (tmp_path / "local.jsonl").read_bytes()
    assert local_bytes.count(b"\n") == 400  # two batches (256 + 144), one per actor
    assert (tmp_path / "ray.jsonl").read_bytes() == local_bytes


def _results(path: Path) -> Any:
    """results.json without the one thing that differs between any two runs: when it was
    written."""
    content = json.loads(path.read_text(encoding="utf-8"))
    assert content["provenance"].pop("created_at")
    return content


def test_evaluate_on_ray_writes_the_local_results(
    tmp_path: Path, write_task, run_cli, ray_cli, ray_address: str, linear_model: Path
) -> None:
    write_task(tmp_path)
    test = write_jsonl(tmp_path / "test.jsonl", nusax("test", 300))
    common = (
        *("evaluate", "--task", "task.toml", "--test", str(test)),
        *("--system", f"linear=model:{linear_model}", "--bootstrap", "200"),
        *("--efficiency-sample", "0"),
    )
    local = run_cli(tmp_path, *common, "--out", "local")
    assert local.returncode == 0, local.stderr
    spread = ray_cli(
        tmp_path,
        *common,
        *("--out", "ray", "--engine", "ray", "--ray-address", ray_address, "--ray-workers", "2"),
    )
    assert spread.returncode == 0, spread.stderr
    assert _results(tmp_path / "ray" / "results.json") == _results(
        tmp_path / "local" / "results.json"
    )


def test_audit_embeddings_on_ray_are_the_local_ones_in_order(
    ray_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from stillhouse.llm.fewshot import embed
    from stillhouse.scale import embed as on_ray

    monkeypatch.setattr(on_ray, "CHUNK", 16)  # three chunks for 40 texts: their order matters
    texts = [row["text"] for row in nusax("train", 40)]
    spread = on_ray.embed_on_ray(texts, Engine("ray", workers=1))
    assert spread.shape == (len(texts), 384)
    # the same vectors up to float rounding (each chunk is padded on its own)
    assert np.allclose(spread, embed(texts), atol=1e-5)


def _same_up_to_float_rounding(ray: Any, local: Any, where: str = "audit.json") -> None:
    """Equal structures whose floats agree to 1e-4 (the embeddings differ by float rounding)."""
    if isinstance(local, float):
        assert ray == pytest.approx(local, rel=1e-4, abs=1e-4), where
    elif isinstance(local, dict):
        assert isinstance(ray, dict) and ray.keys() == local.keys(), where
        for key in local:
            _same_up_to_float_rounding(ray[key], local[key], f"{where}.{key}")
    elif isinstance(local, list):
        assert isinstance(ray, list) and len(ray) == len(local), where
        for index, (a, b) in enumerate(zip(ray, local, strict=True)):
            _same_up_to_float_rounding(a, b, f"{where}[{index}]")
    else:
        assert ray == local, where


def test_audit_cli_on_ray_finds_what_local_finds(
    tmp_path: Path, write_task, run_cli, ray_cli, ray_address: str
) -> None:
    # the whole command: the embedding pass on Ray's actors, the checks and the review queue on
    # the driver — the same findings, in the same order, and the same queue in each store
    rows = nusax("train", 120)
    runs = {}
    for engine in ("local", "ray"):
        folder = tmp_path / engine
        write_task(folder)
        data = write_jsonl(folder / "data.jsonl", rows)
        command = (
            *("audit", "--task", "task.toml", "--data", str(data), "--out", "out"),
            *("--checks", "label_issues,outliers,duplicates"),
        )
        if engine == "local":
            done = run_cli(folder, *command)
        else:
            done = ray_cli(
                folder,
                *command,
                "--engine",
                "ray",
                "--ray-address",
                ray_address,
                "--ray-workers",
                "2",
            )
        assert done.returncode == 0, done.stderr
        report = json.loads((folder / "out" / "audit.json").read_text(encoding="utf-8"))
        for volatile in ("created_at", "data", "review_queue"):
            report.pop(volatile)
        with sqlite3.connect(folder / "stillhouse.db") as db:
            queue = db.execute(
                "SELECT example_id, queue, rank FROM review_queue ORDER BY queue, rank"
            ).fetchall()
        runs[engine] = (report, queue)
    (ray_report, ray_queue), (local_report, local_queue) = runs["ray"], runs["local"]
    assert local_report["checks"]["label_issues"]["count"] >= 1  # something to compare
    _same_up_to_float_rounding(ray_report, local_report)
    assert ray_queue == local_queue
    assert len(local_queue) == local_report["checks"]["label_issues"]["count"]
