"""Run untrusted code safely: a reusable sandbox for any grpo-env plugin.

- :class:`Sandbox` runs one submission at a time in a fresh process tree (forked from a template
  process), under rlimits, a wall deadline after which the whole tree dies, no network, an empty
  environment and a private working directory; statuses come from the supervisor's own evidence.
- :func:`judge_function`, :func:`judge_asserts`, :func:`judge_program` turn a run into an
  :class:`~grpo_env.Outcome`, comparing results in the trusted parent.
- :func:`isolation_report` says which isolation features this machine grants, and :func:`self_test`
  starts a sandbox the way scoring does (``grpo-env doctor``).

See docs/code.md for the design and the threat model.
"""

from grpo_env.sandbox import codec
from grpo_env.sandbox.isolation import Isolation, detect, isolation_report
from grpo_env.sandbox.supervisor import IsolationRefused, Limits, RunResult, Sandbox, SandboxError, default_sandbox
from grpo_env.sandbox.verdict import (Compare, FunctionTest, judge_asserts, judge_function, judge_program, output_matches,
                                     self_test)

__all__ = [
    "codec",
    "Compare",
    "FunctionTest",
    "Isolation",
    "IsolationRefused",
    "Limits",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "default_sandbox",
    "detect",
    "isolation_report",
    "judge_asserts",
    "judge_function",
    "judge_program",
    "output_matches",
    "self_test",
]
