"""DeepSpeed (ZeRO 1/2) launches: the settings mapping and its refusals, and 2 CPU processes (gloo)
under the real `accelerate launch --use_deepspeed` running DeepSpeed's real engine: the same update as
one process on uneven shares, the AdamW state partitioned, and checkpoints in the single-process
format that resume under DeepSpeed and without it. (The real CLI under a DEEPSPEED accelerate config
is a case of test_distributed.py::test_accelerate_launch_runs_the_cli_unchanged.)"""

import importlib.util
import json
import sys

import pytest
import torch
from test_distributed import CFG, UNEVEN, FixedPrompts, _free_port, accelerate_launch, one_update, score_fn

from grpo_env.engine import checkpoint, zero
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.distributed import Dist, DistributedError
from grpo_env.engine.parallel import check_launch_mode, init_from_env
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import make_optimizer, train

needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None or importlib.util.find_spec("accelerate") is None,
    reason="deepspeed or accelerate is not installed")

ENV = ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE", "ACCELERATE_DEEPSPEED_ZERO_STAGE",
       "ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "ACCELERATE_GRADIENT_CLIPPING", "ACCELERATE_MIXED_PRECISION",
       "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE",
       "ACCELERATE_DEEPSPEED_ZERO3_INIT", "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL")


@pytest.fixture
def ds_env(monkeypatch):
    """A clean DeepSpeed launch environment (as `accelerate launch --use_deepspeed` sets it up)."""
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    return monkeypatch


# ---------------------------------------------------------------------------------------------
# settings: what maps, what is refused (no launch)


def test_launch_flags_map_to_zero_settings(ds_env, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    assert zero.requested() is None  # not a DeepSpeed launch
    check_launch_mode()  # a plain launch passes
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    check_launch_mode()  # so does an FSDP one
    monkeypatch.delenv("ACCELERATE_USE_FSDP")

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert zero.requested() == zero.ZeroSettings(stage=2)  # accelerate's default stage
    check_launch_mode()  # and a DeepSpeed one now
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")
    monkeypatch.setenv("ACCELERATE_GRADIENT_CLIPPING", "0.5")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "1")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none")
    assert zero.requested() == zero.ZeroSettings(stage=1, gradient_clipping=0.5)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0")  # stage 0: plain data parallelism
    assert zero.requested() is None


@pytest.mark.parametrize("var, value, match", [
    ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3", r"stage 3 .*use FSDP \(`accelerate launch --use_fsdp"),
    ("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu", r"offload \(offload_optimizer_device = cpu\).*to none"),
    ("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "nvme", r"offload \(offload_param_device = nvme\)"),
    ("ACCELERATE_MIXED_PRECISION", "bf16", r"mixed precision \(--mixed_precision bf16\).*`\[train\] bf16 = true`"),
    ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4", r"gradient_accumulation_steps = 4 .*to 1 .*micro_batch_size"),
])
def test_launch_flags_that_are_refused(ds_env, monkeypatch, var, value, match):
    monkeypatch.setenv(var, value)
    with pytest.raises(DistributedError, match=match):
        init_from_env(torch.device("cpu"))  # refused at start-up, before joining a process group


def _write_ds(tmp_path, monkeypatch, config: dict) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(path))


def test_deepspeed_json_maps_refuses_and_notes(ds_env, monkeypatch, tmp_path):
    _write_ds(tmp_path, monkeypatch, {
        "train_batch_size": 64, "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
        "gradient_clipping": 1.0, "bf16": {"enabled": False}, "wall_clock_breakdown": False,
        "zero_optimization": {"stage": 2, "overlap_comm": True, "reduce_bucket_size": 5e7,
                              "contiguous_gradients": "auto", "stage3_max_live_parameters": 1e9,
                              "offload_optimizer": {"device": "none"}},
    })
    s = zero.requested()
    assert s == zero.ZeroSettings(2, 1.0, {"overlap_comm": True, "reduce_bucket_size": 5e7},
                                  ("zero_optimization.stage3_max_live_parameters", "train_batch_size",
                                   "wall_clock_breakdown"))
    # what deepspeed.initialize gets: the recipe's clip, summed gradients, the caller's accumulation boundary
    ds = zero.ds_config(s, TrainConfig(max_grad_norm=1.0))
    assert ds["gradient_clipping"] == 1.0 and ds["gradient_allreduce_op"] == "sum"
    assert ds["managed_gradient_accumulation"] is False and ds["gradient_accumulation_steps"] == 1
    assert ds["zero_optimization"] == {"stage": 2, "overlap_comm": True, "reduce_bucket_size": 5e7}
    assert ds["zero_allow_untested_optimizer"] is True and "optimizer" not in ds and "bf16" not in ds
    with pytest.raises(DistributedError, match=r"gradient_clipping = 1 conflicts with .*max_grad_norm = 0.5.*"
                                               r"--train.max_grad_norm=1"):
        zero.ds_config(s, TrainConfig(max_grad_norm=0.5))

    _write_ds(tmp_path, monkeypatch, {"zero_optimization": {"stage": 1, "overlap_comm": True}})
    assert zero.requested() == zero.ZeroSettings(1, None, {}, ("zero_optimization.overlap_comm",))  # stage 2 only
    _write_ds(tmp_path, monkeypatch, {"zero_optimization": {"stage": "auto"}})
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")
    assert zero.requested().stage == 1


@pytest.mark.parametrize("config, match", [
    ({"zero_optimization": {"stage": 3}}, r"stage 3 .*use FSDP"),
    ({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}},
     r"`optimizer` section is not supported: .*\[train\] lr, adam_betas and weight_decay.*remove"),
    ({"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR"}}, r"`scheduler` section .*lr_schedule"),
    ({"zero_optimization": {"stage": 2}, "fp16": {"enabled": True}},
     r"\(the `fp16` section of .*ds.json\).*`\[train\] bf16 = true`"),
    ({"zero_optimization": {"stage": 2}, "bf16": {"enabled": "true"}}, r"`bf16` section"),
    ({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}},
     r"offload \(zero_optimization.offload_optimizer.device = cpu\)"),
    ({"zero_optimization": {"stage": 2, "offload_param": {"device": "nvme"}}}, r"offload_param.device = nvme"),
    ({"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 8}, r"gradient_accumulation_steps = 8"),
    ({"zero_optimization": {"stage": "two"}}, r"zero_stage 'two' is not a number"),
])
def test_deepspeed_json_refusals_name_the_key(ds_env, monkeypatch, tmp_path, config, match):
    _write_ds(tmp_path, monkeypatch, config)
    with pytest.raises(DistributedError, match=match):
        check_launch_mode()


@needs_deepspeed
def test_models_deepspeed_cannot_train_are_refused():
    """LoRA and non-float32 weights, before any process group or engine (prepare checks them first)."""
    tok = tiny_tokenizer()
    bf16 = tiny_model(len(tok)).to(torch.bfloat16)
    with pytest.raises(DistributedError, match=r"dtype .*bfloat16.* is not supported under DeepSpeed.*bf16 = true"):
        zero.prepare(bf16, zero.ZeroSettings(), TrainConfig())
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(tiny_model(len(tok)), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(DistributedError, match=r"LoRA \(peft\) models are not supported under DeepSpeed"):
        zero.prepare(lora, zero.ZeroSettings(), TrainConfig())


# ---------------------------------------------------------------------------------------------
# 2 processes under `accelerate launch --use_deepspeed --zero_stage 2`


def _adam_step(state: dict) -> float:
    return float(next(iter(state["optimizer"]["state"].values()))["step"])


def ds_worker(out: str) -> None:
    """One rank of an ``accelerate launch --use_deepspeed`` run of this file: a fixed-batch update on
    uneven shares (after one whose loss is non-finite on rank 1 only: skipped everywhere), the same
    update under ZeRO stage 1, the training loop with checkpoints, a resume from them, a resume of a
    plain run's checkpoint, and a scatter/gather round trip of the optimizer state."""
    from grpo_env.engine.model import save_model

    torch.set_num_threads(1)
    dist = init_from_env(torch.device("cpu"))
    settings = zero.requested()
    assert settings is not None and settings.stage == 2 and dist.world == 2
    try:
        metrics: dict = {}
        result = {"update": one_update(dist, zero_settings=settings, skip_first=True, metrics=metrics, **UNEVEN)}
        result["grad_norm"] = metrics["grad_norm"]
        result["update_stage1"] = one_update(dist, zero_settings=zero.ZeroSettings(stage=1), **UNEVEN)
        tok = tiny_tokenizer()
        cfg = dict(CFG, save_every=1, keep_checkpoints=3)

        def fresh(seed: int):  # other weights than seed 0's: a resume must replace them
            return zero.prepare(tiny_model(len(tok), seed=seed), settings, TrainConfig(**cfg))

        ref = tiny_model(len(tok), seed=0)
        model = fresh(0)
        torch.manual_seed(dist.rank)  # different sampling streams: the weights must still agree
        train(model, tok, FixedPrompts(), score_fn, TrainConfig(steps=2, **cfg), f"{out}/run", ref_model=ref,
              dist=dist, save_model=save_model)
        result["trained"] = {k: v.clone() for k, v in model.state_dict().items()}
        held, total = zero.partition_numel(model)
        moments = sum(v.numel() for s in zero.optimizer(model).state.values() for v in s.values() if v.dim())
        result["numel"] = {"held": held, "total": total, "moments": moments}
        # resume under DeepSpeed: steps 2 -> 3
        train(fresh(1), tok, FixedPrompts(), score_fn, TrainConfig(steps=3, **cfg), f"{out}/run", ref_model=ref,
              dist=dist, save_model=save_model, resume=True)
        # a plain single-process run's checkpoint (written by the test) resumes under DeepSpeed: 1 -> 2
        train(fresh(1), tok, FixedPrompts(), score_fn, TrainConfig(steps=2, **cfg), f"{out}/plain", ref_model=ref,
              dist=dist, save_model=save_model, resume=True)
        # scatter the step-3 checkpoint into the partitions and gather it back: the same state
        state = checkpoint.load(checkpoint.latest(f"{out}/run/checkpoints"))
        model = fresh(1)
        opt, sched = make_optimizer(model, TrainConfig(**cfg))
        zero.initialize(model, opt, sched, TrainConfig(**cfg))
        model.load_state_dict(checkpoint.weights(checkpoint.latest(f"{out}/run/checkpoints"), state), strict=False)
        zero.load_full_state(model, state["optimizer"])
        back = zero.full_optimizer_state(model)
        result["round_trip"] = back["param_groups"] == state["optimizer"]["param_groups"] and all(
            torch.equal(back["state"][i][k].cpu(), v.cpu())
            for i, s in state["optimizer"]["state"].items() for k, v in s.items())
        torch.save(result, f"{out}/rank_{dist.rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
@needs_deepspeed
def test_deepspeed_launch_partitions_adamw_and_matches_one_process(tmp_path):
    from transformers import AutoModelForCausalLM

    from grpo_env.engine.model import save_model

    # a plain single-process run to step 1, for the DeepSpeed ranks to resume
    tok = tiny_tokenizer()
    cfg = dict(CFG, save_every=1, keep_checkpoints=3)
    torch.manual_seed(0)
    train(tiny_model(len(tok), seed=0), tok, FixedPrompts(), score_fn, TrainConfig(steps=1, **cfg), tmp_path / "plain",
          ref_model=tiny_model(len(tok), seed=0), save_model=save_model)

    proc = accelerate_launch(["--use_deepspeed", "--zero_stage", "2", "--num_processes", "2", "--main_process_port",
                              str(_free_port())], [__file__, str(tmp_path)], tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    for r in range(2):
        assert f"deepspeed: zero stage 2, rank {r} of 2 holds the optimizer state of" in proc.stderr
    got = [torch.load(tmp_path / f"rank_{r}.pt") for r in range(2)]

    # ZeRO: each rank held about half of the AdamW state (both moments), together all of it
    numel = [g["numel"] for g in got]
    total = numel[0]["total"]
    assert all(n["held"] < 0.6 * total and n["moments"] == 2 * n["held"] for n in numel)
    assert sum(n["held"] for n in numel) >= total

    # the update on uneven shares equals one process on the whole batch, and both ranks agree (one_update
    # also checked that a loss that is non-finite on rank 1 only was skipped on both, leaving no trace)
    metrics: dict = {}
    single = one_update(Dist(), metrics=metrics, **UNEVEN)
    assert [g["grad_norm"] for g in got] == pytest.approx([metrics["grad_norm"]] * 2, rel=1e-4)  # summed, not averaged
    start = tiny_model(len(tok), seed=0).state_dict()
    assert max((single[k] - start[k]).abs().max().item() for k in start) > 1e-4  # the step moved the weights
    for k in single:
        assert torch.equal(got[0]["update"][k], got[1]["update"][k]), k
        torch.testing.assert_close(got[0]["update"][k], single[k], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got[0]["update_stage1"][k], single[k], rtol=1e-4, atol=1e-6)  # ZeRO-1 too
    # the loop: both ranks hold the same weights after each sampled its own groups
    assert all(torch.equal(got[0]["trained"][k], got[1]["trained"][k]) for k in got[0]["trained"])

    # checkpoints hold the whole model and AdamW state: step 2 is what the loop trained, loads as a plain model
    ckpts = tmp_path / "run" / "checkpoints"
    state = torch.load(ckpts / "step-000002" / "state.pt", weights_only=False)
    trained = checkpoint.weights(ckpts / "step-000002", state)  # the saved model's tensors: each stored once
    plain = AutoModelForCausalLM.from_pretrained(ckpts / "step-000002" / "model").state_dict()
    for k, v in trained.items():
        assert torch.equal(v, got[0]["trained"][k]) and torch.equal(plain[k], v), k
    moments = sorted(s["exp_avg"].numel() for s in state["optimizer"]["state"].values())
    assert moments == sorted(v.numel() for v in trained.values())  # whole, not rank 0's partition
    # ... and each gathered element belongs to its parameter: after AdamW's first step (betas 0.9, 0.99)
    # exp_avg**2 == exp_avg_sq, and each weight moved by lr against the sign of its exp_avg
    first = torch.load(ckpts / "step-000001" / "state.pt", weights_only=False)
    first["weights"] = checkpoint.weights(ckpts / "step-000001", first)
    assert _adam_step(first) == 1 and _adam_step(state) == 2
    lr = CFG["lr"]
    for (name, w1), s in zip(first["weights"].items(), first["optimizer"]["state"].values()):
        m, v = s["exp_avg"], s["exp_avg_sq"]
        torch.testing.assert_close(m * m, v, rtol=1e-4, atol=1e-12)
        big = m.abs() > 1e-5
        torch.testing.assert_close((w1 - start[name])[big], -lr * m.sign()[big], rtol=0, atol=1e-5)

    # resumed under DeepSpeed from step 2 to 3, AdamW's step count continuing; scatter + gather is exact
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3]
    assert _adam_step(torch.load(ckpts / "step-000003" / "state.pt", weights_only=False)) == 3
    assert got[0]["round_trip"] and got[1]["round_trip"]
    # a plain run's checkpoint resumed under DeepSpeed (1 -> 2) ...
    plain_ckpt = tmp_path / "plain" / "checkpoints"
    assert _adam_step(torch.load(plain_ckpt / "step-000002" / "state.pt", weights_only=False)) == 2
    # ... and a DeepSpeed checkpoint resumes in one plain process (3 -> 4)
    torch.manual_seed(0)
    train(tiny_model(len(tok), seed=1), tok, FixedPrompts(), score_fn, TrainConfig(steps=4, **cfg), tmp_path / "run",
          ref_model=tiny_model(len(tok), seed=0), save_model=save_model, resume=True)
    assert _adam_step(torch.load(ckpts / "step-000004" / "state.pt", weights_only=False)) == 4


if __name__ == "__main__":  # a rank of test_deepspeed_launch_partitions_adamw_and_matches_one_process
    ds_worker(sys.argv[1])
