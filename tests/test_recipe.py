"""Recipes: strict validation, keys named in errors, overrides through the same validation."""

import re

import pytest
from pydantic import BaseModel

from grpo_env.recipe import RecipeError, load_recipe

BASE = """
name = "demo"
seed = 3
[[tasks]]
name = "alpha"
weight = 2.0
rewards = { "alpha.exact" = 1.0 }
[[tasks]]
name = "beta"
"""


def write(tmp_path, text, suffix=".toml"):
    p = tmp_path / f"r{suffix}"
    p.write_text(text)
    return p


def test_loads_toml_and_yaml_identically(tmp_path):
    t = load_recipe(write(tmp_path, BASE))
    y = load_recipe(write(tmp_path, "name: demo\nseed: 3\ntasks:\n  - {name: alpha, weight: 2.0, rewards: {alpha.exact: 1.0}}\n  - {name: beta}\n", ".yaml"))
    assert t == y
    assert t.tasks[0].rewards == {"alpha.exact": 1.0} and t.tasks[1].weight == 1.0


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("[train]\nstepz = 3\n", "train.stepz: unknown key"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[scoring]\nworkers = 'many'\n", "scoring.workers: Input should be a valid integer"),
        ("[scoring]\nworkers = 0\n", "scoring.workers: Input should be greater than or equal to 1"),
    ],
)
def test_bad_keys_and_types_are_named(tmp_path, extra, needle):
    with pytest.raises(RecipeError, match=needle.replace(".", r"\.")):
        load_recipe(write(tmp_path, BASE + extra))


def test_overrides_apply_and_are_validated(tmp_path):
    p = write(tmp_path, BASE)
    r = load_recipe(p, ["--seed=9", "--tasks.1.weight=0.5", "--scoring.workers=4", "--model.name=/tmp/m"])
    assert (r.seed, r.tasks[1].weight, r.scoring.workers, r.model.name) == (9, 0.5, 4, "/tmp/m")
    with pytest.raises(RecipeError, match=r"scoring\.wrkers: unknown key"):
        load_recipe(p, ["--scoring.wrkers=4"])
    with pytest.raises(RecipeError, match="no list item '7'"):
        load_recipe(p, ["--tasks.7.weight=1"])
    with pytest.raises(RecipeError, match="must look like"):
        load_recipe(p, ["--seed"])


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(write(tmp_path, "name = \n"))
    with pytest.raises(RecipeError, match="tasks: Field required"):
        load_recipe(write(tmp_path, "name = 'x'\n"))


def test_shipped_recipes_are_valid():
    from pathlib import Path

    recipes = sorted(Path(__file__).parent.parent.joinpath("tasks").glob("*.toml"))
    assert recipes, "tasks/ ships at least one recipe"
    for path in recipes:
        load_recipe(path)


DOTTED = BASE.replace('rewards = { "alpha.exact" = 1.0 }', 'rewards = { "alpha.exact" = 1.0, "fmt.tags" = 0.5 }')


@pytest.mark.parametrize("override", ['--tasks.0.rewards."alpha.exact"=2', "--tasks.0.rewards.'alpha.exact'=2"])
def test_quoted_key_part_overrides_a_dotted_reward_name(tmp_path, override):
    r = load_recipe(write(tmp_path, DOTTED), [override])
    assert r.tasks[0].rewards == {"alpha.exact": 2.0, "fmt.tags": 0.5}  # order kept: the first still decides eval


def test_quoted_key_part_adds_a_reward_to_a_task_without_a_table(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ['--tasks.1.rewards."beta.exact"=1', '--tasks.1.rewards."fmt.tags"=0.25'])
    assert r.tasks[1].rewards == {"beta.exact": 1.0, "fmt.tags": 0.25}


def test_unquoted_dotted_reward_name_says_how_to_quote(tmp_path):
    with pytest.raises(RecipeError, match=r'reward names contain dots.*--tasks\.0\.rewards\."alpha\.exact"=2'):
        load_recipe(write(tmp_path, DOTTED), ["--tasks.0.rewards.alpha.exact=2"])


@pytest.mark.parametrize(
    "override, needle",
    [
        ('--tasks.0.rewards."alpha.exact=2', "unterminated \" quote"),
        ('--tasks.0.rewards."alpha"x=2', "expected '.' after the quoted part"),
        ('--tasks.0.rew"ards"=2', "quote a whole part"),
        ("--train..steps=2", "empty part"),
        ('--tasks.0.rewards.""=2', "empty part"),
    ],
)
def test_bad_quoting_is_named(tmp_path, override, needle):
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(write(tmp_path, DOTTED), [override])


def test_equals_sign_inside_quotes_belongs_to_the_key(tmp_path):
    with pytest.raises(RecipeError, match=r'tasks\.0\.rewards\.a=b: Input should be a valid number'):
        load_recipe(write(tmp_path, DOTTED), ['--tasks.0.rewards."a=b"=x'])


def test_prefill_is_a_task_entry_key(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["--tasks.0.prefill=<think>"])
    assert (r.tasks[0].prefill, r.tasks[1].prefill) == ("<think>", "")


def test_recipe_reference_is_current():
    from grpo_env.recipe_doc import DOC, render

    assert DOC.read_text() == render(), "docs/recipes.md is stale: run `python -m grpo_env.recipe_doc --write`"


class Undocumented(BaseModel):
    documented: int = 0  # a key with its meaning
    bare: int = 0


def test_a_key_without_a_meaning_cannot_be_documented():
    from grpo_env.recipe_doc import field_notes

    with pytest.raises(ValueError, match=r"Undocumented\.bare has no description or comment"):
        field_notes(Undocumented)


def test_reference_names_every_key_with_type_and_default():
    from grpo_env.recipe_doc import DOC

    text = DOC.read_text()
    assert '| `tasks.N.prefill` | str | `""` |' in text
    assert "| `train.eval.examples_per_task` | int, >= 1 | `100` |" in text
    assert "| `tasks.N.name` | str | **required** |" in text


@pytest.mark.slow
def test_quoted_reward_name_survives_the_real_command_line(tmp_path):
    import subprocess
    import sys

    p = write(tmp_path, '[[tasks]]\nname = "math_arith"\n')
    r = subprocess.run([sys.executable, "-m", "grpo_env.cli", "eval", str(p), '--tasks.0.rewards."math.nope"=1'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no reward named 'math.nope'" in r.stderr, r.stderr  # parsed as one name


def _pair(completion, example):  # module level: scoring workers are forked
    return None


def test_recipe_rewards_replace_the_tasks_own(register_plugin):
    from grpo_env import Reward, Task, hookimpl
    from grpo_env.recipe import Recipe
    from grpo_env.train import mix_entries

    class Plugin:
        @hookimpl
        def register_tasks(self, register):
            register(Task(name="pair", rewards={"pair.x": 1.0, "pair.y": 1.0}, examples=lambda s, seed, o: iter([])))

        @hookimpl
        def register_rewards(self, register):
            register(Reward(name="pair.x", fn=_pair))
            register(Reward(name="pair.y", fn=_pair))

    reg = register_plugin(Plugin(), name="pair")
    recipe = Recipe.model_validate({"tasks": [{"name": "pair", "rewards": {"pair.y": 2.0}}]})
    assert mix_entries(recipe, reg)[0].reward_weights == {"pair.y": 2.0}  # pair.x is not merged back in
    recipe = Recipe.model_validate({"tasks": [{"name": "pair"}]})
    assert mix_entries(recipe, reg)[0].reward_weights == {"pair.x": 1.0, "pair.y": 1.0}
