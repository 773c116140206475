"""Every hook a grpo-env plugin can implement. Bodies are docstrings only; docs/plugins.md
documents each with its exact signature (a test fails when one is missing)."""

import pluggy

hookspec = pluggy.HookspecMarker("grpo_env")
hookimpl = pluggy.HookimplMarker("grpo_env")


@hookspec
def register_tasks(register):
    """Register tasks: call ``register(Task(...))`` once per task."""


@hookspec
def register_rewards(register):
    """Register reward components: call ``register(Reward(...))`` once per reward."""


@hookspec
def register_environments(register):
    """Register environments: call ``register(Environment(...))`` once per environment."""


@hookspec
def register_monitors(register):
    """Register reward-hacking monitors: call ``register(Monitor(...))`` once per monitor. A monitor's
    signals are logged and raise alarms; they never enter a reward."""
