"""grpo-env: GRPO training of language models on verifiable tasks provided by plugins."""

from grpo_env.hookspecs import hookimpl
from grpo_env.types import Example, Fixture, Message, Monitor, Outcome, Reward, Scored, Status, Task

__version__ = "0.1.0"

__all__ = [
    "Example",
    "Fixture",
    "Message",
    "Monitor",
    "Outcome",
    "Reward",
    "Scored",
    "Status",
    "Task",
    "hookimpl",
    "__version__",
]
