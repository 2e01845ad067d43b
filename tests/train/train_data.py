"""Small real samples for the train tests: NusaX English (bundled) and banking77 (10 intents)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NUSAX = REPO / "examples" / "nusax-sentiment-en"
BANKING77 = REPO.parent / "shared" / "datasets" / "banking77"
NUSAX_TASK = 'name = "nusax-en"\n[labels]\npositive = "pos"\nneutral = "neu"\nnegative = "neg"\n'


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def nusax_train(n: int = 200) -> list[dict[str, Any]]:
    """The first ``n`` rows of NusaX English train: ``{"id", "text", "label"}``."""
    return read_csv(NUSAX / "train.csv")[:n]


def nusax_test(n: int = 100) -> list[dict[str, Any]]:
    return read_csv(NUSAX / "test.csv")[:n]


def banking77_sample(
    labels: int = 10, per_label: int = 10, split: str = "train"
) -> list[dict[str, Any]]:
    """``per_label`` rows of each of the first ``labels`` intents (file order): ``{"text", "label"}``."""
    rows = read_csv(BANKING77 / f"{split}.csv")
    chosen: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        intent = row["category"]
        if intent not in chosen and len(chosen) == labels:
            continue
        bucket = chosen.setdefault(intent, [])
        if len(bucket) < per_label:
            bucket.append({"text": row["text"], "label": intent})
    return [row for bucket in chosen.values() for row in bucket]


def banking77_task(rows: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(row["label"] for row in rows))
    labels = "\n".join(f'{name} = "{name.replace("_", " ")}"' for name in names)
    return f'name = "banking77-sample"\n[labels]\n{labels}\n'


def write_task(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.toml").write_text(text, encoding="utf-8")
    return folder / "task.toml"


def kill_after_first_checkpoint(script: str, folder: Path, timeout_s: float) -> None:
    """Run ``script`` (a training run on ``folder``) in a subprocess, SIGKILL it once its first
    checkpoint exists, and check the kill left no model folder behind."""
    state = folder / ".model.checkpoints" / "state.pt"
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.is_file() and process.poll() is None, "no checkpoint before the run ended"
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert not (folder / "model").exists()  # nothing half-written


def reseal(model_dir: Path) -> None:
    """Rewrite a model folder's manifest after a test changed the folder on purpose, as if train
    had written it so: the checks behind the manifest's (the card's content) are then reached."""
    from stillhouse.train.folder import write_manifest

    write_manifest(model_dir)


def accuracy_in_a_fresh_process(folder: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Load the model folder in a new Python process and predict ``rows``' texts there:
    ``{"accuracy", "torch"}`` (whether torch got imported) and the model's ``runtime``."""
    script = (
        "import json, sys\n"
        "from stillhouse.train import load_model\n"
        f"model = load_model({str(folder)!r}, threads=2)\n"
        f"texts = {[row['text'] for row in rows]!r}\n"
        "answers = [p.answer for p in model.predict(texts)]\n"
        "print(json.dumps({'answers': answers, 'torch': 'torch' in sys.modules,\n"
        "                  'runtime': model.describe()['runtime']}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    output = json.loads(result.stdout.strip().splitlines()[-1])
    right = [answer == row["label"] for answer, row in zip(output["answers"], rows, strict=True)]
    return {
        "accuracy": sum(right) / len(rows),
        "torch": output["torch"],
        "runtime": output["runtime"],
    }
