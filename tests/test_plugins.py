"""The plugin host: discovery through installed entry points, validation, attribution, failures."""

import pytest

from grpo_env import Outcome, Reward, Task, hookimpl
from grpo_env.plugins import PluginError

GOOD = """
from grpo_env import Example, Outcome, Reward, Task, hookimpl

def exact(completion, example):
    return Outcome.correct() if completion == example.gold["a"] else Outcome.incorrect()

def examples(split, seed, options):
    yield Example(id=f"{split}{seed}", prompt="say hi", gold={"a": "hi"})

@hookimpl
def register_rewards(register):
    register(Reward(name="{name}.exact", fn=exact))

@hookimpl
def register_tasks(register):
    register(Task(name="{name}", rewards={{"{name}.exact": 1.0}}, examples=examples))
"""


def good(name):
    return GOOD.replace("{name}", name).replace("{{", "{").replace("}}", "}")


def test_discovers_installed_entry_point_and_attributes_registrations(make_dist, fresh_plugins):
    make_dist("tp-alpha-dist", "alpha", "tp_alpha", good("alpha"), version="2.3")
    reg = fresh_plugins.get_registry()
    info = reg.plugins["alpha"]
    assert (info.status, info.distribution, info.version) == ("loaded", "tp-alpha-dist", "2.3")
    assert info.tasks == ["alpha"] and info.rewards == ["alpha.exact"]
    assert reg.origin[("task", "alpha")] == "alpha"
    assert reg.task("alpha").rewards == {"alpha.exact": 1.0}


def test_entry_points_load_once(make_dist, fresh_plugins):
    make_dist("tp-alpha-dist", "alpha", "tp_alpha", good("alpha") + "\nLOADS = globals().get('LOADS', 0) + 1\n")
    first = fresh_plugins.get_registry()
    fresh_plugins.load_plugins()
    assert fresh_plugins.get_registry() is first
    import sys

    assert sys.modules["tp_alpha"].LOADS == 1


def test_import_failure_disables_only_that_plugin(make_dist, fresh_plugins):
    make_dist("tp-alpha-dist", "alpha", "tp_alpha", good("alpha"))
    make_dist("tp-broken-dist", "broken", "tp_broken", "import no_such_module_xyz\n")
    reg = fresh_plugins.get_registry()
    assert reg.plugins["broken"].status == "failed"
    assert "No module named 'no_such_module_xyz'" in reg.plugins["broken"].error
    assert "tp_broken" in reg.plugins["broken"].error
    assert "alpha" in reg.tasks


def test_hookimpl_with_unknown_argument_is_named(make_dist, fresh_plugins):
    make_dist("tp-args-dist", "args", "tp_args", "from grpo_env import hookimpl\n@hookimpl\ndef register_tasks(register, config):\n    pass\n")
    info = fresh_plugins.get_registry().plugins["args"]
    assert info.status == "failed"
    assert "invalid hook implementation" in info.error and "config" in info.error


def test_misspelled_hook_fails_at_load(make_dist, fresh_plugins):
    make_dist("tp-typo-dist", "typo", "tp_typo", "from grpo_env import hookimpl\n@hookimpl\ndef register_task(register):\n    pass\n")
    info = fresh_plugins.get_registry().plugins["typo"]
    assert info.status == "failed"
    assert "register_task" in info.error and "register_tasks" in info.error  # names the known hooks
    assert not fresh_plugins.pm.has_plugin("typo")


def test_duplicate_names_stop_with_both_plugins_named(make_dist, fresh_plugins):
    make_dist("tp-one-dist", "one", "tp_one", good("same"))
    make_dist("tp-two-dist", "two", "tp_two", good("same"))
    with pytest.raises(PluginError) as e:
        fresh_plugins.get_registry()
    msg = str(e.value)
    assert "'same.exact'" in msg and "'one'" in msg and "'two'" in msg and "tp-two-dist" in msg
    assert "GRPO_ENV_BLOCK_PLUGINS" in msg


def test_wrong_type_registration_disables_plugin(make_dist, fresh_plugins):
    make_dist(
        "tp-wrong-dist", "wrong", "tp_wrong",
        "from grpo_env import hookimpl\n@hookimpl\ndef register_rewards(register):\n    register(lambda c, e: 1.0)\n",
    )
    info = fresh_plugins.get_registry().plugins["wrong"]
    assert info.status == "failed"
    assert "registered a function, expected grpo_env.Reward" in info.error


def test_failure_in_one_hook_drops_all_registrations_of_plugin(make_dist, fresh_plugins):
    src = good("half") + "\n@hookimpl\ndef register_tasks(register):\n    raise RuntimeError('no data')\n"
    make_dist("tp-half-dist", "half", "tp_half", src)
    reg = fresh_plugins.get_registry()
    assert reg.plugins["half"].status == "failed" and "no data" in reg.plugins["half"].error
    assert "half.exact" not in reg.rewards
    with pytest.raises(PluginError, match="of plugin 'half' is unavailable.*no data"):
        reg.reward("half.exact")


def test_task_with_unknown_reward_is_dropped(make_dist, fresh_plugins):
    src = good("lone").replace('{"lone.exact": 1.0}', '{"nobody.has_this": 1.0}')
    make_dist("tp-lone-dist", "lone", "tp_lone", src)
    reg = fresh_plugins.get_registry()
    assert "lone" not in reg.tasks and "lone.exact" in reg.rewards
    with pytest.raises(PluginError, match="unregistered reward"):
        reg.task("lone")


def test_invalid_task_name_is_named_in_error(make_dist, fresh_plugins):
    make_dist("tp-bad-dist", "badname", "tp_badname", good("badname").replace('name="badname"', 'name="Bad Name"'))
    info = fresh_plugins.get_registry().plugins["badname"]
    assert info.status == "failed" and "'Bad Name' is invalid" in info.error


def test_allow_and_block_lists(make_dist, fresh_plugins, monkeypatch):
    make_dist("tp-alpha-dist", "alpha", "tp_alpha", good("alpha"))
    make_dist("tp-beta-dist", "beta", "tp_beta", good("beta"))
    monkeypatch.setenv("GRPO_ENV_PLUGINS", "beta")
    reg = fresh_plugins.get_registry()
    assert reg.plugins["alpha"].status == "blocked" and "alpha" not in reg.tasks and "beta" in reg.tasks
    fresh_plugins.reset()
    monkeypatch.delenv("GRPO_ENV_PLUGINS")
    monkeypatch.setenv("GRPO_ENV_BLOCK_PLUGINS", "beta, other")
    reg = fresh_plugins.get_registry()
    assert "alpha" in reg.tasks and "beta" not in reg.tasks


def test_unknown_task_lookup_suggests(make_dist, fresh_plugins):
    make_dist("tp-alpha-dist", "alpha", "tp_alpha", good("alpha"))
    with pytest.raises(PluginError, match="did you mean 'alpha'"):
        fresh_plugins.get_registry().task("alpah")


def always(completion, example):
    return Outcome.correct()


class InlinePlugin:
    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="inline.always", fn=always))

    @hookimpl
    def register_tasks(self, register):
        register(Task(name="inline", rewards={"inline.always": 1.0}, examples=lambda s, seed, o: []))


def test_register_plugin_fixture_registers_for_one_test(register_plugin):
    reg = register_plugin(InlinePlugin(), name="inline")
    assert reg.origin[("reward", "inline.always")] == "inline"


def test_previous_test_plugin_is_gone():
    from grpo_env.plugins import get_registry

    assert "inline" not in get_registry().tasks


def test_builtin_plugins_are_discovered_as_installed_distributions(fresh_plugins):
    """plugins/* are installed by the set-up as their own distributions and found by entry point."""
    import importlib.metadata
    from pathlib import Path

    builtin = sorted(p.name for p in (Path(__file__).parent.parent / "plugins").iterdir() if (p / "pyproject.toml").exists())
    assert "format" in builtin
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="grpo_env")}
    reg = fresh_plugins.get_registry()
    for name in builtin:
        assert name in eps, f"plugin {name} is not installed (run .ci/setup)"
        info = reg.plugins[name]
        assert info.status == "loaded", info.error
        dist = f"grpo-env-{name.replace('_', '-')}"  # a plugin folder is a Python name, a distribution may use '-'
        assert info.distribution == dist
        assert info.version == importlib.metadata.version(dist)
        assert info.tasks or info.rewards or info.environments


def test_core_never_imports_a_plugin_by_name():
    import re
    from pathlib import Path

    core = Path(__file__).parent.parent / "grpo_env"
    offenders = [
        str(p) for p in core.rglob("*.py")
        if re.search(r"^\s*(from|import)\s+grpo_env_\w+", p.read_text(), flags=re.M)
    ]
    assert offenders == []


# --- dropped tasks say why (issue 11, item 1) ---------------------------------------------------

PROVIDER = """
from grpo_env import Outcome, Reward, hookimpl

def check(completion, example):
    return Outcome.correct()

@hookimpl
def register_rewards(register):
    register(Reward(name="prov.check", fn=check))
"""


def user(name, rewards, optional=()):
    """A plugin whose one task uses ``rewards`` (its own ``NAME.exact`` among them, or not)."""
    src = good(name).replace(f'{{"{name}.exact": 1.0}}', repr(rewards))
    return src.replace("examples=examples)", f"examples=examples, optional={tuple(optional)!r})")


def test_misspelled_reward_drops_task_with_a_suggestion(make_dist, fresh_plugins):
    make_dist("tp-typo-dist", "typo", "tp_typo", user("typo", {"typo.exat": 1.0}))
    reg = fresh_plugins.get_registry()
    assert "typo" not in reg.tasks and reg.plugins["typo"].status == "loaded"
    [(plugin, task, why)] = reg.dropped
    assert (plugin, task) == ("typo", "typo")
    assert "'typo.exat'" in why and "did you mean 'typo.exact'" in why
    with pytest.raises(PluginError, match="did you mean 'typo.exact'"):
        reg.task("typo")


def test_reward_of_a_blocked_plugin_names_the_block(make_dist, fresh_plugins, monkeypatch):
    make_dist("tp-prov-dist", "prov", "tp_prov", PROVIDER)
    make_dist("tp-user-dist", "user", "tp_user", user("user", {"user.exact": 1.0, "prov.check": 0.5}))
    monkeypatch.setenv("GRPO_ENV_BLOCK_PLUGINS", "prov")
    reg = fresh_plugins.get_registry()
    assert reg.dropped == [("user", "user", reg.plugins["user"].dropped["user"])]
    assert "plugin 'prov' is blocked: GRPO_ENV_BLOCK_PLUGINS names it" in reg.plugins["user"].dropped["user"]
    fresh_plugins.reset()
    monkeypatch.delenv("GRPO_ENV_BLOCK_PLUGINS")
    monkeypatch.setenv("GRPO_ENV_PLUGINS", "user")
    why = fresh_plugins.get_registry().plugins["user"].dropped["user"]
    assert "plugin 'prov' is blocked: GRPO_ENV_PLUGINS does not name it" in why


def test_reward_of_a_failed_plugin_repeats_its_failure(make_dist, fresh_plugins):
    make_dist("tp-prov-dist", "prov", "tp_prov", "import no_such_module_xyz\n")
    make_dist("tp-user-dist", "user", "tp_user", user("user", {"prov.check": 1.0}))
    why = fresh_plugins.get_registry().plugins["user"].dropped["user"]
    assert "plugin 'prov' is failed" in why and "no_such_module_xyz" in why


def test_absent_optional_component_is_left_out_with_a_warning(make_dist, fresh_plugins, monkeypatch):
    make_dist("tp-prov-dist", "prov", "tp_prov", PROVIDER)
    make_dist("tp-user-dist", "user", "tp_user",
              user("user", {"user.exact": 1.0, "prov.check": 0.5}, optional=["prov.check"]))
    assert fresh_plugins.get_registry().task("user").rewards == {"user.exact": 1.0, "prov.check": 0.5}
    fresh_plugins.reset()
    monkeypatch.setenv("GRPO_ENV_BLOCK_PLUGINS", "prov")
    reg = fresh_plugins.get_registry()
    assert reg.task("user").rewards == {"user.exact": 1.0} and reg.dropped == []
    [(plugin, warning)] = reg.warnings
    assert plugin == "user" and "optional reward 'prov.check'" in warning and "blocked" in warning


def test_task_whose_only_components_are_absent_optional_ones_is_dropped(make_dist, fresh_plugins):
    make_dist("tp-user-dist", "user", "tp_user", user("user", {"prov.check": 1.0}, optional=["prov.check"]))
    reg = fresh_plugins.get_registry()
    assert "user" not in reg.tasks and "'prov.check'" in reg.plugins["user"].dropped["user"]


def test_optional_must_name_a_component():
    with pytest.raises(ValueError, match=r"optional reward\(s\) \['other.x'\] are not in the task's rewards"):
        Task(name="t", rewards={"t.x": 1.0}, examples=lambda s, seed, o: [], optional=("other.x",))


# --- register_plugin with the plugin also installed (issue 11, item 2) ----------------------------

def test_register_plugin_replaces_the_installed_module(make_dist, fresh_plugins, register_plugin):
    """The normal set-up: the plugin under test is pip-installed and the test registers its module."""
    make_dist("tp-demo-dist", "demo", "tp_demo", good("demo"))
    assert fresh_plugins.get_registry().plugins["demo"].distribution == "tp-demo-dist"
    import tp_demo

    reg = register_plugin(tp_demo)  # default name: the same module object under another name
    assert reg.origin[("reward", "demo.exact")] == "test_plugin" and "demo" in reg.tasks
    assert reg.plugins["demo"].status == "replaced" and "test_plugin" in reg.plugins["demo"].error
    assert reg.failures == []


def test_register_plugin_replaces_an_installed_plugin_with_the_same_names(make_dist, fresh_plugins):
    make_dist("tp-demo-dist", "demo", "tp_demo", good("demo"))
    from grpo_env.testing import plugin_registered

    class Plugin:  # the docs' example: an object registering the installed plugin's reward and task names
        @hookimpl
        def register_rewards(self, register):
            register(Reward(name="demo.exact", fn=always))

        @hookimpl
        def register_tasks(self, register):
            register(Task(name="demo", rewards={"demo.exact": 1.0}, examples=lambda s, seed, o: []))

    with plugin_registered(Plugin(), name="demo_test") as reg:
        assert reg.origin[("reward", "demo.exact")] == "demo_test"
        assert reg.rewards["demo.exact"].fn is always
    with plugin_registered(Plugin(), name="demo") as reg:  # the installed plugin's own name
        assert reg.origin[("task", "demo")] == "demo" and reg.plugins["demo"].distribution == ""
    info = fresh_plugins.get_registry().plugins["demo"]
    assert (info.status, info.distribution) == ("loaded", "tp-demo-dist")  # restored afterwards
    assert "demo_test" not in fresh_plugins.get_registry().plugins


def test_register_plugin_fails_loudly_when_the_plugin_does_not_load(fresh_plugins, register_plugin):
    class Broken:
        @hookimpl
        def register_rewards(self, register):
            raise RuntimeError("no weights file")

    with pytest.raises(PluginError, match="plugin 'broken' did not load: register_rewards raised RuntimeError: no weights"):
        register_plugin(Broken(), name="broken")


def test_register_plugin_without_replace_names_the_clash(make_dist, fresh_plugins):
    make_dist("tp-demo-dist", "demo", "tp_demo", good("demo"))
    fresh_plugins.get_registry()
    import tp_demo

    with pytest.raises(PluginError, match="already registered as 'demo'.*replace=True"):
        fresh_plugins.register_plugin(tp_demo, name="other")
