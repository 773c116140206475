"""Exact resume: a run SIGKILLed after a checkpoint and resumed matches an uninterrupted run step for step."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from grpo_env.engine import checkpoint

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from grpo_env.engine.config import TrainConfig
    from grpo_env.engine.model import save_model
    from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
    from grpo_env.engine.trainer import train
    from grpo_env.mixture import MixEntry, TaskMixture
    from grpo_env.types import Example, Outcome, Scored, Task

    out, resume, delay = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
    torch.set_num_threads(1)

    def examples(split, seed, options):  # finite: the mixture cycles it with a new seed per pass
        for i in range(5):
            yield Example(id=f"{seed}-{i}", prompt=f"say {(seed + i) % 10}")

    def score(exs, comps):
        time.sleep(delay)  # so the parent can kill the run mid-way
        outs = [Outcome.partial(sum(ch in "aeiou" for ch in c) / 4) for c in comps]
        return [Scored(total=o.score, status=o.status, components={"vowels": o}) for o in outs]

    tasks = [MixEntry(Task(name=n, rewards={"vowels": 1.0}, examples=examples), weight=w)
             for n, w in (("one", 1.0), ("two", 3.0))]
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    cfg = TrainConfig(steps=12, group_size=4, prompts_per_step=3, max_new_tokens=4, lr=1e-2, save_every=3,
                      progress=False, mu=2, beta=0.05, micro_batch_size=5)
    ref = tiny_model(len(tok)).requires_grad_(False)
    model = tiny_model(len(tok))
    # save_model: checkpoints as the CLI writes them (the weights live in the saved model only)
    train(model, tok, TaskMixture(tasks, seed=7), score, cfg, out, ref_model=ref, resume=resume, save_model=save_model)
    """
)


def _run(script, out, resume, delay):
    return subprocess.Popen([sys.executable, str(script), str(out), "1" if resume else "0", str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _records(path: Path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    full, killed = tmp_path / "full", tmp_path / "killed"

    p = _run(script, full, False, 0.0)
    assert p.wait(timeout=300) == 0, p.stdout.read().decode()[-3000:]

    p = _run(script, killed, False, 0.3)
    deadline = time.time() + 240
    pointer = killed / "checkpoints" / "latest"
    while time.time() < deadline:  # wait for the second checkpoint, then a bit into the next step
        if pointer.exists() and pointer.read_text().strip() >= "step-000006":
            break
        if p.poll() is not None:
            pytest.fail("the run ended before it could be killed: " + p.stdout.read().decode()[-2000:])
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    done = _records(killed / "rollouts.jsonl")
    assert 6 <= len(done) < 12, "killed mid-way, after a checkpoint"

    p = _run(script, killed, True, 0.0)
    assert p.wait(timeout=300) == 0, p.stdout.read().decode()[-3000:]

    a, b = _records(full / "rollouts.jsonl"), _records(killed / "rollouts.jsonl")
    assert [r["step"] for r in b] == list(range(1, 13))
    assert a == b  # same prompts, completions and rewards, step for step
    ma, mb = _records(full / "metrics.jsonl"), _records(killed / "metrics.jsonl")
    assert [r["reward_mean"] for r in ma] == [r["reward_mean"] for r in mb]
    assert [r["lr"] for r in ma] == [r["lr"] for r in mb]
    ca, cb = full / "checkpoints" / "step-000012", killed / "checkpoints" / "step-000012"
    sa = torch.load(ca / "state.pt", weights_only=False)
    assert "weights" not in sa, "each tensor is stored once: the weights are the saved model's"
    wa, wb = checkpoint.weights(ca, sa), checkpoint.weights(cb, torch.load(cb / "state.pt", weights_only=False))
    assert wa and wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len({r["tasks"][0] for r in a} | {t for r in a for t in r["tasks"]}) == 2  # both tasks drawn
