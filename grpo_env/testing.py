"""Test helpers for plugin authors (loaded by pytest automatically through the ``pytest11`` entry point).

    def test_my_reward(register_plugin):
        registry = register_plugin(MyPlugin(), name="mine")   # unregistered after the test
        assert "mine.reward" in registry.rewards

A plugin under test is normally also installed (``pip install -e .``), so its entry point is
loaded too. ``register_plugin`` replaces that installed copy for the test (the same module, the
same plugin name, or the same task and reward names) and restores it afterwards, and it raises
when the plugin it registered fails to load, so a broken registration is never a silent no-op.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import pytest

from grpo_env import plugins
from grpo_env.plugins import PluginError, Registry


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
