"""Loading a trained model folder as a Predictor, after checking it is complete, unchanged and
compatible.

The card names the recipe; the recipe (found in :data:`stillhouse.registry.recipes`) opens the
folder.

A folder is what ``stillhouse train`` wrote when ``card.json`` parses and names this format and
a version this code reads, and ``manifest.json`` (written last) lists every other file of the
folder, sub-folders included, with the size and sha256 found: ``card.json`` and ``README.md`` are
covered like the model files, so a copy cut short, a file from another model, a hand-edited card
(temperature, label order) or a file added later is refused, not silently used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse import registry
from stillhouse.errors import Errors, fail
from stillhouse.paths import require_folder
from stillhouse.provenance import file_sha256
from stillhouse.task import Task

if TYPE_CHECKING:
    from stillhouse.train.model import TrainedModel

FORMAT = "stillhouse-model"
# 2: manifest.json lists every file, card.json and README.md included (1 had none)
FORMAT_VERSION = 2
CARD_FILE = "card.json"
README_FILE = "README.md"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "stillhouse-model-manifest"
_REQUIRED = (
    "format",
    "format_version",
    "recipe",
    "labels",
    "hyper_parameters",
    "files",
    "calibration",
)


def folder_entries(folder: Path) -> dict[str, Path]:
    """Everything below ``folder`` but its folders (relative POSIX path → path), sorted: files,
    and links and other entries as they are (a linked folder is not followed)."""
    entries: dict[str, Path] = {}
    for parent, folders, files in os.walk(folder):
        here = Path(parent)
        names = files + [name for name in folders if (here / name).is_symlink()]
        for name in names:
            entries[(here / name).relative_to(folder).as_posix()] = here / name
    return dict(sorted(entries.items()))


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The files ``manifest.json`` lists (relative path → ``{"sha256", "bytes"}``); E721 if it is
    missing or not a manifest."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise fail(Errors.E721, path=folder, detail=f"it has no {MANIFEST_FILE}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    valid = (
        isinstance(manifest, dict)
        and manifest.get("format") == MANIFEST_FORMAT
        and isinstance(files, dict)
        and all(
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("bytes"), int)
            for entry in files.values()
        )
    )
    if not valid:
        raise fail(Errors.E721, path=folder, detail=f"{MANIFEST_FILE} is not a model manifest")
    return files  # type: ignore[return-value]


def verify_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Check the folder is exactly what its manifest lists: E721 a listed file missing (or no
    manifest), E726 a file it does not list, E725 a listed file of another size or sha256.
    Returns the listed files."""
    listed = read_manifest(folder)
    found = folder_entries(folder)
    found.pop(MANIFEST_FILE, None)
    for name in listed:
        if name not in found:
            raise fail(
                Errors.E721, path=folder, detail=f"{name} is missing ({MANIFEST_FILE} lists it)"
            )
    for name in found:
        if name not in listed:
            raise fail(Errors.E726, path=folder, file=name)
    for name, entry in listed.items():
        file = found[name]
        size = file.stat().st_size if file.is_file() else None
        if size is None:
            detail = "it is no longer a plain file"
        elif size != entry["bytes"]:
            detail = f"{size} bytes where {MANIFEST_FILE} records {entry['bytes']}"
        elif file_sha256(file) != entry["sha256"]:
            detail = f"its sha256 differs from the one {MANIFEST_FILE} records"
        else:
            continue
        raise fail(Errors.E725, path=folder, file=name, detail=detail)
    return listed


def read_card(path: str | Path, *, verify_files: bool = True) -> dict[str, Any]:
    """The folder's card, checked: E720 no folder (E727 something else there), E721 incomplete,
    E722 another format version; with ``verify_files``, the folder against its manifest (E721,
    E725, E726) before the card's content is used."""
    folder = require_folder(Path(path), Errors.E720, Errors.E727)  # E727: a file is there
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise fail(Errors.E721, path=folder, detail=f"it has no {CARD_FILE}")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise fail(
            Errors.E721, path=folder, detail=f"{CARD_FILE} is not valid JSON ({error})"
        ) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise fail(Errors.E721, path=folder, detail=f"{CARD_FILE} is not a stillhouse model card")
    # the version comes first: it says how the folder is laid out (version 1 has no manifest)
    if card.get("format_version") != FORMAT_VERSION:
        raise fail(
            Errors.E722, path=folder, found=card.get("format_version"), expected=FORMAT_VERSION
        )
    listed = verify_manifest(folder) if verify_files else None
    missing = [key for key in _REQUIRED if key not in card]
    if missing:
        raise fail(Errors.E721, path=folder, detail=f"{CARD_FILE} lacks {', '.join(missing)}")
    if listed is not None:
        for name, recorded in card["files"].items():
            if listed.get(name, {}).get("sha256") != recorded.get("sha256"):
                raise fail(
                    Errors.E721,
                    path=folder,
                    detail=f"{CARD_FILE} lists model file {name}, which {MANIFEST_FILE} does "
                    "not record with the same sha256",
                )
    return card


def load_model(
    path: str | Path, *, threads: int | None = None, task: Task | None = None
) -> TrainedModel:
    """Load a model folder written by ``stillhouse train`` (span models are their recipe's own
    Predictor, with the same ``card`` and ``labels``), after :func:`read_card`'s checks of every
    file; with ``task``, its labels must be the task's labels in the same order (E723)."""
    folder = Path(path)
    card = read_card(folder)
    if task is not None and list(card["labels"]) != task.label_names:
        raise fail(
            Errors.E723,
            path=folder,
            found=", ".join(card["labels"]),
            task=task.path or task.name,
            expected=", ".join(task.label_names),
        )
    kind = card.get("task", {}).get("kind", "classify")
    recipe_name = card["recipe"]
    recipe = registry.recipes.get(recipe_name) if isinstance(recipe_name, str) else None
    if recipe is None or kind not in recipe.kinds:
        for_kind = "" if kind == "classify" else f" for `{kind}` tasks"
        raise fail(
            Errors.E721,
            path=folder,
            detail=f"its recipe `{recipe_name}`{for_kind} is not one this version loads",
        )
    return recipe.open(folder, card, threads)  # type: ignore[no-any-return]
