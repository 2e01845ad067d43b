"""Writing a model folder whole or not at all, for every kind and recipe.

The model is saved into a temporary sibling of ``out``, every file hashed (files in
sub-folders too: a spaCy pipeline is a folder), the card written, the folder loaded back and
its CPU speed measured into the card, ``manifest.json`` written last (every file's size and
sha256, the card and its README included: :mod:`.load` checks it), and only then renamed to
``out``; on any error the temporary folder is removed, so ``out`` holds a whole model or nothing.

The temporary folder's name holds the writer's host and process id, so a later run for the same
``out`` removes those left by a run killed outright (``kill -9``: no cleanup ran) and never one
whose writer is still alive. A LoRA run's ``.NAME.checkpoints`` is kept for resuming.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse.data.io import write_json
from stillhouse.errors import Errors, fail, from_os_error
from stillhouse.paths import what_is
from stillhouse.provenance import file_sha256
from stillhouse.train.card import write_card
from stillhouse.train.load import MANIFEST_FILE, MANIFEST_FORMAT, folder_entries, load_model
from stillhouse.train.measure import measure_speed

if TYPE_CHECKING:
    from stillhouse.train.settings import TrainSettings


def model_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file below ``folder`` (relative POSIX path → sha256 and size), sorted."""
    return {
        name: {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        for name, path in folder_entries(folder).items()
    }


def write_manifest(folder: Path) -> None:
    """Write ``manifest.json``: every other file below ``folder`` with its sha256 and size."""
    files = model_files(folder)
    files.pop(MANIFEST_FILE, None)
    write_json(folder / MANIFEST_FILE, {"format": MANIFEST_FORMAT, "files": files})


def check_out_is_free(out: Path) -> None:
    """E711 if anything is at ``out`` already: a folder, a file, or a link (even a broken one)."""
    if out.is_symlink() and not out.exists():
        raise fail(Errors.E711, path=out, what="a link to nothing")
    if out.exists():
        raise fail(Errors.E711, path=out, what=what_is(out))


def _host() -> str:
    # dots would make the temporary names of `a` and `a.b` ambiguous; other characters are unsafe
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def temporary_sibling(out: Path) -> Path:
    """A fresh temporary folder name beside ``out``: ``.NAME.HOST.PID.RANDOM.tmp``."""
    return out.parent / f".{out.name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _alive(pid: int) -> bool:
    if os.name != "posix":  # no harmless liveness probe: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is another user's
        return True
    return True


def remove_stale_temporaries(out: Path, say: Callable[[str], None]) -> list[Path]:
    """Remove the temporary siblings of ``out`` that a run on this host left when it was killed
    (its process is gone); those of running processes, of other hosts and of other outputs stay.
    Returns the removed folders."""
    if not out.parent.is_dir():
        return []
    prefix, suffix, host = f".{out.name}.", ".tmp", _host()
    removed = []
    for sibling in sorted(out.parent.iterdir()):
        name = sibling.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or sibling.is_symlink():
            continue
        writer = name[len(prefix) : -len(suffix)].split(".")
        if len(writer) != 3 or not re.fullmatch(r"[0-9a-f]{8}", writer[2]):
            continue
        writer_host, pid = writer[0], writer[1]
        if writer_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        say(f"removed {sibling}, left by a training run that was killed (process {pid})")
        removed.append(sibling)
    return removed


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
    measured ``speed`` on ``texts`` and the manifest, and rename into ``out`` (E711 if it
    appeared meanwhile); then remove ``checkpoints`` (a LoRA run's, no longer needed). Stale
    temporary siblings of killed runs are removed first. Returns the card."""
    remove_stale_temporaries(out, say)
    temporary = temporary_sibling(out)
    try:
        temporary.mkdir(parents=True)
    except OSError as error:
        raise from_os_error(error, out) from None
    try:
        model.save(temporary)
        card = card_of(model_files(temporary))
        write_card(temporary, card)
        write_manifest(temporary)
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
        write_manifest(temporary)  # last: the card and its README are final
        check_out_is_free(out)
        temporary.rename(out)
        if checkpoints is not None:
            shutil.rmtree(checkpoints, ignore_errors=True)
    except OSError as error:  # no space, a read-only file system: say --out, not the temporary
        raise from_os_error(error, out) from None
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return card
