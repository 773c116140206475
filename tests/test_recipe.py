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
    from grpo_env.cli.recipe_doc import DOC, render

    assert DOC.read_text() == render(), "docs/recipes.md is stale: run `python -m grpo_env.cli.recipe_doc --write`"


class Undocumented(BaseModel):
    documented: int = 0  # a key with its meaning
    bare: int = 0


def test_a_key_without_a_meaning_cannot_be_documented():
    from grpo_env.cli.recipe_doc import field_notes

    with pytest.raises(ValueError, match=r"Undocumented\.bare has no description or comment"):
        field_notes(Undocumented)


def test_reference_names_every_key_with_type_and_default():
    from grpo_env.cli.recipe_doc import DOC

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
    from grpo_env.cli.train import mix_entries

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


# --- hostile recipes and overrides (issue 18): a clear error naming the key, quickly, never a traceback

def cli(*args, timeout=120):
    import subprocess
    import sys
    import time

    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - start


ARITH = '[[tasks]]\nname = "math_arith"\n'
NO_MODEL = "--model.name=/nonexistent/model"  # had a model started loading, the error would name this path


def refused(r, *needles):
    """Exit 2 with an `error:` line holding every needle, and no traceback."""
    assert r.returncode == 2, r.stdout + r.stderr
    assert "error: " in r.stderr and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)
    assert "nonexistent" not in r.stderr, r.stderr


@pytest.mark.parametrize(
    "text, suffix, needle",
    [
        (ARITH + "[train]\nlr = nan\n", ".toml", "train.lr: Input should be a finite number"),
        (ARITH + "weight = inf\n", ".toml", "tasks.0.weight: Input should be a finite number"),
        (ARITH + 'rewards = { "math.answer" = -inf }\n', ".toml",
         "tasks.0.rewards.math.answer: Input should be a finite number"),
        (ARITH + "[train]\nadam_betas = [0.9, nan]\n", ".toml", "train.adam_betas.1: Input should be a finite number"),
        (ARITH + "[scoring]\ngrace = inf\n", ".toml", "scoring.grace: Input should be a finite number"),
        (ARITH + "[model]\nlora_alpha = inf\n", ".toml", "model.lora_alpha: Input should be a finite number"),
        (ARITH + "options = { float_rel_tol = inf }\n", ".toml", "tasks.0.options: Value error, float_rel_tol = inf"),
        (ARITH + "options = { a = [1, { b = -nan }] }\n", ".toml", "a.1.b = nan: not a finite number"),
        ("tasks: [{name: math_arith}]\ntrain: {lr: .nan}\n", ".yaml", "train.lr: Input should be a finite number"),
        ("tasks: [{name: math_arith, weight: .inf}]\n", ".yaml", "tasks.0.weight: Input should be a finite number"),
    ],
)
def test_non_finite_numbers_are_refused_everywhere(tmp_path, text, suffix, needle):
    """NaN compares false with every bound, so only a field with one refused it (`lr`, `gt=0`); `inf`
    passed every `gt`/`ge`. Every recipe model refuses non-finite floats (`allow_inf_nan=False`),
    and task options too (an infinite `float_rel_tol` would make every float answer of code.tests
    "close")."""
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(write(tmp_path, text, suffix))


@pytest.mark.parametrize("override, needle", [
    ("--train.lr=nan", "train.lr: Input should be a finite number"),
    ("--train.lr=NaN", "train.lr: Input should be a finite number"),
    ("--train.lr=Infinity", "train.lr: Input should be a finite number"),
    ("--train.lr=1e999", "train.lr: Input should be a finite number"),
    ("--tasks.0.weight=-Infinity", "tasks.0.weight: Input should be a finite number"),
    ("--tasks.0.options.timeout=NaN", "tasks.0.options: Value error, timeout = nan"),
])
def test_non_finite_overrides_are_refused(tmp_path, override, needle):
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(write(tmp_path, ARITH), [override])


@pytest.mark.slow
def test_non_finite_numbers_through_grpo_env_train_name_every_key_before_a_model_loads(tmp_path):
    p = write(tmp_path, ARITH + 'weight = inf\nrewards = { "math.answer" = nan }\n[train]\nlr = nan\n')
    r, _ = cli("train", str(p), NO_MODEL, f"--train.output_dir={tmp_path / 'run'}")
    refused(r, "invalid recipe", "tasks.0.weight: Input should be a finite number",
            "tasks.0.rewards.math.answer: Input should be a finite number", "train.lr: Input should be a finite number")
    p = write(tmp_path, ARITH)
    r, _ = cli("train", str(p), "--train.lr=nan", "--train.adam_betas=[0.9, Infinity]", NO_MODEL,
               f"--train.output_dir={tmp_path / 'run'}")
    refused(r, "train.lr: Input should be a finite number", "train.adam_betas.1: Input should be a finite number")
    assert not (tmp_path / "run").exists()


DEEP = "[" * 10_000 + "]" * 10_000
DIGITS = "9" * 5000


@pytest.mark.parametrize("override, needle", [
    (f"--train.lr={DEEP}", "override train.lr: value nested too deeply"),
    (f"--tasks.0.options.x={DEEP}", "override tasks.0.options.x: value nested too deeply"),
    (f"--tasks.0.options.x={'[' * 40 + ']' * 40}", "tasks.0.options: Value error, x.0.0.0"),  # json parses 40
    (f"--train.steps={DIGITS}", "override train.steps: a number has more than 4300 digits"),
    (f"--train.lr=-{DIGITS}", "override train.lr: a number has more than 4300 digits"),
])
def test_deep_or_huge_override_values_are_refused_with_their_key(tmp_path, override, needle):
    import time

    start = time.monotonic()
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(write(tmp_path, ARITH), [override])
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("text, suffix, needle", [
    (ARITH + f"[train]\nlr = {DEEP}\n", ".toml", "refused: lists or tables nested too deeply"),
    (ARITH + f"[train]\nsteps = {DIGITS}\n", ".toml", "refused: a number has more than 4300 digits"),
    (f"tasks: [{{name: math_arith}}]\ntrain: {{lr: {DEEP * 10}}}\n", ".yaml", "nested more than 32 levels deep"),
    ("tasks:\n  - name: math_arith\n    options:\n      x:\n        " + "- " * 100_000 + "1\n", ".yaml",
     "nested more than 32 levels deep"),  # block style: no brackets
    (f"tasks: [{{name: math_arith}}]\ntrain: {{steps: {DIGITS}}}\n", ".yaml", "a number has more than 4300 digits"),
])
def test_deep_or_huge_values_in_recipe_files_are_refused_fast(tmp_path, text, suffix, needle):
    """PyYAML's scanner is quadratic in flow nesting (10,000 `[` took 1.8 s to reach the recursion
    limit, 5000 took 17 s to parse): the loader stops at the 33rd level."""
    import time

    start = time.monotonic()
    with pytest.raises(RecipeError, match=re.escape(needle)):
        load_recipe(write(tmp_path, text, suffix))
    assert time.monotonic() - start < 2


@pytest.mark.slow
def test_deep_and_5000_digit_overrides_through_grpo_env_train(tmp_path):
    p = write(tmp_path, ARITH)
    r, _ = cli("train", str(p), f"--train.lr={DEEP}", NO_MODEL)
    refused(r, "override train.lr: value nested too deeply")
    r, _ = cli("train", str(p), f"--train.steps={DIGITS}", NO_MODEL)
    refused(r, "override train.steps: a number has more than 4300 digits")


def alias_bomb(levels: int) -> str:
    """A "billion laughs": each level is a list of ten aliases of the one before (10**levels values)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ntasks:\n  - name: math_arith\n    options: {{x: *a{levels - 1}}}\n"


ALIAS_REFUSED = "refused: it holds more than 10000 values once its aliases (*name) are expanded"


@pytest.mark.parametrize("levels", [4, 9, 30])
def test_yaml_alias_bomb_is_refused_in_milliseconds(tmp_path, levels):
    """Before: 7 levels (424 bytes) took 7 s to validate, ten times more per level (9: ~700 s).
    The expanded size is counted on the composed graph, each node once, before anything walks it."""
    import time

    p = write(tmp_path, alias_bomb(levels), ".yaml")
    start = time.monotonic()
    with pytest.raises(RecipeError, match=re.escape(ALIAS_REFUSED)):
        load_recipe(p)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("text", ["tasks: &t [{name: math_arith, options: {x: *t}}]\n",
                                  "tasks:\n  - &e {name: math_arith, options: {self: *e}}\n"])
def test_yaml_alias_to_its_own_ancestor_is_refused(tmp_path, text):
    with pytest.raises(RecipeError, match="refers to a node that contains it"):
        load_recipe(write(tmp_path, text, ".yaml"))


def test_yaml_recipe_with_ordinary_anchors_and_merges_still_loads(tmp_path):
    text = ("tasks:\n  - {name: math_arith, weight: 2.0, options: &opts {max_value: 20, ops: [add, sub]}}\n"
            "  - {name: math_gsm, options: *opts}\n"
            "train: &train {lr: 1.0e-5, steps: 3}\n"
            "scoring: {workers: 1}\n")
    r = load_recipe(write(tmp_path, text, ".yaml"))
    assert r.tasks[0].options == r.tasks[1].options == {"max_value": 20, "ops": ["add", "sub"]}
    assert (r.tasks[0].weight, r.train.lr, r.train.steps, r.scoring.workers) == (2.0, 1e-5, 3, 1)
    # a merge key: the first task's keys, one changed (anchors live inside keys a recipe has)
    text = "tasks:\n  - &first {name: math_arith, weight: 3.0}\n  - {<<: *first, prefill: x}\n"
    r = load_recipe(write(tmp_path, text, ".yaml"))
    assert [(t.name, t.weight, t.prefill) for t in r.tasks] == [("math_arith", 3.0, ""), ("math_arith", 3.0, "x")]


@pytest.mark.slow
def test_yaml_alias_bomb_through_grpo_env_train_is_refused_fast(tmp_path):
    """Through the command line: the 9-level bomb costs no more than 2 s over an ordinary refused
    recipe (the same interpreter start and imports), and says why."""
    baseline, base_s = cli("train", str(write(tmp_path, ARITH + "weight = 0\n")), NO_MODEL)
    refused(baseline, "tasks.0.weight: Input should be greater than 0")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb(9))
    assert len(bomb.read_bytes()) < 600
    r, bomb_s = cli("train", str(bomb), NO_MODEL)
    refused(r, ALIAS_REFUSED)
    assert bomb_s < base_s + 2, (bomb_s, base_s)
