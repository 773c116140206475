"""`grpo-env init NAME`: the scaffolded plugin installs, passes `grpo-env check` and its own tests."""

import os
import subprocess
import sys

import pytest

from grpo_env.cli.scaffold import write_plugin

NAME = "scaffold_probe"
DIST = "grpo-env-scaffold-probe"


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "grpo_env.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


def installed(dist: str) -> bool:
    """Asked in a fresh interpreter: this process's metadata cache may predate the install."""
    code = f"from importlib import metadata\ntry: metadata.distribution({dist!r})\nexcept metadata.PackageNotFoundError: raise SystemExit(1)"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_init_writes_every_file(tmp_path):
    root = tmp_path / "plugin"
    root.mkdir()  # an existing empty folder is fine
    assert write_plugin(NAME, root)[0] == root
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files == {"pyproject.toml", "README.md", f"grpo_env_{NAME}/__init__.py", f"grpo_env_{NAME}/task.py",
                     f"grpo_env_{NAME}/reward.py", f"grpo_env_{NAME}/fixtures.py", f"tests/test_{NAME}.py",
                     f"recipes/{NAME}.toml"}
    pyproject = (root / "pyproject.toml").read_text()
    assert f'name = "{DIST}"' in pyproject and f'{NAME} = "grpo_env_{NAME}"' in pyproject


def test_init_never_overwrites(tmp_path):
    root = tmp_path / "taken"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    r = cli("init", NAME, "--dir", str(root))
    assert r.returncode == 2 and "already exists and is not an empty folder" in r.stderr
    assert [p.name for p in root.iterdir()] == ["notes.txt"] and (root / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "name, needle",
    [("Bad-Name", "plugin name 'Bad-Name' is invalid"), ("a.b", "plugin name 'a.b' is invalid"),
     ("abc\n", "plugin name 'abc\\n' is invalid"), ("a\nb", "plugin name 'a\\nb' is invalid"),
     pytest.param("math", "plugin 'math', task 'math' already exist", marks=pytest.mark.slow)],  # loads every plugin
)
def test_init_refuses_bad_or_taken_names(tmp_path, name, needle):
    r = cli("init", name, "--dir", str(tmp_path / "p"))
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "p").exists()


def test_init_refuses_a_name_with_a_trailing_newline_and_writes_nothing(tmp_path):
    """`$` in the old pattern matched before a final newline: `grpo-env init $'abc\\n'` wrote a
    folder, package and entry point whose names end in a newline. Now the whole name must match."""
    r = cli("init", "abc\n", cwd=tmp_path)  # the default folder, ./grpo-env-abc<newline>, is not made
    assert r.returncode == 2, r.stdout + r.stderr
    assert "plugin name 'abc\\n' is invalid" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_scaffolded_plugin_installs_checks_and_passes_its_tests(tmp_path):
    root = tmp_path / DIST
    if installed(DIST):  # left behind by a run that was killed before its clean-up
        pip("uninstall", "-y", DIST)
    r = cli("init", NAME, "--dir", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    # no network: nothing to fetch (grpo-env is installed; setuptools is in the venv)
    r = pip("install", "-q", "--no-deps", "--no-build-isolation", "-e", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        listing = cli("plugins")
        line = next(l for l in listing.stdout.splitlines() if f" {NAME} " in l)
        assert DIST in line and "loaded" in line and f"{NAME}.exact" in line, line
        check = cli("check", NAME)
        assert check.returncode == 0, check.stdout + check.stderr
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                               capture_output=True, text=True, timeout=300)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout  # the entry-point test ran
    finally:
        r = pip("uninstall", "-y", DIST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not installed(DIST)  # the venv is as it was


# ---------------------------------------------------------------------------------------------
# grpo-env init NAME --environment

ENV_NAME = "scaffold_env_probe"
ENV_DIST = "grpo-env-scaffold-env-probe"


def test_init_environment_writes_every_file(tmp_path):
    root = tmp_path / "plugin"
    assert write_plugin(ENV_NAME, root, environment=True)[0] == root
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    pkg = f"grpo_env_{ENV_NAME}"
    assert files == {"pyproject.toml", "README.md", f"{pkg}/__init__.py", f"{pkg}/environment.py",
                     f"{pkg}/fixtures.py", f"tests/test_{ENV_NAME}.py", f"recipes/{ENV_NAME}.toml"}
    fixtures = (root / pkg / "fixtures.py").read_text()
    assert "score=" in fixtures and "observations_contain=" in fixtures
    assert "play_episode" in (root / "tests" / f"test_{ENV_NAME}.py").read_text()
    recipe = (root / "recipes" / f"{ENV_NAME}.toml").read_text()
    assert f'name = "{ENV_NAME}"' in recipe and 'name = "math_arith"' in recipe
    assert "register_environments" in (root / pkg / "__init__.py").read_text()


def test_an_environment_name_in_rewards_is_no_reward_and_says_so():
    """The generated recipe test once failed with "reward 'NAME' of plugin 'NAME' is unavailable: "
    and no reason: an environment's name looked up as a reward matched it as a registered task."""
    from grpo_env.plugins import PluginError, get_registry

    with pytest.raises(PluginError) as e:
        get_registry().reward("games.guess")
    why = str(e.value)
    assert "is unavailable" not in why and "'games.guess' is an environment" in why and "own outcome" in why, why


@pytest.mark.slow
def test_scaffolded_environment_installs_checks_passes_its_tests_and_trains_mixed(tmp_path):
    """`grpo-env init NAME --environment`, pip-installed into a private site directory: its own tests
    pass as generated (the entry-point test too, not skipped), `grpo-env check NAME` passes, and its
    recipe trains two steps mixed with math_arith on a tiny model."""
    import json

    from grpo_env.engine.tiny import write_tiny

    root = tmp_path / ENV_DIST
    r = cli("init", ENV_NAME, "--environment", "--dir", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp_path / "site"
    r = pip("install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}

    def run(*args, cwd=root):
        return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)

    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout  # the entry-point test ran
    check = run(sys.executable, "-m", "grpo_env.cli", "check", ENV_NAME)
    assert check.returncode == 0, check.stdout + check.stderr
    line = next(l for l in check.stdout.splitlines() if f" {ENV_NAME} " in l)
    assert "5 " in line and "ok" in line, line  # its 5 scripted episodes passed
    shown = run(sys.executable, "-m", "grpo_env.cli", "tasks", ENV_NAME)
    assert shown.returncode == 0 and '"name": "spell"' in shown.stdout, shown.stdout + shown.stderr

    tiny = write_tiny(tmp_path / "tiny")
    out = tmp_path / "run"
    train = run(sys.executable, "-m", "grpo_env.cli", "train", f"recipes/{ENV_NAME}.toml", f"--model.name={tiny}",
                "--train.steps=2", "--train.prompts_per_step=4", "--train.group_size=2", "--train.max_new_tokens=8",
                f"--train.output_dir={out}", "--train.progress=false", "--scoring.workers=1")
    assert train.returncode == 0, train.stdout + train.stderr
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "step" in r][-1] == 2
    tasks = {t for r in records for t in r.get("reward_by_task", {})}
    assert tasks == {ENV_NAME, "math_arith"}, tasks  # both halves of the mix were trained on
    assert any(ENV_NAME in r.get("episodes_by_env", {}) for r in records)
