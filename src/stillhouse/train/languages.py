"""The warning `train` gives when the task's languages include ones the recipe's pretrained
encoder was not trained on (all-MiniLM-L6-v2 and en_core_web_sm are English models: on NusaX
they lose 8–13 points to character n-grams outside English, bench/RESULTS.md)."""

from __future__ import annotations

from stillhouse.task import Task
from stillhouse.train.recipe import Recipe, recipes_for


def language_warning(task: Task, recipe: Recipe) -> str | None:
    """One sentence naming the task languages ``recipe`` was not trained on and the recipes to
    use instead (those with no language limit for the task's kind), or None when all are
    covered. A recipe's ``languages`` (None: no limit) are ISO 639 codes."""
    known = recipe.languages
    if known is None:
        return None
    outside = [lang for lang in task.languages if lang.lower() not in known]
    if not outside:
        return None
    instead = [other.name for other in recipes_for(task.kind) if other.languages is None]
    advice = (
        f"use `{'` or `'.join(instead)}` instead (see docs/multilingual.md)"
        if instead
        else "no recipe for this kind of task covers them; check the held-out metrics closely"
    )
    return (
        f"warning: task.toml languages include {', '.join(outside)}, which recipe "
        f"`{recipe.name}`'s pretrained model was not trained on (it knows: {', '.join(known)}); "
        f"expect it to trail character n-grams there; {advice}."
    )
