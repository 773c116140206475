"""grpo-env code plugin: the ``code.tests`` reward and the ``code`` / ``code_stdio`` tasks.

Submitted code runs in the core sandbox (:mod:`grpo_env.sandbox`); verdicts are computed in the
trusted parent from data. Registered through the ``grpo_env`` entry point ``code``.
"""

from __future__ import annotations

from grpo_env import hookimpl
from grpo_env.types import Reward
from grpo_env_code.reward import REWARD_TIMEOUT, code_tests


@hookimpl
def register_rewards(register):
    register(
        Reward(
            name="code.tests",
            fn=code_tests,
            description="fraction of the problem's tests the extracted code passes, run in the sandbox and "
            "judged in the parent (typed statuses: timeout, memory_limit, output_limit, runtime_error, ...)",
            timeout=REWARD_TIMEOUT,
        )
    )


@hookimpl
def register_tasks(register):
    from grpo_env_code.fixtures import function_fixtures, stdio_fixtures
    from grpo_env_code.tasks import code_task, stdio_task

    register(code_task(function_fixtures))
    register(stdio_task(stdio_fixtures))
