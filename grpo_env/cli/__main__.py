"""`python -m grpo_env.cli`: the `grpo-env` command."""

import sys

from grpo_env.cli import main

sys.exit(main())
