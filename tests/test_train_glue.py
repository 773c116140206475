"""`grpo-env train` / `eval` glue: recipe -> registered tasks -> mix -> scoring service -> engine."""

import json

import pytest

from grpo_env import hookimpl
from grpo_env.engine.tiny import write_tiny
from grpo_env.cli.train import main_eval, main_train
from grpo_env.types import Example, Outcome, Reward, Task


def starts_with_z(completion, example):  # module level: it runs in forked scoring workers
    return Outcome.correct() if completion.startswith("z") else Outcome.incorrect()


def has_vowel(completion, example):
    return Outcome.partial(1.0) if any(c in "aeiou" for c in completion) else Outcome.incorrect()


def _examples(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{split}-{seed}-{i}", prompt=f"say {i % 5}")
        i += 1


class TinyPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Task(name="tiny_z", rewards={"tiny.z": 1.0, "tiny.vowel": 0.5}, examples=_examples))
        register(Task(name="tiny_v", rewards={"tiny.vowel": 1.0}, examples=_examples))

    @hookimpl
    def register_rewards(self, register):
        register(Reward(name="tiny.z", fn=starts_with_z))
        register(Reward(name="tiny.vowel", fn=has_vowel))


@pytest.fixture
def recipe(tmp_path, register_plugin):
    register_plugin(TinyPlugin(), name="tiny")
    model = write_tiny(tmp_path / "tiny-model")
    path = tmp_path / "r.toml"
    path.write_text(f"""
name = "glue"
seed = 1
[model]
name = "{model}"
[[tasks]]
name = "tiny_z"
weight = 1
[[tasks]]
name = "tiny_v"
weight = 1
rewards = {{ "tiny.vowel" = 1.0, "tiny.z" = 0.25 }}
[scoring]
workers = 1
[train]
steps = 3
group_size = 4
prompts_per_step = 2
max_new_tokens = 4
lr = 1e-3
save_every = 2
progress = false
output_dir = "{tmp_path / 'runs' / '{name}'}"
eval = {{ examples_per_task = 6, batch_size = 4, output = "{tmp_path / 'eval.json'}" }}
""")
    return path


@pytest.mark.slow
def test_train_then_eval_a_checkpoint(recipe, tmp_path):
    assert main_train(str(recipe), ["--train.steps=4"], resume=False) == 0
    run = tmp_path / "runs" / "glue"
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    tasks = set().union(*(r["reward_by_task"] for r in recs))
    assert tasks == {"tiny_z", "tiny_v"}
    comps = set().union(*(r["reward_by_component"] for r in recs))
    assert comps == {"tiny.z", "tiny.vowel"}  # each task scored by its own components
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000004"
    assert (run / "checkpoints" / "step-000004" / "model" / "config.json").exists()
    # every run directory ends with its report: plots and a summary naming the plugins used
    assert json.loads((run / "plugins.json").read_text()) == [{"name": "tiny", "distribution": "", "version": ""}]
    report = (run / "report" / "report.md").read_text()
    assert "| tiny |" in report and "steps: 4 (4 logged)" in report
    assert {p.name for p in (run / "report").glob("*.png")} >= {"reward.png", "components.png", "time.png"}

    assert main_eval(str(recipe), str(run), []) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert set(res["results"]) == {"tiny_z", "tiny_v"}
    for r in res["results"].values():
        assert r["n"] == 6 and 0.0 <= r["accuracy"] <= 1.0
    assert res["results"]["tiny_v"]["primary_reward"] == "tiny.vowel"

    # a fresh start over a run's checkpoints is refused (it would mix two runs); --resume is the way on
    assert main_train(str(recipe), ["--train.steps=4"], resume=False) == 2
    # --resume after the end: nothing left to do, the run is left as it was
    assert main_train(str(recipe), ["--train.steps=4"], resume=True) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "override, named",
    [("--train.lrr=1e-5", "train.lrr"), ("--train.steps=many", "train.steps"), ("--model.lora=maybe", "model.lora"),
     ("--train.loss_type=ppo", "train.loss_type"), ("--bogus=1", "bogus")],
)
def test_unknown_or_ill_typed_overrides_are_rejected_by_name(recipe, override, named, capsys):
    assert main_train(str(recipe), [override], resume=False) == 2
    err = capsys.readouterr().err
    assert named in err


def test_unknown_task_in_the_recipe_is_named(recipe, capsys):
    assert main_train(str(recipe), ["--tasks.0.name=tiny_q"], resume=False) == 2
    assert "tiny_q" in capsys.readouterr().err
