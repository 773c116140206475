"""Data-parallel training over 2 CPU processes (gloo): identical weights on every rank, and the same
update as one process on the same data."""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from grpo_env.engine.config import TrainConfig
from grpo_env.engine.distributed import Dist, init_from_env
from grpo_env.engine.losses import group_advantages
from grpo_env.engine.sampling import generate
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import frozen_logprobs, train, update
from grpo_env.types import Example, Scored, Status

G, N = 4, 4  # group size, groups per step
CFG = dict(group_size=G, prompts_per_step=N, max_new_tokens=6, beta=0.04, lr=1e-2, micro_batch_size=0,
           save_every=0, progress=False, log_samples=1)
PROMPTS = [f"say {i}" for i in range(N)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vowel_share(text: str) -> float:
    return sum(c in "aeiou" for c in text) / max(len(text), 1)


def score_fn(examples, completions):
    return [Scored(total=vowel_share(c), status=Status.PARTIAL, components={}) for c in completions]


class FixedPrompts:
    """The same example stream on every rank."""

    def __init__(self):
        self.pos = 0

    def sample(self, n):
        out = [Example(id=f"e{self.pos + i}", prompt=f"say {(self.pos + i) % 7}", task="t") for i in range(n)]
        self.pos += n
        return out

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, s):
        self.pos = s["pos"]


def one_update(dist: Dist) -> dict[str, torch.Tensor]:
    """One SGD step on a fixed batch (every rank generates the same one from the same seed), with this
    rank's share of the groups; returns the new weights."""
    tok = tiny_tokenizer()
    model, ref = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=0)
    cfg = TrainConfig(**CFG)
    torch.manual_seed(123)
    ro = generate(model, tok, PROMPTS, G, max_new_tokens=cfg.max_new_tokens)
    rewards = torch.tensor([vowel_share(t) for t in ro.texts])
    adv, _ = group_advantages(rewards, G)
    share = dist.share(N)
    rows = list(range(share.start * G, share.stop * G))
    part = ro.select(rows)
    ref_logp = frozen_logprobs(ref, part, cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    _, ok = update(model, opt, sched, part, adv[rows], part.completion_mask.float(), ref_logp, None, cfg, dist)
    assert ok
    return {k: v.clone() for k, v in model.state_dict().items()}


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = init_from_env(torch.device("cpu"))
    try:
        torch.save(one_update(dist), f"{out}/update_{rank}.pt")
        # the real loop: 2 steps, each rank generating its share of the groups
        tok = tiny_tokenizer()
        model, ref = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=0)
        torch.manual_seed(rank)  # different sampling streams: the weights must still agree
        run = train(model, tok, FixedPrompts(), score_fn, TrainConfig(steps=2, **CFG), f"{out}/run", ref_model=ref,
                    dist=dist)
        torch.save(model.state_dict(), f"{out}/train_{rank}.pt")
        with open(f"{out}/history_{rank}.json", "w") as f:
            json.dump(run.history, f)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_hold_identical_weights_and_match_one_process(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=worker, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]

    # the update: both ranks equal, and equal to one process on the whole batch
    a, b = torch.load(tmp_path / "update_0.pt"), torch.load(tmp_path / "update_1.pt")
    single = one_update(Dist())
    start = tiny_model(len(tiny_tokenizer()), seed=0).state_dict()
    moved = max((single[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-4  # the step did something, so the comparison below can fail
    for k in single:
        assert torch.equal(a[k], b[k]), k
        torch.testing.assert_close(a[k], single[k], rtol=1e-4, atol=1e-6)

    # the training loop: identical weights on both ranks after each rank sampled its own groups
    a, b = torch.load(tmp_path / "train_0.pt"), torch.load(tmp_path / "train_1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = [json.loads((tmp_path / f"history_{r}.json").read_text()) for r in range(2)]
    assert [h["sequences"] for h in hist[0]] == [N * G, N * G]  # metrics cover both ranks
    assert [h["reward_mean"] for h in hist[0]] == [h["reward_mean"] for h in hist[1]]
    # only rank 0 wrote the logs: one record per step
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2]
    rollouts = [json.loads(ln) for ln in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert [len(r["completions"]) for r in rollouts] == [N * G, N * G]


def test_shares_cover_every_group_once():
    for world in (1, 2, 3, 5):
        for n in (0, 1, 4, 7):
            rows = [i for r in range(world) for i in range(n)[Dist(r, world).share(n)]]
            assert rows == list(range(n))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_accelerate_launch_runs_the_cli_unchanged(tmp_path):
    from grpo_env.engine.tiny import write_tiny

    model = write_tiny(tmp_path / "tiny")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "dist"
seed = 1
[model]
name = "{model}"
threads = 1
[[tasks]]
name = "math_arith"
options = {{ difficulty = 1 }}
rewards = {{ "math.answer" = 1.0 }}
[scoring]
workers = 1
[train]
steps = 2
group_size = 4
prompts_per_step = 4
max_new_tokens = 8
beta = 0.04
progress = false
output_dir = "{tmp_path / 'run'}"
""")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1", "--cpu",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "grpo_env.cli", "train", str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 2 steps") == 1  # only rank 0 reports
    records = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["sequences"] == 16 for r in records)
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_sharded_launches_are_refused_with_a_clear_error(monkeypatch):
    from grpo_env.engine.distributed import DistributedError, check_launch_mode

    check_launch_mode()  # a plain launch passes
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(DistributedError, match="FSDP launches are not supported"):
        init_from_env(torch.device("cpu"))
