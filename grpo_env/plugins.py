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
- a task names a reward nobody registered: that task is dropped and the reason (a close name, or the
  plugin that would provide it and why it is not loaded) recorded on its plugin; ``grpo-env plugins``
  and ``grpo-env check`` show it and ``check`` fails. A component the task marks ``optional`` is
  left out instead, with a warning, and the task stays.

Environment variables: ``GRPO_ENV_PLUGINS`` (comma-separated entry-point names: load only these;
empty: load none) and ``GRPO_ENV_BLOCK_PLUGINS`` (comma-separated names never loaded).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from grpo_env import hookspecs
from grpo_env.environment import Environment
from grpo_env.types import Monitor, Reward, Task

ENTRY_POINT_GROUP = "grpo_env"
ENV_ALLOW = "GRPO_ENV_PLUGINS"
ENV_BLOCK = "GRPO_ENV_BLOCK_PLUGINS"
log = logging.getLogger(__name__)
LISTERS = {"task": "grpo-env tasks", "reward": "grpo-env rewards"}  # the command that lists each kind


class PluginError(Exception):
    """A plugin problem that stops the run (or a lookup of something that is not registered)."""


class DuplicateError(PluginError):
    """Two plugins register the same task or reward name (``plugins``: the two plugin names)."""

    def __init__(self, message: str, plugins: tuple[str, str]):
        super().__init__(message)
        self.plugins = plugins


@dataclass
class PluginInfo:
    """What the host knows about one plugin: where it came from and what it registered."""

    name: str
    distribution: str = ""
    version: str = ""
    status: str = "loaded"  # loaded | failed | blocked | replaced
    error: str = ""  # why it failed, is blocked or was replaced
    problems: list[str] = field(default_factory=list)  # e.g. a task dropped for an unknown reward
    dropped: dict[str, str] = field(default_factory=dict)  # task name -> why it was dropped
    warnings: list[str] = field(default_factory=list)  # e.g. an optional reward component left out
    tasks: list[str] = field(default_factory=list)
    rewards: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    monitors: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """Every task, environment and reward the loaded plugins registered, attributed to their plugin.
    Environments are tasks played as episodes: they share the task table (and its names), so a
    recipe mixes them like tasks."""

    tasks: dict[str, Task]
    rewards: dict[str, Reward]
    plugins: dict[str, PluginInfo]
    origin: dict[tuple[str, str], str]  # (kind, name) -> plugin name
    monitors: dict[str, Monitor] = field(default_factory=dict)

    def _lookup(self, kind: str, table: dict[str, Any], name: str) -> Any:
        if name in table:
            return table[name]
        for info in self.plugins.values():  # registered by a plugin as this kind, yet not in the table: why
            if name in (info.rewards if kind == "reward" else info.tasks + info.environments):
                why = info.dropped.get(name) or info.error or "; ".join(info.problems)
                raise PluginError(f"{kind} {name!r} of plugin {info.name!r} is unavailable: {why}")
        if kind == "reward" and name in self.environments:  # an environment's own outcome is no reward
            raise PluginError(f"no reward named {name!r}: {name!r} is an environment, and its name in a "
                              "recipe's or environment's rewards weighs the environment's own outcome, which "
                              "its episodes give; it is not a registered reward")
        hint = difflib.get_close_matches(name, table, n=1)
        failed = [f"{i.name!r}" for i in self.plugins.values() if i.status == "failed"]
        lister = LISTERS.get(kind, "grpo-env plugins")  # the names themselves: a list, not a wall of them here
        msg = (f"no {kind} named {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
               + f"; {len(table)} {kind}s are registered (`{lister}` lists them)")
        if failed:
            msg += f". Plugins that failed to load: {', '.join(failed)} (see `grpo-env plugins`)"
        raise PluginError(msg)

    def task(self, name: str) -> Task:
        return self._lookup("task", self.tasks, name)

    def reward(self, name: str) -> Reward:
        return self._lookup("reward", self.rewards, name)

    @property
    def environments(self) -> dict[str, Environment]:
        return {n: t for n, t in self.tasks.items() if isinstance(t, Environment)}

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.plugins.values() if i.status == "failed"]

    @property
    def dropped(self) -> list[tuple[str, str, str]]:
        """(plugin, task, reason) for every task a loaded plugin registered but the registry dropped."""
        return [(i.name, t, why) for i in self.plugins.values() for t, why in i.dropped.items()]

    @property
    def warnings(self) -> list[tuple[str, str]]:
        """(plugin, warning) for things that work, but not fully (an optional component left out)."""
        return [(i.name, w) for i in self.plugins.values() for w in i.warnings]


pm = pluggy.PluginManager("grpo_env")
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_infos: dict[str, PluginInfo] = {}
_registry: Registry | None = None
_direct: set[str] = set()  # plugins registered with register_plugin, not from an entry point
_set_aside: dict[str, list[tuple[object | None, PluginInfo]]] = {}  # direct plugin -> the ones it replaces


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
                info.error = f"{ENV_BLOCK} names it" if ep.name in block else f"{ENV_ALLOW} does not name it"
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


def register_plugin(
    plugin: object, name: str, distribution: str = "", version: str = "", replace: bool = False
) -> None:
    """Register a plugin object directly (tests, notebooks). It is validated like an entry point.

    The usual clash is a plugin under test that is also installed (``pip install -e .``): the same
    module, the same name, or the same task and reward names. With ``replace`` the installed copy
    is set aside (status ``replaced``) until :func:`unregister_plugin`; without it the clash is an
    error that says so, never a registration quietly recorded as failed.
    """
    with _lock:
        load_plugins()
        clashes = _clashes(plugin, name)
        if clashes and not replace:
            raise PluginError(
                f"cannot register plugin {name!r}: it is already registered as {', '.join(map(repr, clashes))} "
                "(an installed copy?); unregister_plugin() it first, or pass replace=True"
            )
        for other in clashes:
            _put_aside(other, by=name)
        _add(plugin, PluginInfo(name=name, distribution=distribution, version=version))
        _direct.add(name)
        _invalidate()
        if replace:
            _replace_duplicates(name)


def _clashes(plugin: object, name: str) -> list[str]:
    """Registered plugins that ``plugin`` (to be registered as ``name``) would collide with."""
    if name in _direct:
        raise PluginError(f"a plugin named {name!r} is already registered with register_plugin; use another name")
    found = [pm.get_name(plugin)] if pm.get_name(plugin) is not None else []  # the same object
    if name in _infos and name not in found:  # the same name (loaded, failed or blocked entry point)
        found.append(name)
    return found


def _put_aside(other: str, by: str) -> None:
    """Take the plugin ``other`` out of the registry until plugin ``by`` is unregistered."""
    if other in _direct:
        raise PluginError(f"plugin {by!r} collides with plugin {other!r}, also registered with register_plugin")
    obj = pm.get_plugin(other)
    if obj is not None:
        pm.unregister(obj)
    info = _infos.pop(other)
    _set_aside.setdefault(by, []).append((obj, info))
    _infos[other] = dataclasses.replace(info, status="replaced", error=f"replaced by plugin {by!r} (register_plugin)")


def _replace_duplicates(name: str) -> None:
    """Set aside each plugin that registers a task or reward name that plugin ``name`` registers too."""
    for _ in range(len(_infos)):
        try:
            _build()
            return
        except DuplicateError as e:
            if name not in e.plugins:
                raise
            _put_aside(next(p for p in e.plugins if p != name), by=name)
            _invalidate()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`, and restore what it replaced."""
    with _lock:
        plugin = pm.get_plugin(name)
        if plugin is not None:
            pm.unregister(plugin)
        _infos.pop(name, None)
        _direct.discard(name)
        for obj, info in reversed(_set_aside.pop(name, [])):
            if obj is not None:
                pm.register(obj, name=info.name)
            _infos[info.name] = info
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
    infos = {n: dataclasses.replace(i, tasks=[], rewards=[], environments=[], monitors=[], problems=[], dropped={},
                                    warnings=[])
             for n, i in _infos.items()}
    found_rewards = _collect("register_rewards", Reward, infos)
    found_tasks = _collect("register_tasks", Task, infos)
    found_envs = _collect("register_environments", Environment, infos)
    found_monitors = _collect("register_monitors", Monitor, infos)
    for plugin, items in found_tasks.items():
        infos[plugin].tasks = [t.name for t in items]
    for plugin, items in found_rewards.items():
        infos[plugin].rewards = [r.name for r in items]
    for plugin, items in found_envs.items():
        infos[plugin].environments = [e.name for e in items]
    for plugin, items in found_monitors.items():
        infos[plugin].monitors = [m.name for m in items]
    for plugin, items in found_envs.items():  # one table with tasks: a name is a task or an environment
        found_tasks.setdefault(plugin, []).extend(items)

    tasks: dict[str, Task] = {}
    rewards: dict[str, Reward] = {}
    monitors: dict[str, Monitor] = {}
    origin: dict[tuple[str, str], str] = {}
    for kind, found, table in (("reward", found_rewards, rewards), ("task", found_tasks, tasks),
                               ("monitor", found_monitors, monitors)):
        for plugin, items in found.items():
            if infos[plugin].status != "loaded":  # failed in the other hook: drop everything it gave
                continue
            for obj in items:
                other = origin.get((kind, obj.name))
                if other is not None:
                    raise DuplicateError(
                        f"{kind} {obj.name!r} is registered by two plugins: {other!r} "
                        f"({infos[other].distribution or 'not installed'}) and {plugin!r} "
                        f"({infos[plugin].distribution or 'not installed'}); block one with "
                        f"{ENV_BLOCK}={plugin}",
                        plugins=(other, plugin),
                    )
                origin[(kind, obj.name)] = plugin
                table[obj.name] = obj

    for name, task in list(tasks.items()):
        kept = _resolve_components(task, rewards, infos[origin[("task", name)]], infos)
        if kept is None:
            del tasks[name]
        else:
            tasks[name] = kept
    return Registry(tasks=tasks, rewards=rewards, plugins=infos, origin=origin, monitors=monitors)


def _resolve_components(task: Task, rewards: dict[str, Reward], info: PluginInfo,
                        infos: dict[str, PluginInfo]) -> Task | None:
    """The task with its absent optional components left out (with a warning), or None when a
    required one is absent (the task is dropped, and why is recorded on its plugin). An environment's
    own name in its rewards is its outcome, not a registered reward (and must not be one)."""
    own = task.name if isinstance(task, Environment) else None
    if own is not None and own in rewards:
        reason = f"its name is also a registered reward's, so rewards[{own!r}] would be ambiguous"
        info.dropped[task.name] = reason
        info.problems.append(f"environment {own!r} dropped: {reason}")
        return None
    absent = [r for r in task.rewards if r not in rewards and r != own]
    if not absent:
        return task
    required = [r for r in absent if r not in task.optional]
    left = {r: w for r, w in task.rewards.items() if r not in absent}
    if required or not left:
        why = "; ".join(_why_missing(r, rewards, infos, own) for r in required or absent)
        reason = f"it uses unregistered reward(s): {why}"
        info.dropped[task.name] = reason
        info.problems.append(f"task {task.name!r} dropped: {reason}")
        return None
    for r in absent:
        info.warnings.append(f"task {task.name!r}: optional reward {_why_missing(r, rewards, infos, own)} left out")
    return task.model_copy(update={"rewards": left})


def own_outcome_hint(name: str, environment: str | None) -> str | None:
    """``did you mean 'ENV' (the environment's own outcome)?`` when ``name``, a reward an environment's
    rewards name, is a misspelling of the environment's own name (``games.gues`` for ``games.guess``)."""
    if environment is None or name == environment or not difflib.get_close_matches(name, [environment], n=1):
        return None
    return f"did you mean {environment!r} (the environment's own outcome)?"


def _why_missing(reward: str, rewards: dict[str, Reward], infos: dict[str, PluginInfo],
                 environment: str | None = None) -> str:
    """``reward`` named with why no loaded plugin provides it: it is close to the environment's own
    name (``environment``: the task's, when it is one), the plugin that would provide it (by what it
    registered, or by the reward's prefix) is not loaded, or the name is close to a registered one."""
    own = own_outcome_hint(reward, environment)
    if own is not None:
        return f"{reward!r} (no such reward; {own})"
    owner = next((i for i in infos.values() if reward in i.rewards and i.status != "loaded"), None)
    prefix = infos.get(reward.split(".")[0])
    if owner is None and prefix is not None and prefix.status != "loaded":
        owner = prefix
    if owner is not None:
        return f"{reward!r} (its plugin {owner.name!r} is {owner.status}: {owner.error})"
    hint = difflib.get_close_matches(reward, rewards, n=1)
    if hint:
        return f"{reward!r} (no such reward; did you mean {hint[0]!r}?)"
    return f"{reward!r} (no loaded plugin registers it: install the plugin that provides it)"


def get_registry() -> Registry:
    """The registry of all loaded plugins (entry points loaded on first call)."""
    global _registry
    with _lock:
        load_plugins()
        if _registry is None:
            _registry = _build()
            for plugin, warning in _registry.warnings:  # every command, training included, says it
                log.warning("warning: plugin %s: %s", plugin, warning)
        return _registry


def reset() -> None:
    """Forget every plugin (for tests): the next :func:`get_registry` loads entry points again."""
    global _loaded
    with _lock:
        for plugin in list(pm.get_plugins()):
            pm.unregister(plugin)
        _infos.clear()
        _direct.clear()
        _set_aside.clear()
        _loaded = False
        _invalidate()

