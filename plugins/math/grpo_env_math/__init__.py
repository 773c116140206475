"""grpo-env math plugin: the ``math.answer`` reward (safe parsing, sympy equivalence), math tasks and the
``math_python`` environment (arithmetic with a sandboxed python tool).

Registered through the ``grpo_env`` entry point ``math``; the core never imports this by name.
"""

from __future__ import annotations

from grpo_env import hookimpl
from grpo_env.types import Reward, Status
from grpo_env_math.reward import answer_reward, strict_answer_reward

ANSWER_TIMEOUT = 5.0  # seconds; the scoring service kills a check that runs past it


@hookimpl
def register_rewards(register):
    register(
        Reward(
            name="math.answer",
            fn=answer_reward,
            description="1.0 when the final answer (\\boxed{}, <answer>, ####, 'the answer is', last number) "
            "equals the gold answer (exact, numeric, then bounded symbolic check), else 0.0",
            timeout=ANSWER_TIMEOUT,
            min_score=0.0,
            gold_keys={
                "answer": "the gold answer text, plain or LaTeX (missing, or not parsable: not_applicable)",
                "last_number_fallback": "take the last number when no marked answer is found (default true)",
            },
            statuses=(Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE, Status.REJECTED, Status.NOT_APPLICABLE),
            strict="math.answer_strict",
        )
    )
    register(
        Reward(
            name="math.answer_strict",
            fn=strict_answer_reward,
            description="math.answer with strict extraction: only an answer in \\boxed{} or <answer> counts (no "
            "####, 'the answer is' or last number); the monitor re-verifies a sample of math.answer's rows with it",
            timeout=ANSWER_TIMEOUT,
            min_score=0.0,
            gold_keys={"answer": "the gold answer text, plain or LaTeX (missing, or not parsable: not_applicable)"},
            statuses=(Status.CORRECT, Status.INCORRECT, Status.UNPARSABLE, Status.REJECTED, Status.NOT_APPLICABLE),
        )
    )


@hookimpl
def register_tasks(register):
    from grpo_env_math.catalog import all_tasks

    for task in all_tasks():
        register(task)


@hookimpl
def register_environments(register):
    from grpo_env_math.python_env import python_environment

    register(python_environment())
