"""Recipes: strict validation, keys named in errors, overrides through the same validation."""

import pytest

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
