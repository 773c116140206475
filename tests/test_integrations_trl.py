"""Our tasks and rewards inside TRL's GRPOTrainer: the dataset, the reward functions, one real step."""

from __future__ import annotations

import json

import pytest

from grpo_env import hookimpl
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.types import Example, Outcome, Reward, Task

pytest.importorskip("trl")


def always_one(completion, example):  # module level: it runs in forked scoring workers
    return Outcome.partial(1.0)


def broken(completion, example):
    raise RuntimeError("this reward is broken")


def gold_checked(completion, example):
    if example.gold.get("answer") is None:
        return Outcome.not_applicable("no gold answer")
    return Outcome.correct() if completion.strip() == example.gold["answer"] else Outcome.incorrect()


def _examples(split, seed, options):
    for i in range(1000):
        yield Example(id=f"{split}-{i}", prompt=f"say {i % 7}", gold={"answer": str(i % 7)})


class TRLPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Task(name="trl_good", rewards={"trlt.one": 1.0, "trlt.gold": 0.5}, examples=_examples))
        register(Task(name="trl_broken", rewards={"trlt.broken": 1.0}, examples=_examples))

    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="trlt.one", fn=always_one))
        register(Reward(name="trlt.broken", fn=broken))
        register(Reward(name="trlt.gold", fn=gold_checked))


@pytest.fixture
def recipe(tmp_path, register_plugin):
    register_plugin(TRLPlugin(), name="trlt")
    path = tmp_path / "r.toml"
    path.write_text("""
name = "trl"
seed = 3
[[tasks]]
name = "trl_good"
weight = 1
[[tasks]]
name = "trl_broken"
weight = 1
[scoring]
workers = 1
""")
    return path


def test_dataset_rows_follow_the_recipe_mix(recipe):
    from grpo_env.integrations.trl import recipe_dataset

    ds = recipe_dataset(recipe, 40)
    assert len(ds) == 40 and set(ds.column_names) == {"prompt", "task", "id", "gold"}
    assert set(ds["task"]) == {"trl_good", "trl_broken"}
    assert ds[0]["prompt"][-1]["role"] == "user" and json.loads(ds[0]["gold"])["answer"].isdigit()
    assert recipe_dataset(recipe, 40)["id"] == ds["id"]  # seeded by the recipe


def test_reward_funcs_called_as_trl_calls_them(recipe):
    """None for what TRL must leave out (an error anywhere in the completion, a not_applicable
    component), weighted scores otherwise; one scoring pass shared by the functions."""
    from grpo_env.integrations.trl import TRLRewards

    rows = {"task": ["trl_good", "trl_good", "trl_good", "trl_broken"], "id": ["a", "b", "c", "d"],
            "gold": [json.dumps({"answer": "3"}), json.dumps({"answer": "3"}), json.dumps({}),
                     json.dumps({"answer": "1"})]}
    completions = [[{"role": "assistant", "content": "3"}], [{"role": "assistant", "content": "4"}],
                   [{"role": "assistant", "content": "3"}], [{"role": "assistant", "content": "1"}]]
    logged = []
    with TRLRewards(recipe) as rewards:
        assert [f.__name__ for f in rewards.funcs] == ["trlt.one", "trlt.gold", "trlt.broken"]
        out = {f.__name__: f(prompts=[[]] * 4, completions=completions, completion_ids=[[1]] * 4,
                             log_metric=lambda k, v: logged.append((k, v)), trainer_state=None, **rows)
               for f in rewards.funcs}
        assert out["trlt.one"] == [1.0, 1.0, 1.0, None]
        assert out["trlt.gold"] == [0.5, 0.0, None, None]  # weighted; not_applicable is None, never 0
        assert out["trlt.broken"] == [None] * 4  # the broken task's completion: None from every function
        assert rewards.counts == {"partial": 3, "error": 1}  # scored once, not once per function
        assert dict(logged) == {"grpo_env/status/error": 1.0, "grpo_env/status/partial": 3.0}
        # a prefilled assistant turn is judged whole, prefill then completion (as grpo-env train does)
        prefilled = [[{"role": "user", "content": "say 3"}, {"role": "assistant", "content": "3"}]]
        one = {f.__name__: f(prompts=prefilled, completions=[[{"role": "assistant", "content": ""}]],
                             task=["trl_good"], id=["e"], gold=[json.dumps({"answer": "3"})]) for f in rewards.funcs}
        assert one["trlt.gold"] == [0.5]
        with pytest.raises(ValueError, match="not in this recipe"):
            rewards.funcs[0](completions=["x"], task=["nope"], id=["x"], gold=["{}"])


def test_an_environment_in_the_recipe_is_refused_with_the_reason(recipe, tmp_path):
    """An environment is played as episodes, which TRL's trainer does not play: its rows got None
    from every function, with no reason. Both entry points refuse the recipe, naming it and why."""
    from grpo_env.integrations.trl import EnvironmentRefused, TRLRewards, recipe_dataset

    mixed = tmp_path / "mixed.toml"
    mixed.write_text(recipe.read_text() + '\n[[tasks]]\nname = "games.guess"\nweight = 1\n')
    for build in (lambda: recipe_dataset(mixed, 8), lambda: TRLRewards(mixed)):
        with pytest.raises(EnvironmentRefused) as refused:
            build()
        why = str(refused.value)
        assert "'games.guess' is an environment" in why and "played as episodes" in why, why
        assert "TRL bridge plays no episodes" in why and "grpo-env train" in why, why
    assert isinstance(refused.value, ValueError)
    assert len(recipe_dataset(recipe, 4)) == 4  # the same recipe without it is served as before


@pytest.mark.slow
def test_one_grpo_trainer_step_on_a_tiny_model(recipe, tmp_path):
    """A real GRPOTrainer step: the broken task's completions are excluded (TRL's mean reward is
    exactly the good task's), the status counts reach TRL's logs."""
    from trl import GRPOConfig, GRPOTrainer

    from grpo_env.integrations.trl import TRLRewards, recipe_dataset

    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=8, num_generations=2,
                      max_completion_length=4, learning_rate=1e-3, beta=0.0, logging_steps=1, report_to="none",
                      save_strategy="no", use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0,
                      shuffle_dataset=False)
    data = recipe_dataset(recipe, 16)
    assert set(data["task"][:4]) == {"trl_good", "trl_broken"}  # the step's 4 prompts hold both tasks
    with TRLRewards(recipe) as rewards:
        trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=rewards.funcs,
                              train_dataset=data, args=args)
        trainer.train()
        counts = dict(rewards.counts)
    assert trainer.state.global_step == 1
    log = next(h for h in trainer.state.log_history if "reward" in h)
    assert counts.get("error", 0) > 0 and counts.get("partial", 0) > 0, counts
    assert log["grpo_env/status/error"] == counts["error"]
    good_scores = log["rewards/trlt.one/mean"] + log["rewards/trlt.gold/mean"] * 1.0
    assert log["reward"] == pytest.approx(good_scores, abs=1e-6)  # errors left out, not averaged in as 0
    assert log["reward"] == 1.0 and log["rewards/trlt.broken/mean"] is None  # not the 0.5 an average with 0s would give
