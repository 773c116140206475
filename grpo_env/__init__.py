"""grpo-env: GRPO training of language models on verifiable tasks provided by plugins.

The package in layers, each using only the ones above it:

- the plugin contract and host (this top level): ``types``, ``environment``, ``tools``, ``text``,
  ``hookspecs``, ``plugins``, ``rewards``, ``recipe``, ``mixture``, ``monitors``, ``data``, ``testing``;
- running plugin code safely: ``sandbox/`` (generated code), ``scoring/`` (rewards, local or on a Ray
  cluster), ``episodes/`` (environments' episodes, local or on a Ray cluster);
- the GRPO engine, which knows nothing of plugins: ``engine/`` (it takes a scoring callable and an
  episode host);
- the command line and its glue: ``cli/`` (``grpo-env``; ``cli/train.py`` wires a recipe to the engine),
  and ``integrations/`` (TRL, verl).
"""

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
