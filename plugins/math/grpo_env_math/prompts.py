"""Chat prompts for math problems, in the answer format a recipe asks for."""

from __future__ import annotations

from typing import Literal

from grpo_env.types import Message

AnswerFormat = Literal["boxed", "answer_tag"]

_INSTRUCTIONS: dict[str, str] = {
    "boxed": "Solve the problem. End your reply with the final answer in \\boxed{}.",
    # matches the format plugin's rewards: <think>...</think><answer>...</answer>
    "answer_tag": (
        "Solve the problem. Reason inside <think>...</think>, then give the final answer "
        "inside <answer>...</answer> as \\boxed{}."
    ),
}


def math_prompt(question: str, answer_format: AnswerFormat = "boxed") -> list[Message]:
    """One user message: the problem, then how to state the final answer."""
    return [Message(role="user", content=f"{question.strip()}\n\n{_INSTRUCTIONS[answer_format]}")]
