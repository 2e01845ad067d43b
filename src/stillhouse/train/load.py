"""Loading a trained model folder as a Predictor, after checking it is complete and compatible.

The card names the recipe; the recipe (found in :data:`stillhouse.registry.recipes`) opens the
folder.

A folder is complete when ``card.json`` parses, names this format and a version this code
reads, and every model file it lists exists with the recorded sha256 (a copy cut short or a
file from another model is refused, not silently used).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse import registry
from stillhouse.errors import Errors, fail
from stillhouse.provenance import file_sha256
from stillhouse.task import Task

if TYPE_CHECKING:
    from stillhouse.train.model import TrainedModel

FORMAT = "stillhouse-model"
FORMAT_VERSION = 1
CARD_FILE = "card.json"
README_FILE = "README.md"
_REQUIRED = (
    "format",
    "format_version",
    "recipe",
    "labels",
    "hyper_parameters",
    "files",
    "calibration",
)


def read_card(path: str | Path, *, verify_files: bool = True) -> dict[str, Any]:
    """The folder's card, checked: E720 no folder, E721 incomplete, E722 another format version."""
    folder = Path(path)
    if not folder.is_dir():
        raise fail(Errors.E720, path=folder)
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
    if card.get("format_version") != FORMAT_VERSION:
        raise fail(
            Errors.E722, path=folder, found=card.get("format_version"), expected=FORMAT_VERSION
        )
    missing = [key for key in _REQUIRED if key not in card]
    if missing:
        raise fail(Errors.E721, path=folder, detail=f"{CARD_FILE} lacks {', '.join(missing)}")
    if verify_files:
        for name, recorded in card["files"].items():
            file = folder / name
            if not file.is_file():
                raise fail(Errors.E721, path=folder, detail=f"model file {name} is missing")
            if file_sha256(file) != recorded["sha256"]:
                raise fail(
                    Errors.E721,
                    path=folder,
                    detail=f"model file {name} does not have the sha256 recorded in {CARD_FILE}",
                )
    return card


def load_model(
    path: str | Path, *, threads: int | None = None, task: Task | None = None
) -> TrainedModel:
    """Load a model folder written by ``stillhouse train`` (span models are their recipe's own
    Predictor, with the same ``card`` and ``labels``); with
    ``task``, its labels must be the task's labels in the same order (E723)."""
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
