"""What the review tests share: task folders with a filled store, a real `stillhouse review`
server in a subprocess on a free 127.0.0.1 port, the store's human answers, a PNG decoder for the
screenshot checks. The browser fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stillhouse.data.records import Annotation, Example, Span
from stillhouse.data.store import Store
from stillhouse.task import Task, load_task

LLM = "llm:smollm2-135m@00000000"
SENTIMENT = {
    "positive": "The writer is pleased, praises something or recommends it.",
    "neutral": "A plain statement or question without a clear opinion.",
    "negative": "The writer is unhappy, complains, criticises or warns others.",
}
WORDS = [
    "the",
    "food",
    "was",
    "cold",
    "and",
    "the",
    "service",
    "slow",
    "but",
    "the",
    "view",
    "from",
    "the",
    "terrace",
    "made",
    "up",
    "for",
    "a",
    "lot",
    "of",
    "it",
    "we",
    "would",
    "come",
    "back",
    "on",
    "a",
    "sunny",
    "day",
    "with",
    "friends",
    "and",
    "family",
]


def task_toml(
    name: str,
    kind: str,
    labels: dict[str, str],
    instructions: str = "Pick the label that fits the text best.",
) -> str:
    lines = [
        f"name = {json.dumps(name)}",
        f'kind = "{kind}"',
        f"instructions = {json.dumps(instructions)}",
        "",
        "[labels]",
    ]
    lines += [f"{json.dumps(label)} = {json.dumps(text)}" for label, text in labels.items()]
    return "\n".join(lines) + "\n"


def write_task(
    folder: Path,
    kind: str = "classify",
    labels: dict[str, str] | None = None,
    name: str = "review-test",
    instructions: str = "Pick the label that fits the text best.",
) -> Task:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "task.toml"
    path.write_text(task_toml(name, kind, labels or SENTIMENT, instructions), encoding="utf-8")
    return load_task(path)


def distinct_texts(count: int, seed: int = 0) -> list[str]:
    """``count`` texts, each unlike the others (no two are near duplicates)."""
    rng = random.Random(seed)
    return [
        f"Visit {n}: " + " ".join(rng.sample(WORDS, 14)) + f" ({n * 7919 % 10007})"
        for n in range(count)
    ]


def llm_probs(labels: Sequence[str], rng: random.Random) -> dict[str, float]:
    weights = [rng.random() ** 3 for _ in labels]
    total = sum(weights)
    return {label: weight / total for label, weight in zip(labels, weights, strict=True)}


def fill_classify(
    task: Task, texts: Sequence[str], seed: int = 0, gold: dict[int, str] | None = None
) -> list[Example]:
    """Store ``texts`` as examples with an LLM answer and probabilities for each (the most
    probable label); ``gold`` gives some of them (by position) a gold label."""
    rng = random.Random(seed)
    examples = [
        Example(id=f"ex{n:03d}", text=text, gold=(gold or {}).get(n))
        for n, text in enumerate(texts)
    ]
    annotations = []
    for example in examples:
        probs = llm_probs(task.label_names, rng)
        answer = max(probs, key=probs.__getitem__)
        annotations.append(Annotation(example.id, LLM, answer, probs, {}, time.time()))
    with Store.for_task(task, create=True) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
    return examples


def fill_spans(
    task: Task, texts: Sequence[str], suggested: Sequence[Sequence[Span]]
) -> list[Example]:
    examples = [Example(id=f"sp{n:03d}", text=text) for n, text in enumerate(texts)]
    annotations = [
        Annotation(example.id, LLM, tuple(spans), None, {}, time.time())
        for example, spans in zip(examples, suggested, strict=True)
    ]
    with Store.for_task(task, create=True) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
    return examples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReviewServer:
    """`stillhouse review --task TASK --port PORT ...` in a subprocess, until :meth:`stop`."""

    def __init__(self, task: Task, *args: str, port: int | None = None) -> None:
        self.task = task
        self.args = args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[str] | None = None
        self.log = Path(str(task.path) + f".review-{self.port}.log")

    def start(self) -> ReviewServer:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
        command = [
            sys.executable,
            "-m",
            "stillhouse.cli",
            "review",
            "--task",
            str(self.task.path),
            "--port",
            str(self.port),
            *self.args,
        ]
        handle = self.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, text=True, env=env
        )
        handle.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"review server exited {self.process.returncode}: {self.log.read_text()}"
                )
            try:
                with urllib.request.urlopen(self.url + "static/review.css", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"review server did not answer in 60 s: {self.log.read_text()}")

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def human_answers(task: Task, name: str) -> dict[str, Annotation]:
    with Store.for_task(task, create=False) as store:
        return {a.example_id: a for a in store.annotations(task.kind, f"human:{name}")}


def png_pixels(data: bytes) -> Any:
    """An 8-bit RGB(A) PNG (what chromium's screenshots are) as a (height, width, channels)
    array: a small decoder, so the check needs no imaging library."""
    import struct
    import zlib

    import numpy as np

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, chunks, header = 8, [], b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        at += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, "only 8-bit RGB(A) PNGs"
    channels = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8)
    stride = width * channels
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 2:
            current = (line + previous) & 0xFF
        else:  # sub, average, paeth depend on the pixel to the left: byte by byte
            current = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                left = current[x - channels] if x >= channels else 0
                up = previous[x]
                if kind == 1:
                    value = left
                elif kind == 3:
                    value = (left + up) // 2
                else:
                    corner = previous[x - channels] if x >= channels else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    value = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                current[x] = (line[x] + value) & 0xFF
        out[y] = current
        previous = current
    return out.reshape(height, width, channels)[:, :, :3]
