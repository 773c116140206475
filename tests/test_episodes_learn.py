"""A tiny model learns a tool-dependent behaviour through episodes, with the real loop on CPU.

The door opens only for an episode that called the ``g`` tool (a well-formed call, its result
seen) before it answers. A few supervised steps teach the tiny model the two moves, half and half:
answer at once, or call the tool and then answer. GRPO on episodes (the real trainer, the real
episode processes, the loss on both of the model's turns and never on the tool's tokens) must make
the model call the tool, and the reward rise. (Repeating the tool's result back, a copy, takes a
tiny model thousands of steps: too slow for a test.)
"""

from __future__ import annotations

import random

import pytest
import torch

from grpo_env.engine import chat
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.tiny import TOOL_CHARS, tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import train
from grpo_env.environment import Environment, Episode, Step, Tool
from grpo_env.episodes import EpisodeHost
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Message, Outcome

CALL = '<tool_call>{"name":"g"}</tool_call>'


class Door(Episode):
    called = False

    def call_tool(self, call):
        self.called = True
        return self.example.gold["secret"]

    def step(self, turn):
        return Step.end(Outcome.correct() if self.called else Outcome.incorrect())


def _examples(split, seed, options):
    rng = random.Random(f"{split}-{seed}")
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt="guess", gold={"secret": str(rng.randrange(10))})
        i += 1


ENV = Environment(name="door", rewards={"door": 1.0}, examples=_examples, make=Door,
                  tools=[Tool(name="g", description="the digit")], max_turns=2)


def warm_up(model, tok, steps: int, seed: int = 0) -> None:
    """Supervised steps on both moves (the loss on the assistant's tokens only)."""
    rng = random.Random(seed)
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt = enc(chat.render(tok, [{"role": "user", "content": "guess"}], ENV.tool_specs()))
    eos = tok.eos_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = []
        for _ in range(16):
            d = str(rng.randrange(10))
            if rng.random() < 0.5:
                inc = enc(chat.increment(tok, [Message(role="tool", content=d)]))
                parts = [(enc(CALL) + [eos], 1), (inc, 0), (enc(d) + [eos], 1)]
            else:
                parts = [(enc(str(rng.randrange(10))) + [eos], 1)]
            ids = prompt + [t for p, _ in parts for t in p]
            mask = [0] * len(prompt) + [m for p, m in parts for _ in p]
            rows.append((ids, mask))
        L = max(len(i) for i, _ in rows)
        ids = torch.tensor([i + [tok.pad_token_id] * (L - len(i)) for i, _ in rows])
        mask = torch.tensor([m + [0] * (L - len(m)) for _, m in rows], dtype=torch.float)
        logits = model(input_ids=ids).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.mark.slow
def test_grpo_on_episodes_learns_to_call_the_tool(tmp_path):
    torch.manual_seed(0)
    tok = tiny_tokenizer(TOOL_CHARS, tools_template=True)
    model = tiny_model(len(tok), hidden=64)
    warm_up(model, tok, steps=150)
    cfg = TrainConfig(steps=30, group_size=8, prompts_per_step=4, max_new_tokens=40, max_episode_tokens=80,
                      lr=5e-4, progress=False, save_every=0, log_samples=0)
    mix = TaskMixture([MixEntry(ENV)], seed=0)
    with ScoringService({}, workers=1) as service, EpisodeHost({"door": (ENV, ENV.rewards)}, service) as host:
        run = train(model, tok, mix, lambda e, c: [], cfg, tmp_path, env_host=host)
    rewards = [r["reward_mean"] for r in run.history]
    calls = [r["episodes_by_env"]["door"]["tool_calls"] for r in run.history]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.2 and last > 0.6, rewards
    assert sum(calls[-5:]) / 5 > sum(calls[:5]) / 5 + 0.2, calls  # by calling the tool more often
    rec = run.history[-1]
    assert rec["time"]["environment"] > 0
    assert set(rec["episodes_by_env"]["door"]) >= {"turns", "tool_calls", "tool_errors", "tokens", "env_timeouts",
                                                     "env_errors", "ended_by", "episodes"}
