"""A normal run prints what its user needs: no `datasets` progress bars for small local files, no
DeepSpeed accelerator-probe line in a run without DeepSpeed, no deprecation warnings from our calls."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from grpo_env.engine.tiny import write_tiny

NOISE = ("Generating train split", "Generating test split", "examples/s", "Setting accelerator to CPU",
         "DeprecationWarning", "FutureWarning", "PendingDeprecationWarning")


def _cli(args, tmp_path, **env):
    full_env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"), "HF_HUB_OFFLINE": "1", **env}
    full_env.pop("ACCELERATE_USE_DEEPSPEED", None)
    return subprocess.run([sys.executable, "-W", "default", "-m", "grpo_env.cli", *args], capture_output=True,
                          text=True, timeout=300, env=full_env)


@pytest.mark.slow
def test_train_and_eval_print_no_noise(tmp_path):
    """`math` reads the shipped GSM8K-format JSONL and `code` its functions file through `datasets`
    (a fresh cache, so the splits are really generated); the run saves a checkpoint (transformers'
    save_pretrained, which imports DeepSpeed when it is installed); warnings are all shown (-W default)."""
    model = write_tiny(tmp_path / "tiny")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "quiet"
[model]
name = "{model}"
[[tasks]]
name = "math"
[[tasks]]
name = "code"
options = {{ count = 4 }}
[scoring]
workers = 1
[train]
steps = 2
group_size = 2
prompts_per_step = 2
max_new_tokens = 4
save_every = 0
progress = false
output_dir = "{tmp_path / 'runs' / '{name}'}"
eval = {{ examples_per_task = 2, batch_size = 4 }}
""")
    train = _cli(["train", str(recipe)], tmp_path)
    assert train.returncode == 0, train.stdout + train.stderr
    assert (tmp_path / "runs" / "quiet" / "checkpoints" / "latest").exists()
    evaluation = _cli(["eval", str(recipe)], tmp_path)
    assert evaluation.returncode == 0, evaluation.stdout + evaluation.stderr
    for proc in (train, evaluation):
        found = [n for n in NOISE if n in proc.stderr or n in proc.stdout]
        assert not found, (found, proc.stderr)
    assert list((tmp_path / "datasets-cache").iterdir())  # datasets did read the files: the quiet was ours


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
@pytest.mark.parametrize("deepspeed_launch", [False, True])
def test_only_the_probe_line_is_dropped_and_only_without_deepspeed(deepspeed_launch):
    code = ("import logging; from grpo_env.cli.train import quiet_unused_deepspeed; quiet_unused_deepspeed(); "
            "import deepspeed; from deepspeed.accelerator import get_accelerator; get_accelerator(); "
            "logging.getLogger('DeepSpeed').warning('another DeepSpeed warning')")
    env = {k: v for k, v in os.environ.items() if k not in ("ACCELERATE_USE_DEEPSPEED", "DS_ACCELERATOR")}
    if deepspeed_launch:
        env["ACCELERATE_USE_DEEPSPEED"] = "true"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "another DeepSpeed warning" in out  # DeepSpeed's other messages are left alone
    if not _has_cuda():  # on a CPU machine DeepSpeed says it picked the CPU: shown only to a DeepSpeed launch
        assert ("Setting accelerator to CPU" in out) == deepspeed_launch, out


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
