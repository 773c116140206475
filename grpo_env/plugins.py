"""The plugin host: one pluggy manager, lazy entry-point loading, and the validated registry.

Plugins are Python distributions with an entry point in the ``grpo_env`` group; our own built-in
plugins (``plugins/*``) are packaged and discovered exactly the same way. Entry points are loaded
lazily, once, on the first :func:`get_registry` call.

What happens when a plugin is bad (see docs/plugins.md, "When a plugin is broken"):

- its import fails, a hook implementation takes arguments the spec lacks, a hook name is misspelled,
  a hook raises, or it registers something of the wrong type: the plugin is *disabled* (none of its
  registrations are kept), the failure is recorded with the plugin's name, ``grpo-env plugins``
  shows it, and the run goes on with the other plugins. Asking for a task or reward of a disabled
  plugin is an error that repeats the plugin's failure.
- two plugins register the same task or reward name: loading *stops* with an error naming both
  plugins (silently picking one would train on the wrong reward); block one of them with
  ``GRPO_ENV_BLOCK_PLUGINS``.
- a task names a reward nobody registered: that task is dropped and the problem recorded on its plugin.

Environment variables: ``GRPO_ENV_PLUGINS`` (comma-separated entry-point names: load only these;
empty: load none) and ``GRPO_ENV_BLOCK_PLUGINS`` (comma-separated names never loaded).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from grpo_env import hookspecs
from grpo_env.types import Reward, Task

ENTRY_POINT_GROUP = "grpo_env"
ENV_ALLOW = "GRPO_ENV_PLUGINS"
ENV_BLOCK = "GRPO_ENV_BLOCK_PLUGINS"


class PluginError(Exception):
    """A plugin problem that stops the run (or a lookup of something that is not registered)."""


@dataclass
class PluginInfo:
    """What the host knows about one plugin: where it came from and what it registered."""

    name: str
    distribution: str = ""
    version: str = ""
    status: str = "loaded"  # loaded | failed | blocked
    error: str = ""
    problems: list[str] = field(default_factory=list)  # e.g. a task dropped for an unknown reward
    tasks: list[str] = field(default_factory=list)
    rewards: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Every task and reward the loaded plugins registered, attributed to their plugin."""

    tasks: dict[str, Task]
    rewards: dict[str, Reward]
    plugins: dict[str, PluginInfo]
    origin: dict[tuple[str, str], str]  # (kind, name) -> plugin name

    def _lookup(self, kind: str, table: dict[str, Any], name: str) -> Any:
        if name in table:
            return table[name]
        for info in self.plugins.values():
            if name in info.tasks + info.rewards:
                why = info.error or "; ".join(info.problems)
                raise PluginError(f"{kind} {name!r} of plugin {info.name!r} is unavailable: {why}")
        hint = difflib.get_close_matches(name, table, n=1)
        known = ", ".join(sorted(table)) or "none"
        failed = [f"{i.name!r}" for i in self.plugins.values() if i.status == "failed"]
        msg = f"no {kind} named {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; known: {known}"
        if failed:
            msg += f". Plugins that failed to load: {', '.join(failed)} (see `grpo-env plugins`)"
        raise PluginError(msg)

    def task(self, name: str) -> Task:
        return self._lookup("task", self.tasks, name)

    def reward(self, name: str) -> Reward:
        return self._lookup("reward", self.rewards, name)

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.plugins.values() if i.status == "failed"]


pm = pluggy.PluginManager("grpo_env")
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_infos: dict[str, PluginInfo] = {}
_registry: Registry | None = None


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _validate_hooks(plugin: object, name: str) -> None:
    """Fail now, by name, on a hook implementation whose name no spec has (a misspelling)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        pm.unregister(plugin)
        known = ", ".join(n for n in dir(hookspecs) if n.startswith("register_"))
        raise PluginError(f"unknown hook in plugin {name!r}: {e} (known hooks: {known})") from None


def _add(plugin: object, info: PluginInfo) -> None:
    """Register one plugin object with pluggy, or record why it cannot be."""
    try:
        pm.register(plugin, name=info.name)
        _validate_hooks(plugin, info.name)
    except pluggy.PluginValidationError as e:
        info.status, info.error = "failed", f"invalid hook implementation: {e}"
    except PluginError as e:
        info.status, info.error = "failed", str(e)
    except ValueError as e:  # pluggy: name already registered
        info.status, info.error = "failed", f"could not register: {e}"
    if info.status == "failed" and pm.is_registered(plugin):
        pm.unregister(plugin)  # pluggy may have added some of its hooks before the bad one
    _infos[info.name] = info


def load_plugins() -> None:
    """Load every ``grpo_env`` entry point once (honouring the allow and block lists)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        allow, block = _names(ENV_ALLOW), _names(ENV_BLOCK) or set()
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                distribution=dist.metadata["Name"] if dist else "",
                version=dist.version if dist else "",
            )
            if (allow is not None and ep.name not in allow) or ep.name in block:
                info.status = "blocked"
                _infos[ep.name] = info
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as e:  # any import failure disables the plugin, by name
                info.status, info.error = "failed", f"import of {ep.value!r} failed: {type(e).__name__}: {e}"
                _infos[ep.name] = info
                continue
            _add(plugin, info)


def register_plugin(plugin: object, name: str, distribution: str = "", version: str = "") -> None:
    """Register a plugin object directly (tests, notebooks). It is validated like an entry point."""
    with _lock:
        load_plugins()
        if name in _infos and pm.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered")
        _add(plugin, PluginInfo(name=name, distribution=distribution, version=version))
        _invalidate()


def unregister_plugin(name: str) -> None:
    with _lock:
        plugin = pm.get_plugin(name)
        if plugin is not None:
            pm.unregister(plugin)
        _infos.pop(name, None)
        _invalidate()


def _invalidate() -> None:
    global _registry
    _registry = None


def _collect(hook_name: str, kind: type, infos: dict[str, PluginInfo]) -> dict[str, list[Any]]:
    """Call each plugin's implementation of one hook separately, so every registration is attributed."""
    out: dict[str, list[Any]] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        info = infos[impl.plugin_name]
        if info.status != "loaded":  # it failed in an earlier hook
            continue
        items: list[Any] = []

        def register(obj: Any, _items: list[Any] = items, _plugin: str = impl.plugin_name) -> None:
            if not isinstance(obj, kind):
                raise PluginError(
                    f"plugin {_plugin!r}: {hook_name} registered a {type(obj).__name__}, "
                    f"expected grpo_env.{kind.__name__}"
                )
            _items.append(obj)

        try:
            impl.function(register=register)
        except PluginError as e:
            info.status, info.error = "failed", str(e)
        except Exception as e:
            info.status, info.error = "failed", f"{hook_name} raised {type(e).__name__}: {e}"
        else:
            out[impl.plugin_name] = items
    return out


def _build() -> Registry:
    infos = {n: PluginInfo(**{**vars(i), "tasks": [], "rewards": [], "problems": []}) for n, i in _infos.items()}
    found_rewards = _collect("register_rewards", Reward, infos)
    found_tasks = _collect("register_tasks", Task, infos)
    for plugin, items in found_tasks.items():
        infos[plugin].tasks = [t.name for t in items]
    for plugin, items in found_rewards.items():
        infos[plugin].rewards = [r.name for r in items]

    tasks: dict[str, Task] = {}
    rewards: dict[str, Reward] = {}
    origin: dict[tuple[str, str], str] = {}
    for kind, found, table in (("reward", found_rewards, rewards), ("task", found_tasks, tasks)):
        for plugin, items in found.items():
            if infos[plugin].status != "loaded":  # failed in the other hook: drop everything it gave
                continue
            for obj in items:
                other = origin.get((kind, obj.name))
                if other is not None:
                    raise PluginError(
                        f"{kind} {obj.name!r} is registered by two plugins: {other!r} "
                        f"({infos[other].distribution or 'not installed'}) and {plugin!r} "
                        f"({infos[plugin].distribution or 'not installed'}); block one with "
                        f"{ENV_BLOCK}={plugin}"
                    )
                origin[(kind, obj.name)] = plugin
                table[obj.name] = obj

    for name, task in list(tasks.items()):
        missing = [r for r in task.rewards if r not in rewards]
        if missing:
            plugin = origin[("task", name)]
            del tasks[name]
            infos[plugin].problems.append(f"task {name!r} dropped: it uses unregistered reward(s) {missing}")
    return Registry(tasks=tasks, rewards=rewards, plugins=infos, origin=origin)


def get_registry() -> Registry:
    """The registry of all loaded plugins (entry points loaded on first call)."""
    global _registry
    with _lock:
        load_plugins()
        if _registry is None:
            _registry = _build()
        return _registry


def reset() -> None:
    """Forget every plugin (for tests): the next :func:`get_registry` loads entry points again."""
    global _loaded
    with _lock:
        for plugin in list(pm.get_plugins()):
            pm.unregister(plugin)
        _infos.clear()
        _loaded = False
        _invalidate()

