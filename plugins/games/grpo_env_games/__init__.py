"""grpo-env games plugin: small multi-turn environments a small model can learn.

Environments (under the ``games.`` prefix): ``guess``, higher/lower number guessing. Registered
through the ``grpo_env`` entry point ``games``; the core never imports this by name.
"""

from __future__ import annotations

from grpo_env import hookimpl


@hookimpl
def register_environments(register):
    from grpo_env_games.guess import guess_environment

    register(guess_environment())
