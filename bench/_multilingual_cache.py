"""Per-language embedding caches of bench/multilingual.py: the vectors of every NusaX train and
test text, made once (slow for the LLM) and saved with the seconds they took, so a run that is
cut off resumes and later runs only fit heads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def cached_vectors(
    folder: Path, name: str, texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]
) -> tuple[np.ndarray, float]:
    """``embed(texts)`` saved as ``folder/name.npy`` with its seconds in ``name.json``; the saved
    ones when present (and of the right length)."""
    array_path, info_path = folder / f"{name}.npy", folder / f"{name}.json"
    if array_path.is_file() and info_path.is_file():
        array = np.load(array_path)
        if len(array) == len(texts):
            return array, float(json.loads(info_path.read_text())["seconds"])
    started = time.perf_counter()
    array = embed(texts)
    seconds = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f".{name}.npy", array)
    (folder / f".{name}.npy").replace(array_path)
    info_path.write_text(json.dumps({"seconds": seconds, "texts": len(texts)}))
    return array, seconds
