"""Data-parallel and FSDP training over 2 CPU processes (gloo): identical weights on every rank, and
the same update as one process on the same data. The real CLI also runs here under a DeepSpeed
(ZeRO-1) accelerate config; tests/test_deepspeed.py covers DeepSpeed itself."""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from grpo_env.engine import checkpoint, sharding
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.distributed import Dist
from grpo_env.engine.losses import group_advantages
from grpo_env.engine.parallel import init_from_env
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


def accelerate_launch(how: list[str], target: list[str], cwd, timeout: int = 180) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``target`` (a script and its arguments, or ``-m module ...``) with the launch
    flags ``how``, on one machine, no mixed precision, no dynamo; this interpreter's import path."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *how, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *target]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


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


def one_update(dist: Dist, fsdp: sharding.FsdpSettings | None = None, zero_settings=None, skip_first: bool = False,
               metrics: dict | None = None, **overrides) -> dict[str, torch.Tensor]:
    """One SGD step on a fixed batch (every rank generates the same one from the same seed), with this
    rank's share of the groups; returns the new weights (whole, also when ``fsdp`` shards the model).
    With ``zero_settings`` (``zero.ZeroSettings``) DeepSpeed's engine takes the step. With ``skip_first``
    an update whose loss is non-finite on the last rank only comes first: it must leave no trace on any
    rank. ``metrics`` receives the step's metrics."""
    tok = tiny_tokenizer()
    model, ref = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=0)
    cfg = TrainConfig(**{**CFG, **overrides})
    n = cfg.prompts_per_step
    torch.manual_seed(123)
    ro = generate(model, tok, [f"say {i}" for i in range(n)], G, max_new_tokens=cfg.max_new_tokens)
    rewards = torch.tensor([vowel_share(t) for t in ro.texts])
    adv, _ = group_advantages(rewards, G)
    share = dist.share(n)
    rows = list(range(share.start * G, share.stop * G))
    part = ro.select(rows)
    ref_logp = frozen_logprobs(ref, part, cfg)
    if fsdp is not None:
        sharding.shard_model(model, fsdp)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    if zero_settings is not None:
        from grpo_env.engine import zero

        zero.initialize(zero.prepare(model, zero_settings, cfg), opt, sched, cfg)
    mask = part.completion_mask.float()
    if skip_first:  # skipped on every rank: no weight change, no schedule step, no gradient left behind
        before = {k: v.clone() for k, v in model.state_dict().items()}
        bad = adv[rows] * (float("nan") if dist.rank == dist.world - 1 else 1.0)
        _, ok = update(model, opt, sched, part, bad, mask, ref_logp, None, cfg, dist)
        assert not ok and sched.last_epoch == 0
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    m, ok = update(model, opt, sched, part, adv[rows], mask, ref_logp, None, cfg, dist)
    assert ok and sched.last_epoch == 1
    if metrics is not None:
        metrics.update(m)
    if fsdp is not None:
        return sharding.full_state(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = init_from_env(torch.device("cpu"))
    try:
        torch.save(one_update(dist, max_grad_norm=1e3), f"{out}/update_{rank}.pt")
        # the real loop: 2 steps, each rank generating its share of the groups
        tok = tiny_tokenizer()
        model, ref = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=0)
        torch.manual_seed(rank)  # different sampling streams: the weights must still agree
        run = train(model, tok, FixedPrompts(), score_fn, TrainConfig(steps=2, **CFG), f"{out}/run", ref_model=ref,
                    dist=dist)
        torch.save(model.state_dict(), f"{out}/train_{rank}.pt")
        with open(f"{out}/history_{rank}.json", "w") as f:
            json.dump(run.history, f)
        # exact resume: 3 steps straight, against 2 steps then a resume to 3 (each rank its own sampling stream)
        for name, parts in (("straight", (3,)), ("resumed", (2, 3))):
            for i, steps in enumerate(parts):
                model = tiny_model(len(tok), seed=i)  # (seeds torch) the resume's weights come from the checkpoint
                torch.manual_seed(7 if i == 0 else 999)  # one seed on every rank, as a launcher gives; a resume
                train(model, tok, FixedPrompts(), score_fn,  # must restore each rank's own stream instead
                      TrainConfig(steps=steps, **dict(CFG, save_every=1)), f"{out}/{name}", ref_model=ref, dist=dist,
                      resume=i > 0)
            torch.save(model.state_dict(), f"{out}/{name}_{rank}.pt")
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
    single = one_update(Dist(), max_grad_norm=1e3)  # no clipping: it would hide a gradient-scale error
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

    # a resumed 2-process run is the uninterrupted one: every rank's completions and the final weights
    def rollouts_of(name):
        return [json.loads(ln) for ln in (tmp_path / name / "rollouts.jsonl").read_text().splitlines()]

    straight, resumed = rollouts_of("straight"), rollouts_of("resumed")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert straight[2]["completions"] == resumed[2]["completions"]  # rank 1's half too
    # the ranks sampled from different streams although every process was given the same seed: the
    # tiny model barely reads its prompt, so shared streams would give (nearly) the same completions
    halves = [straight[s]["completions"][i * N * G // 2 : (i + 1) * N * G // 2] for s in range(3) for i in range(2)]
    assert sum(a == b for a, b in zip(halves[0::2], halves[1::2])) == 0
    assert sum(x == y for a, b in zip(halves[0::2], halves[1::2]) for x, y in zip(a, b)) < N * G // 4
    for r in range(2):
        a, b = torch.load(tmp_path / f"straight_{r}.pt"), torch.load(tmp_path / f"resumed_{r}.pt")
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_shares_cover_every_group_once():
    for world in (1, 2, 3, 5):
        for n in (0, 1, 4, 7):
            rows = [i for r in range(world) for i in range(n)[Dist(r, world).share(n)]]
            assert rows == list(range(n))


FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_machines: 1
num_processes: 2
mixed_precision: 'no'
fsdp_config:
  fsdp_version: 1
  fsdp_sharding_strategy: SHARD_GRAD_OP
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
"""

DEEPSPEED_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
num_machines: 1
num_processes: 2
mixed_precision: 'no'
deepspeed_config:
  deepspeed_config_file: ds.json
  zero3_init_flag: false
"""
DS_JSON = {  # ZeRO stage 1; the clip equals the recipe's; train_batch_size is bookkeeping (a note)
    "zero_optimization": {"stage": 1, "reduce_bucket_size": 5e7, "offload_optimizer": {"device": "none"}},
    "gradient_clipping": 1.0, "train_batch_size": 16, "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": 1, "bf16": {"enabled": False},
}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
@pytest.mark.parametrize("launch", ["ddp", "fsdp", pytest.param("deepspeed", marks=pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed"))])
def test_accelerate_launch_runs_the_cli_unchanged(tmp_path, launch):
    """The CLI under `accelerate launch`: plain data parallelism, FSDP from an accelerate config file, and
    DeepSpeed ZeRO-1 from an accelerate config file naming a DeepSpeed JSON. The mixture holds an
    environment: episodes of different lengths on the ranks, each with its own episode processes."""
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
[[tasks]]
name = "games.guess"
options = {{ high = 8, max_turns = 3 }}
[scoring]
workers = 1
[train]
steps = 3
group_size = 4
prompts_per_step = 4
max_new_tokens = 16  # the tiny model ends about one turn in four within 16 tokens: multi-turn episodes
max_episode_tokens = 80
beta = 0.04
progress = false
output_dir = "{tmp_path / 'run'}"
""")
    if launch == "fsdp":
        (tmp_path / "fsdp.yaml").write_text(FSDP_CONFIG)
        how = ["--config_file", str(tmp_path / "fsdp.yaml"), "--main_process_port", str(_free_port())]
    elif launch == "deepspeed":
        (tmp_path / "ds.yaml").write_text(DEEPSPEED_CONFIG)
        (tmp_path / "ds.json").write_text(json.dumps(DS_JSON))
        how = ["--config_file", str(tmp_path / "ds.yaml"), "--main_process_port", str(_free_port())]
    else:
        how = ["--num_processes", "2", "--cpu"]
    proc = accelerate_launch(how, ["-m", "grpo_env.cli", "train", str(recipe)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 3 steps") == 1  # only rank 0 reports
    assert ("fsdp: rank 0 of 2 holds" in proc.stderr) == (launch == "fsdp")
    for r in range(2):
        assert (f"deepspeed: zero stage 1, rank {r} of 2 holds" in proc.stderr) == (launch == "deepspeed")
    assert ("deepspeed: note: no effect here: train_batch_size" in proc.stderr) == (launch == "deepspeed")
    records = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["sequences"] == 16 for r in records)
    # every episode of both ranks is in the metrics, multi-turn ones among them
    tasks = [json.loads(ln)["tasks"] for ln in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    episodes = [r.get("episodes_by_env", {}).get("games.guess", {"episodes": 0, "turns": 0}) for r in records]
    assert [e["episodes"] for e in episodes] == [4 * t.count("games.guess") for t in tasks]
    assert sum(e["episodes"] for e in episodes) > 0 and max(e["turns"] for e in episodes) > 1
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_launch_modes_pass_the_launch_check_and_bad_deepspeed_settings_do_not(monkeypatch):
    from grpo_env.engine.distributed import DistributedError
    from grpo_env.engine.parallel import check_launch_mode

    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "ACCELERATE_DEEPSPEED_CONFIG_FILE",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(var, raising=False)
    check_launch_mode()  # a plain launch passes
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    check_launch_mode()  # so does an FSDP one
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    check_launch_mode()  # and a DeepSpeed ZeRO-2 one (tests/test_deepspeed.py runs it)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")  # parameter partitioning: FSDP's job here
    with pytest.raises(DistributedError, match="ZeRO stage 3 .*not supported: to shard the parameters use FSDP"):
        init_from_env(torch.device("cpu"))


def test_fsdp_settings_follow_accelerate(monkeypatch):
    from grpo_env.engine.distributed import DistributedError

    for var in ("FSDP_VERSION", "FSDP_SHARDING_STRATEGY", "FSDP_RESHARD_AFTER_FORWARD", "FSDP_OFFLOAD_PARAMS",
                "FSDP_ACTIVATION_CHECKPOINTING", "FSDP_TRANSFORMER_CLS_TO_WRAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert sharding.requested() is None  # not an FSDP launch
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharding.requested() == sharding.FsdpSettings(reshard_after_forward=True)  # version 1, FULL_SHARD
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP")
    assert sharding.requested().reshard_after_forward is False
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "3")  # NO_SHARD: plain data parallelism
    assert sharding.requested() is None
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "HYBRID_SHARD")
    with pytest.raises(DistributedError, match="HYBRID_SHARD"):
        sharding.requested()
    monkeypatch.setenv("FSDP_VERSION", "2")  # version 2: reshard_after_forward, not the strategy
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "LlamaDecoderLayer")
    assert sharding.requested() == sharding.FsdpSettings(False, ("LlamaDecoderLayer",))
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    with pytest.raises(DistributedError, match="offload"):
        sharding.requested()


# FSDP: 3 groups over 2 ranks, one group per micro-batch: rank 0 runs 2 passes, rank 1 one (and an idle one);
# no clipping, so the comparison also sees the gradients' scale (summed over ranks, not averaged)
UNEVEN = dict(prompts_per_step=3, micro_batch_size=G, max_grad_norm=1e3)


def fsdp_worker(out: str) -> None:
    """One rank of an ``accelerate launch --use_fsdp`` run of this file: a fixed-batch update, then the
    training loop with checkpoints, then a resume from them."""
    from grpo_env.engine.model import save_model

    torch.set_num_threads(1)
    dist = init_from_env(torch.device("cpu"))
    fsdp = sharding.requested()
    assert fsdp is not None and dist.world == 2
    try:
        update_state = one_update(dist, fsdp, **UNEVEN)
        tok = tiny_tokenizer()
        cfg = dict(CFG, save_every=1)
        model, ref = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=0)
        numel = {"full": sharding.local_numel(model)}
        sharding.shard_model(model, fsdp)
        numel["local"] = sharding.local_numel(model)
        torch.manual_seed(dist.rank)
        train(model, tok, FixedPrompts(), score_fn, TrainConfig(steps=2, **cfg), f"{out}/run", ref_model=ref,
              dist=dist, save_model=save_model)
        trained = sharding.full_state(model)
        model = sharding.shard_model(tiny_model(len(tok), seed=1), fsdp)  # other weights: the checkpoint's replace them
        train(model, tok, FixedPrompts(), score_fn, TrainConfig(steps=3, **cfg), f"{out}/run", ref_model=ref,
              dist=dist, save_model=save_model, resume=True)
        if dist.main:
            torch.save({"update": update_state, "trained": trained}, f"{out}/fsdp.pt")
        with open(f"{out}/numel_{dist.rank}.json", "w") as f:
            json.dump(numel, f)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_fsdp_launch_shards_the_policy_and_matches_one_process(tmp_path):
    proc = accelerate_launch(["--use_fsdp", "--fsdp_version", "2", "--num_processes", "2", "--main_process_port",
                              str(_free_port())], [__file__, str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # sharded: each rank held about half of the parameters, together all of them
    numel = [json.loads((tmp_path / f"numel_{r}.json").read_text()) for r in range(2)]
    full = numel[0]["full"]
    assert all(n["full"] == full and n["local"] < 0.6 * full for n in numel)
    assert sum(n["local"] for n in numel) == full

    # the update on uneven shares equals one process on the whole batch
    got = torch.load(tmp_path / "fsdp.pt")
    single = one_update(Dist(), **UNEVEN)
    start = tiny_model(len(tiny_tokenizer()), seed=0).state_dict()
    assert max((single[k] - start[k]).abs().max().item() for k in start) > 1e-4  # the step moved the weights
    assert got["update"].keys() == single.keys()
    for k in single:
        torch.testing.assert_close(got["update"][k], single[k], rtol=1e-4, atol=1e-6)

    # checkpoints hold the whole model: the step-2 one is what the loop trained, and loads as a plain model
    from transformers import AutoModelForCausalLM

    ckpts = tmp_path / "run" / "checkpoints"
    state = torch.load(ckpts / "step-000002" / "state.pt", weights_only=False)
    trained = checkpoint.weights(ckpts / "step-000002", state)  # the saved model's tensors: each stored once
    plain = AutoModelForCausalLM.from_pretrained(ckpts / "step-000002" / "model").state_dict()
    for k, v in trained.items():
        assert torch.equal(v, got["trained"][k]) and torch.equal(plain[k], v), k
    moments = sorted(s["exp_avg"].numel() for s in state["optimizer"]["state"].values())
    assert moments == sorted(v.numel() for v in trained.values())  # the whole AdamW state, not rank 0's shard
    # the resumed run continued from step 2 to 3
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3]


if __name__ == "__main__":  # a rank of test_fsdp_launch_shards_the_policy_and_matches_one_process
    fsdp_worker(sys.argv[1])
