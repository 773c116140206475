"""Test helpers for plugin authors (loaded by pytest automatically through the ``pytest11`` entry point).

    def test_my_reward(register_plugin):
        registry = register_plugin(MyPlugin(), name="mine")   # unregistered after the test
        assert "mine.reward" in registry.rewards
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import pytest

from grpo_env import plugins
from grpo_env.plugins import Registry


def collect(hook: Callable[..., None]) -> dict[str, Any]:
    """Call one hook implementation (e.g. a plugin module's ``register_tasks``) and return what it
    registered, by name: the unit-test view of a plugin, without the plugin host."""
    found: dict[str, Any] = {}
    hook(register=lambda obj: found.__setitem__(obj.name, obj))
    return found


@contextlib.contextmanager
def plugin_registered(plugin: object, name: str) -> Iterator[Registry]:
    """Register ``plugin`` for the duration of a ``with`` block and yield the updated registry."""
    plugins.register_plugin(plugin, name=name)
    try:
        yield plugins.get_registry()
    finally:
        plugins.unregister_plugin(name)


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., Registry]]:
    """Register plugin objects for one test; every one is unregistered when the test ends."""
    names: list[str] = []

    def register(plugin: object, name: str = "test_plugin") -> Registry:
        plugins.register_plugin(plugin, name=name)
        names.append(name)
        return plugins.get_registry()

    yield register
    for name in names:
        plugins.unregister_plugin(name)
