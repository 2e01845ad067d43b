"""Benchmark: `stillhouse serve` under load, side by side with the in-process predictor and a plain
FastAPI + uvicorn app calling the same predictor.

For banking77 `linear` and int8 `encoder` models (trained once on banking77's train split, cached
under ``$STILLHOUSE_HOME/bench``), one banking77 test text per request:

- (a) in process: ``predict([text])`` one text at a time (latency percentiles; req/s = 1 / mean)
  and the best batch size's texts/s (the limit a server could reach);
- (b) ``bench/_plain_fastapi.py``: ~20 lines of FastAPI + uvicorn (uvloop, httptools), a sync
  endpoint FastAPI runs on its thread pool, pydantic request model;
- (c) ``stillhouse serve`` with micro-batching (``--max-batch 64``) and without
  (``--max-batch 1``: one model call per request), prediction log off (``none``) so the servers
  do the same work.

Load generator: ``wrk`` (Debian's package, /usr/bin/wrk) with a Lua script that POSTs the
texts' JSON bodies in turn. Why wrk: it is a C event loop that keeps C connections busy in a
closed loop (a connection sends its next request when the answer arrives) on one thread and a
few percent of a core, so on a 2-core machine the server keeps most of the CPU; locust's Python
workers would need about a core themselves to reach 1,000 req/s. Each cell runs ``--seconds``
(10 by default) at C = 1, 8 and 32 connections; latency percentiles are wrk's (its
``latency:percentile``), errors are socket errors plus non-2xx answers.

Also: reload under load (POST /v1/admin/reload every second while wrk runs at C = 8: failed
requests of all) and the HTTP overhead at p50 (c at C = 1 minus a's batch-1 p50).

Run: ``.venv/bin/python bench/serve.py`` (prints markdown; ``uptime`` before and after, since
other work on the machine moves these numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BANKING77,
    ROOT,
    bench_cache_dir,
    example_task_file,
    machine_description,
    read_pairs,
    table_head,
)
from threadpoolctl import threadpool_limits

WRK = "/usr/bin/wrk"
PLAIN_APP = ROOT / "bench" / "_plain_fastapi.py"
LUA = r"""
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "/v1/predict", nil, bodies[i])
end
local non2xx = 0
response = function(status, headers, body)
  if status >= 300 then non2xx = non2xx + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, ' ..
    '"socket_errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def model_folder(recipe: str) -> Path:
    """The cached banking77 model of ``recipe`` (trained on the whole train split once)."""
    from stillhouse.task import load_task
    from stillhouse.train import TrainSettings, train

    folder = bench_cache_dir() / f"serve-banking77-{recipe}"
    if (folder / "card.json").is_file():
        return folder
    task = load_task(example_task_file("banking77"))
    rows = read_pairs(BANKING77 / "train.csv", "category")
    data = Path(tempfile.mkdtemp()) / "train.jsonl"
    data.write_text(
        "".join(json.dumps({task.input.text: t, task.input.label: y}) + "\n" for t, y in rows),
        encoding="utf-8",
    )
    shutil.rmtree(folder, ignore_errors=True)
    print(f"training the {recipe} model once ({len(rows)} texts) ...", file=sys.stderr)
    settings = TrainSettings(recipe=recipe, latency_texts=20, throughput_texts=100)
    with threadpool_limits(1):  # L-BFGS on two BLAS threads crawls on a shared 2-core machine
        train(task, folder, settings, data=data)
    return folder


def in_process(folder: Path, texts: list[str], threads: int) -> dict[str, Any]:
    """Batch-1 latency percentiles (ms) and req/s, and the best batch size's texts/s."""
    from stillhouse.train import load_model

    model = load_model(folder, threads=threads)
    model.predict(texts[:64])
    latencies = []
    for text in texts[:600]:
        started = time.perf_counter()
        model.predict([text])
        latencies.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(latencies, n=100)
    best = (0.0, 0)
    for batch in (8, 32, 64, 128, 256):
        chunk = texts[: max(batch * 4, 512)]
        started = time.perf_counter()
        for offset in range(0, len(chunk), batch):
            model.predict(chunk[offset : offset + batch])
        rate = len(chunk) / (time.perf_counter() - started)
        best = max(best, (rate, batch))
    return {
        "rps": 1000 / statistics.fmean(latencies),
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "best_rate": best[0],
        "best_batch": best[1],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, path: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped (exit {process.returncode})")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


class Running:
    """A server process for the length of a ``with`` block."""

    def __init__(self, argv: list[str], port: int, ready_path: str, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        wait_ready(self.process, self.url, ready_path)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wrk(url: str, connections: int, seconds: int, lua: Path, bodies: Path) -> dict[str, Any]:
    result = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODIES": str(bodies)},
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    found["rps"] = found["requests"] / found["seconds"]
    found["errors"] = found["socket_errors"] + found["status_errors"]
    return found


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="wrk's run per cell")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--models", default="linear,encoder")
    parser.add_argument(
        "--threads", type=int, help="intra-op threads of every predictor (default: serve's plan)"
    )
    args = parser.parse_args()
    if args.threads is None:
        from stillhouse.serve.settings import plan_threads

        args.threads = plan_threads(1, None).threads
    levels = [int(c) for c in args.concurrency.split(",")]
    load_before = uptime()
    texts = [t for t, _ in read_pairs(BANKING77 / "test.csv", "category")]
    work = Path(tempfile.mkdtemp(prefix="stillhouse-bench-serve-"))
    bodies = work / "bodies.jsonl"
    bodies.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    lua = work / "post.lua"
    lua.write_text(LUA, encoding="utf-8")
    shutil.copyfile(example_task_file("banking77"), work / "task.toml")
    env = {**os.environ, **{name: str(args.threads) for name in THREAD_VARIABLES}}
    python = sys.executable

    rows = []
    overhead = {}
    reload_line = ""
    for recipe in args.models.split(","):
        folder = model_folder(recipe)
        local = in_process(folder, texts, args.threads)
        rows.append(
            f"| {recipe} | (a) in-process, batch 1 | – | {local['rps']:.0f} | {local['p50']:.2f} "
            f"| {local['p95']:.2f} | {local['p99']:.2f} | – |"
        )
        rows.append(
            f"| {recipe} | (a) in-process, best batch ({local['best_batch']}) | – | "
            f"{local['best_rate']:.0f} texts/s | – | – | – | – |"
        )
        print(rows[-2], rows[-1], sep="\n", file=sys.stderr)
        # each server's command line; PORT is replaced by a free port
        plain = [python, str(PLAIN_APP), str(folder), "PORT", str(args.threads)]
        servers = [("(b) plain FastAPI + uvicorn", plain, "/healthz")]
        for name, batch in (
            ("(c) stillhouse serve, micro-batching", 64),
            ("(c) stillhouse serve, no batching", 1),
        ):
            serve = [
                *(python, "-m", "stillhouse.cli", "serve", "--task", str(work / "task.toml")),
                *("--system", f"{recipe}=model:{folder}", "--port", "PORT"),
                *("--max-batch", str(batch), "--log-predictions", "none"),
                *("--threads", str(args.threads)),
            ]
            servers.append((name, serve, "/readyz"))
        for name, argv, ready in servers:
            port = free_port()
            command = [str(port) if word == "PORT" else word for word in argv]
            with Running(command, port, ready, env) as server:
                for connections in levels:
                    wrk(server.url, connections, 2, lua, bodies)  # warm-up
                    cell = wrk(server.url, connections, args.seconds, lua, bodies)
                    rows.append(
                        f"| {recipe} | {name} | {connections} | {cell['rps']:.0f} | "
                        f"{cell['p50']:.2f} | {cell['p95']:.2f} | {cell['p99']:.2f} | "
                        f"{cell['errors']} of {cell['requests']} |"
                    )
                    print(rows[-1], file=sys.stderr)
                    if "micro" in name and connections == 1:
                        overhead[recipe] = cell["p50"] - local["p50"]
                if "micro" in name and recipe == "linear":
                    reload_line = reload_under_load(server.url, args.seconds, lua, bodies)
                    print(reload_line, file=sys.stderr)
    load_after = uptime()
    print(f"Machine: {machine_description()}; {args.threads} intra-op threads per server")
    print(f"Load before: {load_before}")
    print(f"Load after: {load_after}\n")
    print(
        "\n".join(table_head("model", "what", "C", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"))
    )
    print("\n".join(rows))
    print()
    for recipe, ms in overhead.items():
        print(f"- HTTP overhead at p50, {recipe}: {ms:.2f} ms (c, micro-batching, C = 1, minus a)")
    if reload_line:
        print(f"- {reload_line}")


def reload_under_load(url: str, seconds: int, lua: Path, bodies: Path) -> str:
    """wrk at C = 8 while POST /v1/admin/reload runs every second: failed requests of all."""
    outcomes: list[int] = []
    done = threading.Event()

    def reload_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not done.wait(1.0):
                outcomes.append(client.post("/v1/admin/reload").status_code)

    reloader = threading.Thread(target=reload_loop)
    reloader.start()
    try:
        cell = wrk(url, 8, seconds, lua, bodies)
    finally:
        done.set()
        reloader.join()
    good = sum(1 for status in outcomes if status == 200)
    return (
        f"reload under load (linear, micro-batching, C = 8, {seconds} s): {good} of "
        f"{len(outcomes)} reloads answered 200; {cell['errors']} failed requests of "
        f"{cell['requests']}"
    )


if __name__ == "__main__":
    main()
