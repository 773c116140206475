"""Time GRPO steps of the engine on SmolLM2-135M-Instruct (CPU or CUDA), split by stage.

    python bench/engine_step.py [--steps 4] [--prompts 4] [--group 8] [--max-new 64] [--beta 0.04]

Settings mirror the TRL comparison (4 prompts x 8 completions x 64 new tokens, beta 0.04) on the
math_arith task (difficulty 1); the first step is a warm-up and is left out of the means.
Prints a table and writes bench/results/engine_step_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from grpo_env.engine.config import ModelConfig, TrainConfig
from grpo_env.engine.model import load_model, load_tokenizer, resolve_device
from grpo_env.engine.trainer import train
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.plugins import get_registry
from grpo_env.scoring import ScoringService
from grpo_env.cli.train import make_score_fn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--min-new", type=int, default=0, help="force at least this many new tokens (suppress EOS)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward (0: all)")
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    ap.add_argument("--model", default="smollm2", help="smollm2 (the GGUF), a model directory or hub id")
    ap.add_argument("--random-weights", action="store_true",
                    help="build the model from its config with random weights (a directory holding config and "
                         "tokenizer alone: speed does not depend on the weights)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (weights and optimiser stay fp32)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    mcfg = ModelConfig(name=args.model, device=args.device)
    tok = load_tokenizer(mcfg)
    if args.random_weights:
        from transformers import AutoModelForCausalLM

        from grpo_env.engine.model import load_config

        def load(trainable=True):
            torch.manual_seed(0)
            m = AutoModelForCausalLM.from_config(load_config(mcfg)).to(resolve_device(args.device)).eval()
            return m if trainable else m.requires_grad_(False)
    else:
        def load(trainable=True):
            return load_model(mcfg, trainable=trainable)
    model = load()
    ref = load(trainable=False) if args.beta > 0 else None
    if args.min_new:
        model.generation_config.min_new_tokens = args.min_new
    reg = get_registry()
    task = reg.tasks["math_arith"]
    entries = [MixEntry(task, options=task.parse_options({"difficulty": 1}))]
    cfg = TrainConfig(steps=args.steps, prompts_per_step=args.prompts, group_size=args.group,
                      max_new_tokens=args.max_new, beta=args.beta, lr=1e-6, micro_batch_size=args.micro_batch, save=False,
                      progress=False, log_samples=0, bf16=args.bf16)
    with tempfile.TemporaryDirectory() as out, ScoringService({"math.answer": reg.rewards["math.answer"]}) as svc:
        run = train(model, tok, TaskMixture(entries), make_score_fn(svc, entries), cfg, out, ref_model=ref)
    rows = run.history[1:] or run.history
    keys = ("generation", "scoring", "reference", "update", "total")
    mean = {k: sum(r["time"].get(k, 0.0) for r in rows) / len(rows) for k in keys}
    device = resolve_device(args.device).type
    if device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"{args.model}{' (random weights)' if args.random_weights else ''}, {args.prompts} prompts x {args.group} completions x <= {args.max_new} new tokens, "
          f"beta {args.beta}, micro-batch {args.micro_batch or 'all'}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'stage':<12}{'s/step':>10}{'share':>8}")
    for k in keys:
        print(f"{k:<12}{mean[k]:>10.2f}{mean[k] / mean['total']:>8.0%}")
    print(f"mean completion length {sum(r['completion_len_mean'] for r in rows) / len(rows):.1f} tokens")
    result = {"settings": vars(args), "device": device, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "mean_s": mean,
              "steps": [{"time": r["time"], "completion_len_mean": r["completion_len_mean"]} for r in run.history]}
    path = Path(__file__).parent / "results" / f"engine_step_{device}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
