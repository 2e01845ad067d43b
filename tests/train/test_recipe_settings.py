"""Every recipe refuses the settings it would ignore, before any work: a training bound
(--epochs, --max-steps, --max-minutes) for a recipe without a training loop, or one its loop
does not read, is E746 naming the option and the recipe."""

from __future__ import annotations

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.registry import recipes
from stillhouse.train import TrainSettings
from stillhouse.train.recipe import check_settings

BOUNDS = {"epochs": 2, "max_steps": 5, "max_minutes": 1.0}


@pytest.mark.parametrize("name", sorted(recipes.all()))
@pytest.mark.parametrize("bound", sorted(BOUNDS))
def test_a_bound_is_refused_exactly_where_the_recipe_does_not_read_it(
    name: str, bound: str
) -> None:
    recipe = recipes.get(name)
    settings = TrainSettings(recipe=name, **{bound: BOUNDS[bound]})
    kind = recipe.kinds[0]
    if bound in recipe.bounds:
        assert check_settings(settings, kind) is recipe
        return
    with pytest.raises(StillhouseError) as error:
        check_settings(settings, kind)
    option = "--" + bound.replace("_", "-")
    assert error.value.code == "E746"
    assert f"{option} does not apply to recipe `{name}`" in error.value.message


def test_only_training_loops_read_bounds() -> None:
    reading = {name for name, recipe in recipes.all().items() if recipe.bounds}
    assert reading == {"contrastive-encoder", "lora-encoder", "lora-llm", "spacy-ner"}
