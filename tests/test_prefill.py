"""Assistant prefill: text that starts the assistant's turn is prompt (never trained on), and rewards
judge it followed by the completion."""

import json
from collections import Counter

import pytest

from grpo_env import hookimpl
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.sampling import prefill_of, render_prompt
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer, write_tiny
from grpo_env.engine.trainer import collect_batch
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.recipe import load_recipe
from grpo_env.scoring import ScoringService
from grpo_env.cli.train import main_eval, make_score_fn
from grpo_env.types import Example, Outcome, Reward, Task

PREFILL = "<think>"


def opens_think(completion, example):  # module level: it runs in forked scoring workers
    return Outcome.correct() if completion.startswith(PREFILL) else Outcome.incorrect(got=completion[:20])


def _examples(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"what is {i % 7} + 1?")
        i += 1


TASK = Task(name="think_demo", rewards={"think.opens": 1.0}, examples=_examples)
REWARD = Reward(name="think.opens", fn=opens_think)


def test_render_puts_the_prefill_after_the_opened_turn():
    tok = tiny_tokenizer()
    ex = MixEntry(task=TASK, prefill=PREFILL).prepare(Example(id="a", prompt="hi"))
    assert prefill_of(ex) == PREFILL
    assert render_prompt(ex, tok) == "u:hi\na:" + PREFILL  # chat template: generation prompt, then the prefill
    assert render_prompt(ex, tok, chat_template=False) == "hi\n\n" + PREFILL
    assert render_prompt(ex, tok, system_prompt="be brief") == "s:be brief\nu:hi\na:" + PREFILL
    plain = MixEntry(task=TASK).prepare(Example(id="a", prompt="hi"))
    assert prefill_of(plain) == "" and render_prompt(plain, tok) == "u:hi\na:"


def test_recipe_prefill_replaces_a_tasks_own():
    own = Example(id="a", prompt=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<answer>"}])
    assert prefill_of(MixEntry(task=TASK).prepare(own)) == "<answer>"  # a task may prefill through its prompts
    ex = MixEntry(task=TASK, prefill=PREFILL).prepare(own)
    assert [m.role for m in ex.prompt] == ["user", "assistant"] and prefill_of(ex) == PREFILL


def _batch(prefill: str):
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    entries = [MixEntry(task=TASK, prefill=prefill)]
    cfg = TrainConfig(group_size=2, prompts_per_step=3, max_new_tokens=5, sort_by_length=False)
    with ScoringService({REWARD.name: REWARD}, workers=1) as service:
        batch = collect_batch(model, tok, TaskMixture(entries, seed=0), make_score_fn(service, entries), cfg, Counter())
    return tok, batch


@pytest.mark.slow
def test_prefill_tokens_are_prompt_ids_not_completion():
    tok, batch = _batch(PREFILL)
    ro = batch.rollout
    ids = tok(PREFILL, add_special_tokens=False)["input_ids"]
    k = len(ids)
    P = ro.prompt_len
    assert ro.input_ids[:, P - k : P].tolist() == [ids] * ro.input_ids.shape[0]  # the prefill ends every prompt
    assert ro.attention_mask[:, P - k : P].all()  # and is attended to
    assert ro.completion_mask.shape == (ro.input_ids.shape[0], ro.input_ids.shape[1] - P)  # the loss mask starts after it
    assert not any(t.startswith(PREFILL) for t in ro.texts)  # the model's text does not hold it
    # the reward saw the prefill followed by the completion
    assert [s.components["think.opens"].status.value for s in batch.scored] == ["correct"] * len(batch.scored)


@pytest.mark.slow
def test_without_prefill_the_reward_sees_only_the_completion():
    tok, batch = _batch("")
    assert not any(t.startswith(PREFILL) for t in batch.rollout.texts)
    assert {s.components["think.opens"].status.value for s in batch.scored} == {"incorrect"}


class ThinkPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(TASK)

    @hookimpl
    def register_rewards(self, register):
        register(REWARD)


@pytest.mark.slow
def test_recipe_prefill_reaches_eval(tmp_path, register_plugin):
    register_plugin(ThinkPlugin(), name="think")
    model = write_tiny(tmp_path / "tiny-model")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
[model]
name = "{model}"
[[tasks]]
name = "think_demo"
prefill = "{PREFILL}"
[scoring]
workers = 1
[train]
max_new_tokens = 3
eval = {{ examples_per_task = 4, batch_size = 4, output = "{tmp_path / 'eval.json'}" }}
""")
    assert load_recipe(recipe).tasks[0].prefill == PREFILL
    assert main_eval(str(recipe)) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["results"]["think_demo"]["accuracy"] == 1.0
    assert main_eval(str(recipe), overrides=['--tasks.0.prefill=""']) == 0  # JSON "" : no prefill
    assert json.loads((tmp_path / "eval.json").read_text())["results"]["think_demo"]["accuracy"] == 0.0
