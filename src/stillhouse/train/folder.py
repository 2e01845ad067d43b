"""Writing a model folder whole or not at all, for every kind and recipe.

The model is saved into a temporary sibling of ``out``, every file hashed (files in
sub-folders too: a spaCy pipeline is a folder), the card written, the folder loaded back and
its CPU speed measured into the card, and only then renamed to ``out``; on any error the
temporary folder is removed, so ``out`` holds a whole model or nothing.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse.errors import Errors, fail
from stillhouse.provenance import file_sha256
from stillhouse.train.card import write_card
from stillhouse.train.load import load_model
from stillhouse.train.measure import measure_speed

if TYPE_CHECKING:
    from stillhouse.train.settings import TrainSettings


def model_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file below ``folder`` (relative POSIX path → sha256 and size), sorted."""
    return {
        path.relative_to(folder).as_posix(): {
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
        }
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def write_model_folder(
    out: Path,
    model: Any,
    card_of: Callable[[dict[str, dict[str, Any]]], dict[str, Any]],
    texts: Sequence[str],
    settings: TrainSettings,
    say: Callable[[str], None],
    *,
    checkpoints: Path | None = None,
) -> dict[str, Any]:
    """Save ``model`` (it has ``save(folder)``), write the card ``card_of(files)`` plus the
    measured ``speed`` on ``texts``, and rename into ``out`` (E711 if it appeared meanwhile);
    then remove ``checkpoints`` (a LoRA run's, no longer needed). Returns the card."""
    temporary = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    temporary.mkdir(parents=True)
    try:
        model.save(temporary)
        card = card_of(model_files(temporary))
        write_card(temporary, card)
        say("measuring CPU latency and throughput of the saved model")
        loaded = load_model(temporary, threads=settings.threads)
        card["speed"] = measure_speed(
            loaded.predict,
            texts,
            latency_texts=settings.latency_texts,
            throughput_texts=settings.throughput_texts,
            threads=settings.threads,
        )
        write_card(temporary, card)
        if out.exists():
            raise fail(Errors.E711, path=out)
        temporary.rename(out)
        if checkpoints is not None:
            shutil.rmtree(checkpoints, ignore_errors=True)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return card
