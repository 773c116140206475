"""What both bridges need: a recipe's (or some tasks') mix entries, and a scoring service for them."""

from __future__ import annotations

from pathlib import Path

from grpo_env.environment import is_environment
from grpo_env.mixture import MixEntry
from grpo_env.recipe import Recipe, load_recipe
from grpo_env.types import Task


class EnvironmentRefused(ValueError):
    """A bridge was given an environment: it scores single completions and plays no episodes."""


def refuse_environments(tasks: list[Task], bridge: str) -> None:
    """Raise :class:`EnvironmentRefused` when any of ``tasks`` is an environment, saying why.

    An environment is judged on an episode (the model's turns, the environment's answers between
    them, its own outcome at the end); a bridge hands one completion per prompt to a reward
    function, so an environment's row would have nothing to judge: TRL would drop it (``None``
    from every function) and verl, which cannot drop a row, would train on 0."""
    envs = [t.name for t in tasks if is_environment(t)]
    if not envs:
        return
    names = ", ".join(repr(n) for n in envs)
    raise EnvironmentRefused(
        f"{names} {'is an environment' if len(envs) == 1 else 'are environments'}: an environment is played "
        f"as episodes (the model's turns, the environment's answers and tools between them, its outcome at "
        f"the end), and the {bridge} bridge plays no episodes: it scores one completion per prompt, so "
        f"{'its' if len(envs) == 1 else 'their'} rows would have nothing to judge "
        f"({'TRL would drop every one' if bridge == 'TRL' else 'verl cannot drop a row: each would train on 0'}). "
        "Train environments with `grpo-env train` (docs/environments.md); for this bridge, use single-turn "
        "tasks only")


def recipe_of(recipe: Recipe | str | Path) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def entries_of(recipe: Recipe | str | Path) -> list[MixEntry]:
    """The recipe's tasks resolved in the plugin registry (an unknown task or reward fails here, by name)."""
    from grpo_env.plugins import get_registry
    from grpo_env.cli.train import mix_entries

    return mix_entries(recipe_of(recipe), get_registry())


def rewards_of(entries: list[MixEntry]) -> dict:
    from grpo_env.plugins import get_registry

    registry = get_registry()
    return {name: registry.reward(name) for e in entries for name in e.components}
