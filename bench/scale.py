"""Benchmark: --engine local vs --engine ray, on this machine, side by side in one run.

1. annotate (SmolLM2-135M, NusaX English texts) and predict (a `linear` banking77 model): local,
   Ray with 1 worker and Ray with 2 workers (one model and one thread per actor); texts/s of the
   work loop, and the wall clock including Ray's start and the actors' model loading.
2. What Ray adds per batch: a no-op call carrying a predict batch's texts to an actor and back
   (round trip, sequential), and the most batches/s the driver can take from two actors that
   return at once (the driver's ceiling).
3. A two-node cluster on this machine (`ray start --head --num-cpus 1` and `ray start --address
   ... --num-cpus 1`): predict with 2 workers through it; which node answered each batch.
4. A projection for N workers from the measured per-worker rate and the driver's ceiling, with
   its assumption stated next to it.
5. serve: the local server vs Ray Serve (1 replica) with the same model, at the same
   concurrency (wrk, C = 1 and 8): requests/s and p99.

Run: .venv/bin/python bench/scale.py [--annotate-texts 48] [--predict-texts 20000]
     [--seconds 10] [--skip-serve] [--no-results]
Appends a dated section to bench/RESULTS.md (unless --no-results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BANKING77, ROOT, machine_description, read_pairs

RAY = str(Path(sys.executable).with_name("ray"))
STILLHOUSE = [sys.executable, "-m", "stillhouse.cli"]


def nusax_task(folder: Path, texts: int) -> tuple[Path, Path]:
    """A NusaX English task on SmolLM2 (batches of 8) and ``texts`` input rows, no gold."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import nusax_task_text

    folder.mkdir(parents=True, exist_ok=True)
    task = folder / "task.toml"
    task.write_text(nusax_task_text(batch_size=8), encoding="utf-8")
    import csv

    # the bundled example's test split (NusaX-Senti English)
    with (ROOT / "examples" / "nusax-sentiment-en" / "test.csv").open(encoding="utf-8") as handle:
        rows = [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    data = folder / "input.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": str(i), "text": t}) + "\n" for i, (t, _) in enumerate(rows[:texts])
        ),
        encoding="utf-8",
    )
    return task, data


def banking_model(folder: Path) -> Path:
    """The banking77 `linear` model bench/serve.py trains (cached)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from serve import model_folder

    return model_folder("linear")


def predict_input(folder: Path, count: int) -> Path:
    rows = read_pairs(BANKING77 / "test.csv", "category")
    texts = [rows[i % len(rows)][0] for i in range(count)]
    path = folder / "predict.jsonl"
    path.write_text(
        "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    )
    return path


def annotate_cell(task: Path, data: Path, workers: int | None, threads: int) -> dict[str, Any]:
    """One annotate run in a fresh store: loop texts/s and wall seconds (with start-up)."""
    from stillhouse.annotate import annotate
    from stillhouse.scale.engine import Engine
    from stillhouse.task import load_task

    store = task.parent / "stillhouse.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    engine = Engine("ray", workers=workers, threads=threads) if workers else None
    started = time.perf_counter()
    summary = annotate(load_task(task), data, engine=engine, threads=threads)
    wall = time.perf_counter() - started
    return {"rate": summary.annotated / summary.seconds, "wall": wall, "texts": summary.annotated}


def predict_cell(model: Path, data: Path, out: Path, workers: int | None) -> dict[str, Any]:
    from stillhouse.scale.engine import Engine
    from stillhouse.train.predict import predict_file

    engine = Engine("ray", workers=workers, threads=1) if workers else None
    started = time.perf_counter()
    summary = predict_file(model, data, out, threads=1, engine=engine)
    wall = time.perf_counter() - started
    return {"rate": summary.written / summary.seconds, "wall": wall, "texts": summary.written}


def write_ceiling(model_path: Path, data: Path, out: Path) -> float:
    """Rows/s the driver writes to the predictions file when every prediction is already there:
    the most predict can reach whatever the number of workers."""
    from stillhouse.data.io import read_examples
    from stillhouse.train.load import load_model
    from stillhouse.train.predict import _BATCH, _write_predictions, model_task

    model = load_model(model_path, threads=1)
    examples = read_examples(data, model_task(model), read_gold=False).examples
    batches = [examples[i : i + _BATCH] for i in range(0, len(examples), _BATCH)]
    answers = [model.predict([e.text for e in batch]) for batch in batches]
    summary = _write_predictions(model, batches, answers, out, len(examples), None)
    return summary.written / summary.seconds


def _noop(model: Any, texts: list[str]) -> int:
    return len(texts)


def overhead(model: Path, data: Path) -> dict[str, float]:
    """Round trip of a no-op batch (256 texts) to an actor, and the driver's ceiling in
    batches/s with two actors answering at once."""
    from stillhouse.scale.engine import Engine
    from stillhouse.scale.models import RayModel

    texts = [json.loads(line)["text"] for line in data.read_text().splitlines()[:256]]
    ray_model = RayModel.open_folder(model, Engine("ray", workers=2, threads=1))
    try:
        pool = ray_model.pool
        trips = []
        for _ in range(40):
            started = time.perf_counter()
            pool.result(pool.submit(0, _noop, texts))
            trips.append(time.perf_counter() - started)
        batches = 200
        started = time.perf_counter()
        for _ in pool.ordered(_noop, ((texts,) for _ in range(batches))):
            pass
        ceiling = batches / (time.perf_counter() - started)
    finally:
        ray_model.close()
    return {"round_trip_ms": statistics.median(trips[5:]) * 1000, "ceiling_batches_s": ceiling}


def two_node_run(model: Path, data: Path, out: Path) -> dict[str, Any]:
    """predict through a head (1 CPU) and a second node (1 CPU) started with `ray start`."""
    import ray

    from stillhouse.scale.engine import Engine
    from stillhouse.scale.models import RayModel
    from stillhouse.train.predict import _BATCH

    port = 6391
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    temp = Path(tempfile.mkdtemp(prefix="ray2n-"))
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--num-cpus",
            "1",
            "--port",
            str(port),
            "--include-dashboard=false",
            "--block",
            f"--temp-dir={temp}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        time.sleep(15)
        worker = subprocess.Popen(
            [RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--block"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.environ["RAY_AUTH_MODE"] = "token"
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, namespace="stillhouse")
        deadline = time.monotonic() + 120
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        texts = [json.loads(line)["text"] for line in data.read_text().splitlines()]
        batches = [texts[i : i + _BATCH] for i in range(0, len(texts), _BATCH)]
        ray_model = RayModel.open_folder(model, Engine("ray", f"127.0.0.1:{port}", 2, 1))
        try:
            started = time.perf_counter()
            count = sum(len(b) for b in ray_model.predict_batches(batches))
            seconds = time.perf_counter() - started
            answered = list(ray_model.pool.batch_nodes)
        finally:
            ray_model.close()
        ray.shutdown()
        per_node = {node[:8]: answered.count(node) for node in nodes}
        return {
            "nodes": len(nodes),
            "per_node": per_node,
            "rate": count / seconds,
            "batches": len(answered),
        }
    finally:
        for process in (worker, head):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(temp, ignore_errors=True)


def wrk_cell(url: str, connections: int, seconds: int, folder: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from serve import LUA, wrk

    rows = read_pairs(BANKING77 / "test.csv", "category")
    bodies = folder / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in rows[:500]))
    lua = folder / "post.lua"
    lua.write_text(LUA)
    wrk(url, connections, 2, lua, bodies)  # warm-up
    return wrk(url, connections, seconds, lua, bodies)


def serve_cells(model: Path, folder: Path, seconds: int) -> dict[str, dict[int, dict[str, Any]]]:
    """Local server (1 worker) vs Ray Serve (1 replica), same model, wrk at C = 1 and 8."""
    sys.path.insert(0, str(ROOT / "bench"))
    from serve import free_port, wait_ready

    task_folder = folder / "serve-task"
    task_folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "examples" / "banking77" / "task.toml", task_folder / "task.toml")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name, extra in (("local server", []), ("Ray Serve, 1 replica", ["--engine", "ray"])):
        port = free_port()
        log = (folder / f"{name[:5]}.log").open("wb")
        process = subprocess.Popen(
            [
                *STILLHOUSE,
                "serve",
                "--task",
                str(task_folder / "task.toml"),
                "--system",
                f"m=model:{model}",
                "--port",
                str(port),
                "--threads",
                "1",
                *extra,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        try:
            wait_ready(process, f"http://127.0.0.1:{port}", "/readyz", timeout=300)
            results[name] = {
                c: wrk_cell(f"http://127.0.0.1:{port}", c, seconds, folder) for c in (1, 8)
            }
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotate-texts", type=int, default=48)
    parser.add_argument("--predict-texts", type=int, default=20000)
    parser.add_argument("--seconds", type=int, default=10, help="wrk's run per serve cell")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--skip-two-node", action="store_true")
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    task, data = nusax_task(work / "annotate", args.annotate_texts)
    model = banking_model(work)
    texts = predict_input(work, args.predict_texts)
    lines: list[str] = []

    # 1. throughput: local, then Ray with 1 and 2 workers on one Ray instance of 2 CPUs
    annotate_rows = {
        "local, 1 thread": annotate_cell(task, data, None, 1),
        "local, 2 threads": annotate_cell(task, data, None, 2),
    }
    predict_rows = {"local, 1 thread": predict_cell(model, texts, work / "p.jsonl", None)}
    writes = write_ceiling(model, texts, work / "w.jsonl")
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="stillhouse")
    ray_start = time.perf_counter() - started
    for workers in (1, 2):
        annotate_rows[f"ray, {workers} worker(s)"] = annotate_cell(task, data, workers, 1)
        predict_rows[f"ray, {workers} worker(s)"] = predict_cell(
            model, texts, work / f"p{workers}.jsonl", workers
        )
    same = all(
        (work / f"p{w}.jsonl").read_bytes() == (work / "p.jsonl").read_bytes() for w in (1, 2)
    )
    cost = overhead(model, texts)
    ray.shutdown()

    table = [
        "| command | engine | texts | texts/s (work loop) | wall s (with start-up) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, rows in (("annotate (SmolLM2)", annotate_rows), ("predict (linear)", predict_rows)):
        for engine, cell in rows.items():
            table.append(
                f"| {name} | {engine} | {cell['texts']} | {cell['rate']:.1f} | {cell['wall']:.1f} |"
            )
    lines += table
    lines.append("")
    lines.append(
        f"Ray instance start (ray.init, 2 CPUs): {ray_start:.1f} s. Ray predictions byte-identical to local: {same}."
    )
    lines.append(
        f"Per batch, Ray adds a round trip of {cost['round_trip_ms']:.1f} ms (median; a no-op call "
        f"carrying 256 texts to an actor and back); the driver takes at most "
        f"{cost['ceiling_batches_s']:.0f} batches/s from two actors that answer at once."
    )

    # 3. two nodes
    if not args.skip_two_node:
        two = two_node_run(model, texts, work / "p2n.jsonl")
        lines.append("")
        lines.append(
            f"Two-node cluster on this machine (head 1 CPU + second node 1 CPU, `ray start`): "
            f"{two['nodes']} nodes alive, predict with 2 workers: {two['rate']:.0f} texts/s; "
            f"batches answered per node: {two['per_node']} ({two['batches']} batches)."
        )

    # 4. projection
    r1_annotate = annotate_rows["ray, 1 worker(s)"]["rate"]
    r1_predict = predict_rows["ray, 1 worker(s)"]["rate"]
    # predict's driver writes every row itself: its ceiling is the lower of Ray's and the writing
    ceiling_predict = min(cost["ceiling_batches_s"] * 256, writes)
    lines.append(
        f"The driver writes {writes:.0f} predictions rows/s when the predictions are already there "
        f"(predict's ceiling with any number of workers)."
    )
    lines.append("")
    lines.append(
        "Projection for N workers (assumption: each worker on cores of its own, as fast as the one measured "
        "here; throughput = min(N × one worker's rate, the driver's ceiling: Ray's batches/s, and for "
        "predict the rows/s it writes); annotate's ceiling is not measured here (its per-batch commit is "
        "small next to an LLM batch):"
    )
    lines.append("")
    lines.append("| N | annotate texts/s | predict texts/s |")
    lines.append("|---:|---:|---:|")
    for n in (1, 2, 8, 32, 128):
        lines.append(
            f"| {n} | {n * r1_annotate:.0f} | {min(n * r1_predict, ceiling_predict):.0f} |"
        )

    # 5. serve
    if not args.skip_serve:
        cells = serve_cells(model, work, args.seconds)
        lines.append("")
        lines.append("| server | C | req/s | p50 ms | p99 ms | errors |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for name, by_c in cells.items():
            for c, cell in by_c.items():
                lines.append(
                    f"| {name} | {c} | {cell['rps']:.0f} | {cell['p50']:.1f} | {cell['p99']:.1f} | {cell['errors']} |"
                )

    print("\n".join(lines))
    if not args.no_results:
        header = [
            "",
            f"## scale: --engine local vs ray, Ray Serve vs the local server ({datetime.date.today()})",
            "",
            f"Machine: {machine_description()}, shared with other jobs. Command: `.venv/bin/python bench/scale.py "
            + " ".join(sys.argv[1:])
            + "`.",
            "",
        ]
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as handle:
            handle.write("\n".join(header + lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
