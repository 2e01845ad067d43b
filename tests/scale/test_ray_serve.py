"""serve --engine ray (Ray Serve, FastAPI ingress, @serve.batch, 2 replicas) answers every
request exactly as the local server does — answers, errors, statuses — on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import nusax

from stillhouse.serve.app import create_app
from stillhouse.serve.settings import ServeSettings
from stillhouse.task import load_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_support import serving

pytestmark = pytest.mark.slow

AT = re.compile(r"at (http://\S+)")
BAD_BODIES = [
    *(b"{}", b'{"texts": []}', b'{"text": ""}', b"not json", b'{"text": "hi", "k": 99}'),
    b'{"text": "hi", "lang": "English"}',
]


def without_latency(body: bytes) -> Any:
    content = orjson.loads(body)
    for answer in content.get("predictions", []):
        answer.pop("latency_ms")
    return content


def start_ray_server(folder: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    out = (folder / "ray-serve.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "stillhouse.cli", "serve", "--port", "0", *args],
        cwd=folder,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = AT.search((folder / "ray-serve.out").read_text(encoding="utf-8"))
        if found:
            return process, found.group(1)
        assert process.poll() is None, (folder / "ray-serve.out").read_text(encoding="utf-8")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("Ray Serve did not start:\n" + (folder / "ray-serve.out").read_text())


def test_ray_serve_answers_like_the_local_server(
    tmp_path: Path, write_task, ray_cli, ray_address: str, linear_model: Path
) -> None:
    write_task(tmp_path)
    shutil.copytree(linear_model, tmp_path / "models" / "linear")
    task = load_task(tmp_path / "task.toml")
    texts = [row["text"] for row in nusax("test", 24)]
    process, url = start_ray_server(
        tmp_path,
        ray_cli.env,
        *("--task", "task.toml", "--system", "m=model:models/linear"),
        *("--engine", "ray", "--ray-address", ray_address, "--replicas", "2"),
    )
    try:
        with httpx.Client(base_url=url, timeout=60) as ray_client:
            assert ray_client.get("/readyz").status_code == 200
            # concurrent single-text requests: @serve.batch gathers them; and one of many texts
            with ThreadPoolExecutor(8) as pool:
                ray_single = list(
                    pool.map(lambda t: ray_client.post("/v1/predict", json={"text": t}), texts)
                )
            ray_many = ray_client.post("/v1/predict", json={"texts": texts, "k": 2, "lang": "en"})
            ray_bad = [ray_client.post("/v1/predict", content=body) for body in BAD_BODIES]
            ray_ready = ray_client.get("/readyz").json()
        app = create_app(task, {"m": f"model:{tmp_path / 'models' / 'linear'}"}, ServeSettings())
        with serving(app) as local_url, httpx.Client(base_url=local_url, timeout=60) as local:
            deadline = time.monotonic() + 60
            while local.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            local_single = [local.post("/v1/predict", json={"text": t}) for t in texts]
            local_many = local.post("/v1/predict", json={"texts": texts, "k": 2, "lang": "en"})
            local_bad = [local.post("/v1/predict", content=body) for body in BAD_BODIES]
            local_ready = local.get("/readyz").json()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert all(r.status_code == 200 for r in ray_single), [r.content for r in ray_single[:3]]
    assert [without_latency(r.content) for r in ray_single] == [
        without_latency(r.content) for r in local_single
    ]
    assert ray_many.status_code == 200
    assert without_latency(ray_many.content) == without_latency(local_many.content)
    assert [(r.status_code, r.json()) for r in ray_bad] == [
        (r.status_code, r.json()) for r in local_bad
    ]
    assert {r.status_code for r in ray_bad} >= {400, 422}
    assert ray_ready == local_ready
    assert all(r.headers["x-stillhouse-node"] for r in ray_single)  # which node answered
