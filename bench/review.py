"""Benchmark: how quickly the review page shows the next item after a key press.

A real `stillhouse review` server (subprocess, 127.0.0.1, a free port) over a store of 1,000
examples with an LLM suggestion each, and Debian's chromium driven by Playwright. One reviewer
works through ``--items`` items with the keyboard only: Enter (accept), a number key, the
``/`` picker (typing part of a label's name, then Enter; only where there are more than 9
labels) and ``x`` (reject), in a fixed pseudo-random mix. A script added to the page before it
loads records, with ``performance.now()``, the time from the key's ``keydown`` to

- **DOM**: the page's next item in the DOM (a MutationObserver on ``body[data-renders]``), and
- **frame**: the first task after the next animation frame (the new item painted),

so the numbers include the HTTP round trip, the server's store commit, the choice of the next
item and the page's rendering. Two tasks: 3 labels (NusaX English sentiment texts) and 150
labels (banking77 texts; its 77 intents plus 73 variants). The goal is p95 ≤ 100 ms.

Run: ``.venv/bin/python bench/review.py [--items 200]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _common import BANKING77, NUSAX, ROOT, read_csv

STORE_EXAMPLES = 1000
MEASURE = """
(() => {
  window.__latency = [];
  let pressed = null;
  window.addEventListener("keydown", (event) => { pressed = [event.key, performance.now()]; }, true);
  const watch = () => new MutationObserver(() => {
    if (pressed === null) return;
    const [key, start] = pressed;
    pressed = null;
    const dom = performance.now() - start;
    const calls = performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/"));
    const call = calls.length ? calls[calls.length - 1] : null;
    const fetch = call && call.startTime >= start ? call.responseEnd - call.startTime : null;
    requestAnimationFrame(() => setTimeout(() => {
      window.__latency.push({key, dom, fetch, frame: performance.now() - start});
    }, 0));
  }).observe(document.body, {attributes: true, attributeFilter: ["data-renders"]});
  if (document.body) watch(); else document.addEventListener("DOMContentLoaded", watch);
})();
"""


def labels_for(count: int) -> dict[str, str]:
    if count == 3:
        return {
            "positive": "The writer is pleased, praises something or recommends it.",
            "neutral": "A plain statement or question without a clear opinion.",
            "negative": "The writer is unhappy, complains, criticises or warns others.",
        }
    intents = json.loads((BANKING77 / "categories.json").read_text())
    names = intents + [f"{name}_business" for name in intents]
    return {name: name.replace("_", " ").capitalize() + "." for name in names[:count]}


def texts_for(count: int) -> list[str]:
    if count == 3:
        rows = read_csv(NUSAX / "english" / "train.csv") + read_csv(NUSAX / "english" / "test.csv")
    else:
        rows = read_csv(BANKING77 / "train.csv")
    texts = list(dict.fromkeys(row["text"] for row in rows))
    random.Random(0).shuffle(texts)
    return texts[:STORE_EXAMPLES]


def make_task(folder: Path, count: int) -> Path:
    from stillhouse.data.records import Annotation, Example
    from stillhouse.data.store import Store
    from stillhouse.task import load_task

    labels = labels_for(count)
    lines = [f'name = "review-bench-{count}"', 'kind = "classify"', "", "[labels]"]
    lines += [f"{json.dumps(name)} = {json.dumps(text)}" for name, text in labels.items()]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = load_task(folder / "task.toml")
    rng = np.random.default_rng(0)
    examples = [Example(id=f"t{n:04d}", text=text) for n, text in enumerate(texts_for(count))]
    annotations = []
    for example in examples:
        probs = rng.dirichlet(np.full(count, 0.3))
        named = {name: float(p) for name, p in zip(labels, probs, strict=True)}
        answer = max(named, key=named.__getitem__)
        annotations.append(Annotation(example.id, "llm:bench", answer, named, {}, time.time()))
    with Store.for_task(task, create=True) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
    return folder / "task.toml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(task_path: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "stillhouse.cli", "review", "--task", str(task_path)]
    command += ["--port", str(port), "--annotator", "bench"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/static/review.css", timeout=1)
            return process
        except OSError:
            if process.poll() is not None:
                problem = process.stderr.read().decode() if process.stderr else "failed"
                raise SystemExit(problem) from None
            time.sleep(0.1)
    raise SystemExit("the review server did not start")


def session(page: Any, items: int, labels: list[str], seed: int) -> list[dict[str, Any]]:
    """Work through ``items`` items; each measured press with ``move`` (what it was)."""
    rng = random.Random(seed)
    done = []
    moves = ["Enter", "number", "x"] + (["picker"] if len(labels) > 9 else [])
    weights = [4, 3, 1] + ([2] if len(labels) > 9 else [])
    for _ in range(items):
        before = int(page.get_attribute("body", "data-renders") or 0)
        move = rng.choices(moves, weights)[0]
        if move == "number":
            page.keyboard.press(str(rng.randint(1, min(9, len(labels)))))
        elif move == "picker":
            page.keyboard.press("/")
            page.keyboard.type(rng.choice(labels).replace("_", " ")[:8])
            page.keyboard.press("Enter")
        else:
            page.keyboard.press(move)
        page.wait_for_selector(f"body[data-renders='{before + 1}']", state="attached")
        done.append(move)
    time.sleep(0.2)  # the last frame's task
    found = page.evaluate("window.__latency")
    assert len(found) == len(done), (len(found), len(done))
    return [{**row, "move": move} for row, move in zip(found, done, strict=True)]


def percentiles(values: list[float]) -> str:
    p50, p95 = np.percentile(values, [50, 95])
    return f"{p50:.1f} | {p95:.1f} | {max(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--labels", default="3,150")
    parser.add_argument(
        "--chromium", default=os.environ.get("STILLHOUSE_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    cpu = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(
        f"Machine: {os.cpu_count()} cores, {cpu}; {args.items} items per session, store of "
        f"{STORE_EXAMPLES} examples; chromium {args.chromium} headless.\n"
    )
    print(
        "| labels | key | presses | HTTP p50 ms | DOM p50 ms | DOM p95 ms | DOM max ms | "
        "frame p50 ms | frame p95 ms | frame max ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, args=["--no-sandbox"]
            )
            for count in (int(part) for part in args.labels.split(",")):
                task_path = make_task(work / f"labels-{count}", count)
                port = free_port()
                process = serve(task_path, port)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.add_init_script(MEASURE)
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.wait_for_selector("body[data-ready='1']", state="attached")
                    # a few items first: the server's and the page's first calls warm up
                    session(page, 5, list(labels_for(count)), seed=1)
                    page.evaluate("window.__latency = []")
                    found = session(page, args.items, list(labels_for(count)), seed=0)
                    page.close()
                finally:
                    process.send_signal(signal.SIGINT)
                    process.wait(20)
                groups: dict[str, list[dict[str, Any]]] = {"all": found}
                names = {
                    "Enter": "⏎ accept",
                    "number": "1–9",
                    "x": "x reject",
                    "picker": "/ picker ⏎",
                }
                for row in found:
                    groups.setdefault(names[row["move"]], []).append(row)
                for key, rows in groups.items():
                    dom = [row["dom"] for row in rows]
                    frame = [row["frame"] for row in rows]
                    calls = [row["fetch"] for row in rows if row["fetch"] is not None]
                    fetch = f"{np.percentile(calls, 50):.1f}" if calls else "–"
                    print(
                        f"| {count} | {key} | {len(rows)} | {fetch} | {percentiles(dom)} | "
                        f"{percentiles(frame)} |"
                    )
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nCommand: `.venv/bin/python bench/review.py --items {args.items} --labels {args.labels}`"
        f" ({ROOT.name})."
    )


if __name__ == "__main__":
    main()
