"""One GRPO step, our engine against TRL's GRPOTrainer, measured back to back in one run.

    python bench/step.py                     # the like-for-like table (SmolLM2-135M-Instruct, CPU)
    python bench/step.py --levers            # also each speed lever of our engine, switched off one at a time
    python bench/step.py --natural-runs      # also natural lengths: length sorting, dynamic sampling
    python bench/step.py --model tiny --max-new 8 --steps 1   # a quick smoke run on a tiny random model

Both trainers get the same weights (one fp32 copy of the model saved to a temporary directory, which
TRL also loads its reference model from), the same tokenizer and chat template, the same prompts in
the same order (math_arith difficulty 1), the same reward (``math.answer`` called in-process), and
the same settings: 4 prompts x G = 8, at most 64 new tokens, temperature 1 / top-p 1 / top-k off,
beta 0.04 with the k3 KL estimator against a frozen reference, loss ``dapo``, epsilon 0.2, group
reward scaling, mu = 1, AdamW (lr 1e-6, betas 0.9/0.999, no weight decay, constant schedule,
gradient clipping at 1.0), fp32, no gradient checkpointing, no dropout, the same torch threads.
By default every completion is forced to the full length (``min_new_tokens = max_new_tokens`` on
both), so both steps process exactly the same number of tokens.

Each trainer runs in its own subprocess (so peak RSS is its own), warm-up steps first, then the
timed steps. Last line: ``ratio ours/TRL: <number>``. Results go to bench/results/step*.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
STAGES = ("generation", "reference", "scoring", "update")


# ---------------------------------------------------------------------------------------------
# measurement helpers


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of an n x n matmul (the machine's practical peak at these threads),
    through torch's default BLAS and, for fp32, through oneDNN (``cpu_matmul``): the faster counts, so
    the floor is the machine's, whichever library reaches it."""
    from grpo_env.engine import cpu_matmul

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    kernels = [lambda: a @ b]
    if dtype == torch.float32 and cpu_matmul.has_onednn():
        kernels.append(lambda: cpu_matmul._dnn(a, b))
    best = float("inf")
    for kernel in kernels:
        kernel()  # warm-up
        for _ in range(reps):
            t = time.perf_counter()
            kernel()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine() -> str:
    """The processor (name, family, model, flags' hash), torch version and threads: cpu_matmul's cache key."""
    from grpo_env.engine import cpu_matmul

    return cpu_matmul.machine_key()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssWatch:
    """Samples this process's RSS every 10 ms; :meth:`cut` returns (peak since last cut, now)."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def cut(self) -> tuple[float, float]:
        now = rss_mb()
        peak, self.peak = max(self.peak, now), now
        return peak, now

    def stop(self) -> None:
        self._stop.set()


def training_load() -> str:
    """grpo-env training or eval runs on this machine (they and this bench would slow each other down)."""
    out = subprocess.run(["pgrep", "-fa", "grpo-env (train|eval)"], capture_output=True, text=True).stdout.strip()
    return out or "none"


# ---------------------------------------------------------------------------------------------
# shared inputs: model directory, prompts, reward


def prepare_model(name: str, directory: Path) -> Path:
    """Write an fp32 copy of the model (SmolLM2 GGUF dequantised, or the tiny model) to ``directory``."""
    if name == "tiny":
        from grpo_env.engine.tiny import write_tiny

        return write_tiny(directory, hidden=64, layers=2)
    from grpo_env.engine.config import ModelConfig
    from grpo_env.engine.model import load_model, load_tokenizer, save_model

    mcfg = ModelConfig(name=name, device="cpu")
    save_model(load_model(mcfg, trainable=False), load_tokenizer(mcfg), directory)
    return directory


def bench_examples(n: int, task: str = "math_arith"):
    """The first ``n`` training examples of ``task`` at difficulty 1 (the same list for both trainers)."""
    import itertools

    from grpo_env.plugins import get_registry

    task = get_registry().task(task)
    opts = dict(task.parse_options({"difficulty": 1}))
    return list(itertools.islice(task.examples("train", 0, opts), n))


def reward_of(completion: str, example) -> float:
    """The math plugin's ``math.answer`` reward, called in-process (cheap: a parse and a compare)."""
    from grpo_env.plugins import get_registry

    r = get_registry().reward("math.answer")
    return float(r.fn(completion, example).score)


def prompt_tokens(tok, examples) -> list[int]:
    from grpo_env.engine.sampling import render_prompt

    return [len(tok(render_prompt(e, tok), add_special_tokens=False)["input_ids"]) for e in examples]


# ---------------------------------------------------------------------------------------------
# worker: our engine


def naive_chunk_logprobs(model, ro, s, cfg, with_entropy=False):
    """Ablation: the plain full-model forward (every prompt G times, LM head on every position)."""
    P = ro.prompt_len
    ids, attn = ro.input_ids[s], ro.attention_mask[s]
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False).logits.float()
    logits = logits[:, P - 1 : -1] / (cfg.temperature if cfg.temperature > 0 else 1.0)
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, ids[:, P:].unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1).detach() if with_entropy else None
    return logp, ent


def apply_lever(lever: str, cfg_kwargs: dict) -> None:
    """Switch one speed lever of the engine off (or bf16 on) for an ablation run."""
    from grpo_env.engine import rollout, sampling, trainer

    if lever == "no_shared_prefill":  # generation prefills every prompt G times
        rollout.generate = functools.partial(sampling.generate, share_prefix=False)
    elif lever == "hf_generate":  # transformers' generate (cache grown by concatenation, its sampler), no shared prefill
        from grpo_env.engine import decode
        from grpo_env.engine.generation import hf

        hf.decode = lambda model, ids, mask, G, **k: decode._generate_fallback(
            model, ids, mask, G, k["max_new_tokens"], k["eos"], k["pad_id"], k["temperature"], k["top_k"], k["top_p"],
            k["min_new_tokens"])
    elif lever == "default_adamw":  # torch's default AdamW implementation on CPU (a per-tensor loop), not the fused one
        make = trainer.make_optimizer

        def default_adamw(model, cfg):
            opt, sched = make(model, cfg)
            for g in opt.param_groups:
                g["fused"] = None
            return opt, sched

        trainer.make_optimizer = default_adamw
    elif lever == "no_prefix_sharing":  # log-probs run every prompt G times (head still on completions only)
        trainer._checkpointing = lambda model: True
    elif lever == "default_blas":  # torch's default BLAS (MKL, plain) for every fp32 product, not the machine's choice
        from grpo_env.engine import cpu_matmul

        cpu_matmul.ENABLED = False
    elif lever in ("mkl", "onednn"):  # one library for every role, whatever this machine's calibration chose
        os.environ["GRPO_ENV_CPU_MATMUL"] = lever
    elif lever == "routed_decode":  # the engine before per-machine kernels: oneDNN everywhere, the decode's
        # products routed by a TorchFunctionMode (a Python hook on every operation), not direct kernels
        from grpo_env.engine import cpu_matmul
        from grpo_env.engine.generation import hf

        os.environ["GRPO_ENV_CPU_MATMUL"] = "onednn"
        hf.cpu_matmul = type("Routed", (), {"decode_linears": staticmethod(lambda model: cpu_matmul.onednn_linear())})
    elif lever == "materialised_head":  # the LM head's full (positions x vocabulary) logits, not vocabulary chunks
        from grpo_env.engine import head

        head.FUSED = False
    elif lever == "naive_logprobs":  # full forward, LM head and log-softmax over every position
        trainer.chunk_logprobs = naive_chunk_logprobs
    elif lever == "whole_batch":  # one forward/backward over all 32 sequences instead of micro-batches of 16
        cfg_kwargs["micro_batch_size"] = 0
    elif lever == "bf16":  # bf16 autocast in generation and log-prob passes (changes numerics)
        cfg_kwargs["bf16"] = True
    elif lever == "no_sort":  # micro-batches in sampling order (only matters with natural lengths)
        cfg_kwargs["sort_by_length"] = False
    elif lever == "dynamic_sampling":
        cfg_kwargs["dynamic_sampling"] = True
    elif lever != "baseline":
        raise SystemExit(f"unknown lever {lever!r}")


def run_ours(args, examples) -> dict:
    from grpo_env.engine import trainer
    from grpo_env.engine.config import ModelConfig, TrainConfig
    from grpo_env.engine.model import load_model, load_tokenizer
    from grpo_env.engine.trainer import train
    from grpo_env.types import Scored, Status

    mcfg = ModelConfig(name=str(args.model_dir), device="cpu")
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    ref = load_model(mcfg, trainable=False)
    if args.force_length:
        model.generation_config.min_new_tokens = args.max_new
    cfg_kwargs = dict(
        steps=args.warmup + args.steps, prompts_per_step=args.prompts, group_size=args.group,
        max_new_tokens=args.max_new, temperature=1.0, top_p=1.0, top_k=0, beta=args.beta,
        kl_estimator="k3", loss_type="dapo", epsilon=0.2, scale_rewards="group", mu=1, lr=1e-6,
        adam_betas=(0.9, 0.999), weight_decay=0.0, lr_schedule="constant", max_grad_norm=1.0,
        save_every=0, progress=False, log_samples=0, bf16=args.bf16,
    )
    apply_lever(args.lever, cfg_kwargs)
    cfg = TrainConfig(**cfg_kwargs)
    watch = RssWatch()
    marks: list[tuple[float, float]] = []  # (peak, now) RSS at the end of each step
    drawn: list[list] = []  # examples drawn in each step (more than one draw with dynamic sampling)

    def collect_batch(*a, **k):  # a step starts
        watch.cut()
        drawn.append([])
        return collect(*a, **k)

    def samples(*a, **k):  # a step's logs are written (its checkpoint comes after: not measured)
        marks.append(watch.cut())
        return log_samples(*a, **k)

    collect, log_samples = trainer.collect_batch, trainer.RunLog.samples
    trainer.collect_batch, trainer.RunLog.samples = collect_batch, samples

    class Prompts:  # the fixed example list, in order
        pos = 0

        def sample(self, n):
            out = [examples[(self.pos + i) % len(examples)] for i in range(n)]
            self.pos += n
            drawn[-1].extend(out)
            return out

        def state_dict(self):
            return {"pos": self.pos}

        def load_state_dict(self, s):
            self.pos = s["pos"]

    def score_fn(exs, completions):
        out = []
        for e, c in zip(exs, completions):
            r = reward_of(c, e)
            out.append(Scored(total=r, status=Status.CORRECT if r > 0 else Status.INCORRECT, components={}))
        return out

    with tempfile.TemporaryDirectory() as out_dir:
        run = train(model, tok, Prompts(), score_fn, cfg, out_dir, ref_model=ref)
    watch.stop()
    steps = []
    for rec, (peak, now), exs in zip(run.history, marks, drawn):
        t = dict(rec["time"])
        t["update"] = t["total"] - sum(t.get(k, 0.0) for k in ("generation", "reference", "scoring"))
        steps.append({
            "time": t,
            "completion_tokens": rec["completion_len_mean"] * rec["sequences"] if rec["sequences"] else 0,
            "prompt_tokens_once": sum(prompt_tokens(tok, exs)),
            "sequences": rec["sequences"],
            "sampling_rounds": rec["sampling_rounds"],
            "zero_spread_frac": rec.get("zero_spread_frac"),
            "dropped_groups": rec["dropped_groups"],
            "reward_mean": rec.get("reward_mean"),
            "rss_peak_mb": peak,
            "rss_end_mb": now,
        })
    from grpo_env.engine import cpu_matmul

    return {"params": sum(p.numel() for p in model.parameters()), "steps": steps, "cpu_matmul": cpu_matmul.choice()}


# ---------------------------------------------------------------------------------------------
# worker: TRL


def run_trl(args, examples) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    n_steps = args.warmup + args.steps
    rows = [{"prompt": [{"role": m.role, "content": m.content} for m in e.prompt], "idx": i}
            for i, e in enumerate(examples[: n_steps * args.prompts])]

    def math_answer(prompts, completions, idx, **_):
        return [reward_of(c[0]["content"] if isinstance(c, list) else c, examples[i]) for c, i in zip(completions, idx)]

    gen_kwargs = {"min_new_tokens": args.max_new} if args.force_length else None
    targs = GRPOConfig(
        output_dir=str(args.tmp / "trl"), per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.max_new, temperature=1.0, top_p=1.0, top_k=0,
        beta=args.beta, loss_type="dapo", epsilon=0.2, scale_rewards="group", num_iterations=1,
        learning_rate=1e-6, adam_beta1=0.9, adam_beta2=0.999, weight_decay=0.0, lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=1.0,
        optim="adamw_torch_fused" if args.lever == "fused_adamw" else "adamw_torch", gradient_checkpointing=False, bf16=args.bf16,
        fp16=False, use_cpu=True, max_steps=n_steps, logging_steps=10_000, save_strategy="no", report_to="none",
        shuffle_dataset=False, disable_dropout=True, seed=0, generation_kwargs=gen_kwargs,
        mask_truncated_completions=False, log_completions=False, dataloader_num_workers=0,
    )
    watch = RssWatch()
    timer: dict[str, float] = {k: 0.0 for k in ("generation", "reference", "scoring")}
    tokens = {"completion": 0, "prompt_once": 0}
    steps: list[dict] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            watch.cut()
            self.t = time.perf_counter()
            for key in timer:
                timer[key] = 0.0
            tokens.update(completion=0, prompt_once=0)

        def on_step_end(self, *a, **k):
            total = time.perf_counter() - self.t
            peak, now = watch.cut()
            t = dict(timer, total=total)
            t["update"] = total - sum(timer.values())
            steps.append({"time": t, "completion_tokens": tokens["completion"],
                          "prompt_tokens_once": tokens["prompt_once"], "sequences": args.prompts * args.group,
                          "rss_peak_mb": peak, "rss_end_mb": now})

    trainer = GRPOTrainer(model=model, reward_funcs=[math_answer], args=targs, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, callbacks=[StepClock()])

    def timed(key, fn, when=lambda: True):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            if not when():
                return fn(*a, **k)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timer[key] += time.perf_counter() - t
        return wrapper

    generate = timed("generation", trainer._generate)

    def generate_counting(prompts):
        out = generate(prompts)
        tokens["completion"] += sum(len(c) for c in out[1])
        tokens["prompt_once"] += sum(len(p) for p in out[0][:: args.group])
        return out

    trainer._generate = generate_counting
    trainer._calculate_rewards = timed("scoring", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed(
        "reference", trainer._get_per_token_logps_and_entropies, when=lambda: not torch.is_grad_enabled())
    trainer.train()
    watch.stop()
    return {"params": sum(p.numel() for p in model.parameters()), "steps": steps, "trl": __import__("trl").__version__}


# ---------------------------------------------------------------------------------------------
# the parent: run the workers, print the table


def summarise(res: dict, warmup: int) -> dict:
    rows = res["steps"][warmup:] or res["steps"]
    n = len(rows)
    mean = {k: sum(r["time"].get(k, 0.0) for r in rows) / n for k in (*STAGES, "total")}
    ctoks = sum(r["completion_tokens"] for r in rows) / n
    ptoks = sum(r["prompt_tokens_once"] for r in rows) / n
    return {
        "mean_s": mean,
        "completion_tokens": ctoks,
        "prompt_tokens_once": ptoks,
        "s_per_completion_token": mean["total"] / max(ctoks, 1),
        "rss_peak_mb": max(r["rss_peak_mb"] for r in res["steps"]),
        "rss_end_mb_per_step": [round(r["rss_end_mb"]) for r in res["steps"]],
        "timed_steps": n,
    }


def flop_floor(params: int, s: dict, peak_gflops: float, beta: float) -> dict:
    """The step's matmul work at the machine's peak: 2*N*tokens per forward (generation, reference)
    and 6*N*tokens for the policy's forward plus backward; tokens = each prompt once plus completions."""
    tokens = s["prompt_tokens_once"] + s["completion_tokens"]
    flops = {"generation": 2 * params * tokens, "reference": 2 * params * tokens if beta > 0 else 0,
             "update": 6 * params * tokens}
    secs = {k: v / (peak_gflops * 1e9) for k, v in flops.items()}
    secs["total"] = sum(secs.values())
    return {"tokens": tokens, "flops": sum(flops.values()), "seconds": secs}


def spawn(args, kind: str, lever: str = "baseline", force_length: bool | None = None) -> dict:
    out = args.tmp / f"{kind}_{lever}.json"
    cmd = [sys.executable, __file__, "--worker", kind, "--lever", lever, "--model-dir", str(args.model_dir),
           "--out", str(out), "--steps", str(args.steps), "--warmup", str(args.warmup), "--prompts", str(args.prompts),
           "--group", str(args.group), "--max-new", str(args.max_new), "--beta", str(args.beta),
           "--threads", str(args.threads), "--tmp", str(args.tmp)] + (["--bf16"] if args.bf16 else [])
    if not (args.force_length if force_length is None else force_length):
        cmd.append("--natural")
    print(f"... {kind} ({lever})", file=sys.stderr, flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    res = json.loads(out.read_text())
    res["wall_s"] = time.perf_counter() - t
    return res


def print_table(ours: dict, trl: dict, floor: dict, length_note: str) -> None:
    print(f"\n{'stage':<34}{'ours s':>9}{'TRL s':>9}{'floor s':>9}")
    labels = {"generation": "generation", "reference": "reference (+ old) log-probs", "scoring": "scoring",
              "update": "policy forward + backward + AdamW"}
    for k in STAGES:
        fl = floor["seconds"].get(k)
        print(f"{labels[k]:<34}{ours['mean_s'][k]:>9.2f}{trl['mean_s'][k]:>9.2f}{'' if fl is None else format(fl, '9.2f'):>9}")
    print(f"{'total (mean of timed steps)':<34}{ours['mean_s']['total']:>9.2f}{trl['mean_s']['total']:>9.2f}{floor['seconds']['total']:>9.2f}")
    print(f"{'completion tokens / step':<34}{ours['completion_tokens']:>9.0f}{trl['completion_tokens']:>9.0f}")
    print(f"{'ms per completion token':<34}{1e3 * ours['s_per_completion_token']:>9.1f}{1e3 * trl['s_per_completion_token']:>9.1f}")
    print(f"{'peak RSS (MiB)':<34}{ours['rss_peak_mb']:>9.0f}{trl['rss_peak_mb']:>9.0f}")
    print(f"RSS after each step (MiB): ours {ours['rss_end_mb_per_step']}, TRL {trl['rss_end_mb_per_step']}")
    print(f"lengths: {length_note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2, tiny, or a model name/directory")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per trainer")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both (weights and optimiser stay fp32)")
    ap.add_argument("--natural", dest="force_length", action="store_false",
                    help="let completions end at EOS (default: force max-new tokens on both)")
    ap.add_argument("--levers", nargs="?", const="all", default=None,
                    help="also time each engine lever switched off (or only these, comma-separated)")
    ap.add_argument("--natural-runs", action="store_true",
                    help="also time ours at natural lengths: baseline, no length sorting, dynamic sampling")
    ap.add_argument("--trl-fused", action="store_true",
                    help="also time TRL with optim=adamw_torch_fused (TRL's default adamw_torch is a per-tensor loop on CPU)")
    ap.add_argument("--skip-trl", action="store_true", help="reuse the TRL numbers of bench/results/step.json")
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    # worker mode (internal)
    ap.add_argument("--worker", choices=("ours", "trl"))
    ap.add_argument("--lever", default="baseline")
    ap.add_argument("--model-dir", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tmp", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.worker:
        torch.manual_seed(0)
        examples = bench_examples((args.warmup + args.steps) * args.prompts * 8)  # spare ones for dynamic sampling
        res = (run_ours if args.worker == "ours" else run_trl)(args, examples)
        args.out.write_text(json.dumps(res))
        return

    load_before = training_load()
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = Path(tmp)
        args.model_dir = prepare_model(args.model, args.tmp / "model")
        peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
        result_path = RESULTS / f"step{'_' + args.tag if args.tag else ''}.json"
        runs = {"ours": spawn(args, "ours")}
        if args.skip_trl:
            runs["trl"] = json.loads((RESULTS / "step.json").read_text())["raw"]["trl"]  # the like-for-like run
        else:
            runs["trl"] = spawn(args, "trl")
        if args.trl_fused:
            runs["trl_fused_adamw"] = spawn(args, "trl", "fused_adamw")
        levers = {}
        if args.levers:
            every = ("default_blas", "mkl", "onednn", "routed_decode", "hf_generate", "no_shared_prefill", "default_adamw",
                     "materialised_head", "no_prefix_sharing", "naive_logprobs", "whole_batch", "bf16")
            for lever in every if args.levers == "all" else args.levers.split(","):
                levers[lever] = summarise(spawn(args, "ours", lever), args.warmup)
        dynamic = {}
        if args.natural_runs:
            for lever in ("baseline", "no_sort", "dynamic_sampling"):
                res = spawn(args, "ours", lever, force_length=False)
                dynamic[lever] = summarise(res, args.warmup) | {"steps": res["steps"][args.warmup:]}
    ours, trl = summarise(runs["ours"], args.warmup), summarise(runs["trl"], args.warmup)
    peak = peak16 if args.bf16 else peak32
    floor = flop_floor(runs["ours"]["params"], ours, peak, args.beta)
    length_note = (f"forced to {args.max_new} new tokens on both (min_new_tokens = max_new_tokens)"
                   if args.force_length else "natural (stop at EOS); compare ms per completion token")
    print(f"\n{args.model}: {args.prompts} prompts x G={args.group}, <= {args.max_new} new tokens, beta {args.beta}, "
          f"loss dapo, mu 1, AdamW lr 1e-6, {'bf16 autocast' if args.bf16 else 'fp32'}, no gradient checkpointing, {args.threads} torch threads, "
          f"TRL {runs['trl'].get('trl')}; {args.steps} timed steps after {args.warmup} warm-up")
    print(f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s; other grpo-env runs: {load_before}")
    print(f"our product kernels (grpo_env/engine/cpu_matmul.py, this machine's choice): {runs['ours'].get('cpu_matmul')}")
    print_table(ours, trl, floor, length_note)
    print(f"our step vs FLOP floor ({floor['flops'] / 1e12:.2f} TFLOP at {peak:.0f} GFLOP/s): "
          f"{ours['mean_s']['total'] / floor['seconds']['total']:.1f}x the floor")
    for name, s in levers.items():
        print(f"variant {name:<20} {s['mean_s']['total']:7.2f} s/step  "
              f"({s['mean_s']['total'] / ours['mean_s']['total']:.2f}x baseline)  "
              + "  ".join(f"{k} {s['mean_s'][k]:.2f}" for k in STAGES))
    for name, s in dynamic.items():
        groups = sum((1 - (st["zero_spread_frac"] or 0)) * st["sequences"] / args.group for st in s["steps"])
        s["s_per_group_with_signal"] = sum(st["time"]["total"] for st in s["steps"]) / groups if groups else None
        per = "-" if s["s_per_group_with_signal"] is None else f"{s['s_per_group_with_signal']:.2f}"
        print(f"natural lengths, {name:<17} {s['mean_s']['total']:7.2f} s/step, {per} s per group with reward spread "
              f"({groups:.0f} such groups in {len(s['steps'])} steps)")
    trl_fused = summarise(runs["trl_fused_adamw"], args.warmup) if "trl_fused_adamw" in runs else None
    if trl_fused:
        print(f"TRL with optim=adamw_torch_fused: {trl_fused['mean_s']['total']:.2f} s/step  "
              + "  ".join(f"{k} {trl_fused['mean_s'][k]:.2f}" for k in STAGES)
              + f"; ratio ours/that: {ours['mean_s']['total'] / trl_fused['mean_s']['total']:.3f}")
    ratio = ours["mean_s"]["total"] / trl["mean_s"]["total"]
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("tmp", "model_dir")},
        "length": length_note, "machine": machine(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "trl_version": runs["trl"].get("trl"),
        "matmul_peak_gflops": {"fp32": peak32, "bf16": peak16},
        "other_grpo_env_runs": {"before": load_before, "after": training_load()},
        "ours": ours, "trl": trl, "trl_fused_adamw": trl_fused, "flop_floor": floor, "levers_off": levers, "natural_lengths": dynamic,
        "ratio_ours_trl": ratio, "raw": runs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    RESULTS.mkdir(exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    print(f"saved {result_path}")
    print(f"ratio ours/TRL: {ratio:.3f}")


if __name__ == "__main__":
    main()
