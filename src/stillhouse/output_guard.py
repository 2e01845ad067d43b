"""One guard for every command that writes: what a command writes can never land on what it reads.

Before any work starts, :func:`check_outputs` checks each output a command will write:

- it must not resolve (symlinks, ``..`` and hard links included) to an input of the command — the
  task file, the store (with SQLite's ``-wal`` and ``-shm`` files), a data file — nor lie inside a
  folder the command reads (a model folder);
- two outputs of one command must be different files;
- a file output must not be an existing folder, and a folder output not an existing file;
- the nearest folder that exists must be a folder, writable (a probe file is created there and
  removed: permissions, a read-only file system and a full inode table all show) and have the free
  space the output needs.

The writes themselves are atomic (:mod:`stillhouse.data.io` writes a temporary file beside the
output and renames it into place; model folders are renamed into place whole), so a failure during
the work leaves every file that existed as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stillhouse.errors import Errors, fail

# Free space every output needs at least (the temporary file, SQLite's journal, the card…).
MIN_FREE_BYTES = 1 << 20


@dataclass(frozen=True)
class Output:
    """What a command will write: ``option`` names it in messages (``--out``); ``folder`` for a
    folder the command creates or fills; ``needed_bytes`` the free space it needs (an estimate)."""

    option: str
    path: Path
    folder: bool = False
    needed_bytes: int = 0


@dataclass(frozen=True)
class Input:
    """What a command reads: ``what`` names it in messages (``the task file``); for a ``folder``,
    every file inside it is an input too."""

    what: str
    path: Path
    folder: bool = False


def store_inputs(store: Path) -> list[Input]:
    """The store and the companion files SQLite keeps beside it."""
    return [Input("the store", Path(f"{store}{suffix}")) for suffix in ("", "-wal", "-shm")]


def task_inputs(task_path: Path | None, store: Path | None) -> list[Input]:
    """The task file and its store, as inputs of a command that uses the task."""
    inputs = [Input("the task file", task_path)] if task_path is not None else []
    return inputs + (store_inputs(store) if store is not None else [])


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Input]) -> None:
    """Refuse, before any work, outputs that would overwrite an input or cannot be written
    (see the module docstring): E120 an input, E121 two outputs the same file, E122/E123 a
    folder where a file goes or the reverse, E124 a file in the way of a folder, E125 not
    writable, E126 not enough free space."""
    seen: dict[Path, Output] = {}
    for output in outputs:
        resolved = _resolve(output.path)
        for entry in inputs:
            relation = _lands_on(resolved, entry)
            if relation:
                raise fail(
                    Errors.E120,
                    option=output.option,
                    path=output.path,
                    relation=relation,
                    what=entry.what,
                    source=entry.path,
                )
        if resolved in seen:
            first = seen[resolved]
            raise fail(
                Errors.E121,
                option=output.option,
                path=output.path,
                other_option=first.option,
                other=first.path,
            )
        seen[resolved] = output
        _check_writable(output, resolved)


def _resolve(path: Path) -> Path:
    """The absolute path with every symlink and ``..`` resolved (the parts that exist)."""
    return Path(os.path.realpath(path))


def _lands_on(output: Path, entry: Input) -> str:
    """ "is" when ``output`` is the input, "is inside" when it is in an input folder, else ""."""
    source = _resolve(entry.path)
    if output == source:
        return "is"
    if entry.folder and output.is_relative_to(source):
        return "is inside"
    try:  # a hard link to the input is the input
        if output.exists() and source.exists() and os.path.samefile(output, source):
            return "is"
    except OSError:
        pass
    return ""


def _check_writable(output: Output, resolved: Path) -> None:
    if resolved.is_dir() and not output.folder:
        raise fail(Errors.E122, option=output.option, path=output.path)
    if resolved.exists() and not resolved.is_dir() and output.folder:
        raise fail(Errors.E123, option=output.option, path=output.path)
    existing = resolved.parent if not resolved.is_dir() else resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise fail(Errors.E124, option=output.option, path=output.path, blocker=existing)
    try:
        handle, probe = tempfile.mkstemp(prefix=".stillhouse-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise fail(
            Errors.E125, option=output.option, path=output.path, folder=existing, reason=reason
        ) from None
    needed = output.needed_bytes + MIN_FREE_BYTES
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise fail(
            Errors.E126,
            option=output.option,
            path=output.path,
            folder=existing,
            free=_size(free),
            needed=_size(needed),
        )


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"
