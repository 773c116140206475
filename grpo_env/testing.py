"""Test helpers for plugin authors (loaded by pytest automatically through the ``pytest11`` entry point).

    def test_my_reward(register_plugin):
        registry = register_plugin(MyPlugin(), name="mine")   # unregistered after the test
        assert "mine.reward" in registry.rewards

An environment's episodes are played as the trainer plays them, with scripted assistant turns:

    def test_a_low_guess_is_told_so():
        ex = Example(id="t", prompt="Guess a number from 1 to 8.", gold={"secret": 8})
        played = play_episode("games.guess", ["4", "8"], example=ex)   # or an Environment object
        assert played.observations[0][0].content == "Higher." and played.scored.total == 1.0

A plugin under test is normally also installed (``pip install -e .``), so its entry point is
loaded too. ``register_plugin`` replaces that installed copy for the test (the same module, the
same plugin name, or the same task and reward names) and restores it afterwards, and it raises
when the plugin it registered fails to load, so a broken registration is never a silent no-op.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pytest

from grpo_env import plugins
from grpo_env.plugins import PluginError, Registry

if TYPE_CHECKING:
    from grpo_env.environment import Environment
    from grpo_env.episodes import Played
    from grpo_env.types import Example


def collect(hook: Callable[..., None]) -> dict[str, Any]:
    """Call one hook implementation (e.g. a plugin module's ``register_tasks``) and return what it
    registered, by name: the unit-test view of a plugin, without the plugin host."""
    found: dict[str, Any] = {}
    hook(register=lambda obj: found.__setitem__(obj.name, obj))
    return found


def _register(plugin: object, name: str) -> Registry:
    """Register ``plugin`` in place of any installed copy; raise when it did not load."""
    plugins.register_plugin(plugin, name=name, replace=True)
    registry = plugins.get_registry()
    info = registry.plugins[name]
    if info.status != "loaded":
        raise PluginError(f"register_plugin: plugin {name!r} did not load: {info.error}")
    return registry


@contextlib.contextmanager
def plugin_registered(plugin: object, name: str) -> Iterator[Registry]:
    """Register ``plugin`` for the duration of a ``with`` block and yield the updated registry."""
    try:
        yield _register(plugin, name)
    finally:
        plugins.unregister_plugin(name)


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., Registry]]:
    """Register plugin objects for one test; every one is unregistered (and what it replaced
    restored) when the test ends."""
    names: list[str] = []

    def register(plugin: object, name: str = "test_plugin") -> Registry:
        names.append(name)
        return _register(plugin, name)

    yield register
    for name in reversed(names):
        plugins.unregister_plugin(name)


def play_episode(env_or_name: "Environment | str", turns: Sequence[str], example: "Example | None" = None) -> "Played":
    """Play ``turns`` as the assistant's turns of one episode (fewer when it ends sooner), through the
    real episode process and deadlines, as ``grpo-env check`` and the trainer do, and return the
    :class:`~grpo_env.episodes.Played` result: ``scored`` (the judgement: ``total``, ``status`` and
    ``components``, the environment's outcome under its own name), ``stats`` (``turns``,
    ``tool_calls``, ``tool_errors``, ``ended_by``) and ``observations`` (the messages the model saw
    after each turn).

    ``env_or_name``: an :class:`~grpo_env.environment.Environment` or the name of a registered one.
    ``example``: any example, hand-built or not (its ``task`` and ``tools`` are set to the
    environment's); by default the environment's first example of its ``train`` split (seed 0).
    Reward components the environment names come from the registry."""
    from grpo_env.environment import Environment
    from grpo_env.episodes import EpisodeHost, play
    from grpo_env.scoring import ScoringService

    registry = None
    env = env_or_name
    if isinstance(env, str):
        registry = plugins.get_registry()
        env = registry.task(env)
    if not isinstance(env, Environment):
        raise TypeError(f"play_episode: {getattr(env, 'name', env)!r} is not an environment "
                        f"(got {type(env).__name__}); single-turn tasks are scored, not played")
    if isinstance(turns, str):
        raise TypeError("play_episode: turns is a list of the assistant's turns, not one string")
    if example is None:
        split = "train" if "train" in env.splits else env.splits[0]
        example = next(iter(env.examples(split, 0, env.parse_options({}))), None)
        if example is None:
            raise ValueError(f"play_episode: environment {env.name!r} yields no {split!r} examples")
    example = example.model_copy(update={"task": env.name, "tools": env.tool_specs()})
    rewards = {}
    if env.components:
        registry = registry or plugins.get_registry()
        rewards = {name: registry.reward(name) for name in env.components}
    with ScoringService(rewards, workers=1) as service, \
            EpisodeHost({env.name: (env, env.rewards)}, service, workers=1) as host:
        return play(host, example, list(turns))
