"""Where the model's prompt is visible: `grpo-env tasks ENV` and `grpo-env play ENV` show the system
message the model sees, the tool fallback of chat templates without tools included; without a model
they say that the text shown is the fallback that would be used, with --model the exact prompt."""

from __future__ import annotations

import io
import sys

import pytest

import envs_for_tests as te
from grpo_env.cli import main, seen_messages
from grpo_env.engine import chat
from grpo_env.engine.config import ModelConfig
from grpo_env.engine.model import load_tokenizer
from grpo_env.engine.sampling import render_prompt
from grpo_env.engine.tiny import tiny_tokenizer, write_tiny
from grpo_env.types import Example, Message

ENV = "tenv_secret"  # an environment with tools


@pytest.fixture
def registry(register_plugin):
    return register_plugin(te.Plugin(), name="tenv_seen")


def first_example(registry) -> Example:
    env = registry.task(ENV)
    ex = next(iter(env.examples("train", 0, env.parse_options({}))))
    return ex.model_copy(update={"task": ENV, "tools": env.tool_specs()})


def test_tasks_env_shows_the_fallback_system_message_and_says_so(registry, capsys):
    assert main(["tasks", ENV]) == 0
    text = capsys.readouterr().out
    fallback = chat.fallback_system(registry.task(ENV).tool_specs())
    assert "no model given, so this is the fallback text that would be used" in text, text
    assert "-" * 40 + "\n" + fallback + "\n" + "-" * 40 in text, text  # the whole system message, verbatim


def test_tasks_env_shows_how_the_system_prompt_combines_with_the_tools(registry, capsys):
    assert main(["tasks", ENV, "--system-prompt", "Be brief."]) == 0
    text = capsys.readouterr().out
    fallback = chat.fallback_system(registry.task(ENV).tool_specs())
    assert "-" * 40 + "\nBe brief.\n\n" + fallback + "\n" + "-" * 40 in text, text
    assert "--system-prompt stands for [train] system_prompt" in text


def test_the_messages_shown_are_the_ones_a_template_without_tools_renders():
    """seen_messages goes through the rollout's own rendering: a real template without tools (the
    tiny model's) renders exactly them, with [train] system_prompt or an example's own system message."""
    tok = tiny_tokenizer()
    specs = te.environments()[ENV].tool_specs()
    plain = Example(id="a", prompt="find it", task=ENV, tools=specs)
    own = Example(id="b", prompt=[Message(role="system", content="Mine."), Message(role="user", content="find it")],
                  task=ENV, tools=specs)
    for ex in (plain, own):
        for system_prompt in (None, "Be brief."):
            msgs = seen_messages(ex, specs, system_prompt)
            assert render_prompt(ex, tok, True, system_prompt) == tok.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=True)
            assert msgs[0]["role"] == "system" and msgs[0]["content"].endswith(chat.fallback_system(specs))
    assert seen_messages(own, specs, "Be brief.")[0]["content"].startswith("Mine.\n\n")  # the example's own wins
    assert seen_messages(plain, specs, "Be brief.")[0]["content"].startswith("Be brief.\n\n")


def test_tasks_env_with_a_model_shows_the_exact_prompt(registry, capsys, tmp_path):
    tiny = write_tiny(tmp_path / "tiny")
    assert main(["tasks", ENV, "--model", str(tiny), "--system-prompt", "Be brief."]) == 0
    text = capsys.readouterr().out
    exact = render_prompt(first_example(registry), load_tokenizer(ModelConfig(name=str(tiny))), True, "Be brief.")
    assert "-" * 40 + "\n" + exact + "\n" + "-" * 40 in text, text
    assert "its chat template does not render tools: they are in the system message (the fallback)" in text


def test_play_shows_the_system_message_before_the_first_turn(registry, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("it is 7\n"))
    assert main(["play", ENV, "--system-prompt", "Be brief."]) == 0
    text = capsys.readouterr().out
    fallback = chat.fallback_system(registry.task(ENV).tool_specs())
    assert "system: Be brief.\n\n" + fallback in text, text
    assert "the system message above is the tool fallback" in text
    assert text.index("system: ") < text.index("user: ") < text.index("assistant 1/3>")
