"""What both bridges need: a recipe's (or some tasks') mix entries, and a scoring service for them."""

from __future__ import annotations

from pathlib import Path

from grpo_env.mixture import MixEntry
from grpo_env.recipe import Recipe, load_recipe


def recipe_of(recipe: Recipe | str | Path) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def entries_of(recipe: Recipe | str | Path) -> list[MixEntry]:
    """The recipe's tasks resolved in the plugin registry (an unknown task or reward fails here, by name)."""
    from grpo_env.plugins import get_registry
    from grpo_env.train import mix_entries

    return mix_entries(recipe_of(recipe), get_registry())


def rewards_of(entries: list[MixEntry]) -> dict:
    from grpo_env.plugins import get_registry

    registry = get_registry()
    return {name: registry.reward(name) for e in entries for name in e.components}
