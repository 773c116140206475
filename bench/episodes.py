"""Episode throughput beside the single-turn step, on SmolLM2-135M-Instruct (CPU or CUDA).

    python bench/episodes.py [--steps 3] [--prompts 4] [--group 8] [--max-new 32]
    python bench/episodes.py --model runs/smollm2_env --only "env games" --tag trained   # longer episodes

Runs the real trainer for a few steps on each of: the single-turn task ``math_arith`` (the
baseline), the ``games.guess`` environment (feedback every turn) and the ``math_python`` environment
(a python tool run in the sandbox; the model is prefilled with a tool call on its first turn so that
every episode exercises the tool). Per workload: seconds per step by stage, the share of the step
spent waiting on environments, assistant turns per second and model tokens per second of rollout,
and the step time as a ratio to the single-turn baseline of the same run. ``games.guess`` runs twice:
later turns continuing from the episode's KV cache (the default), and prefilling the whole episode
each turn (``episode_kv_cache = false``), to measure what the cache saves. The first step is a
warm-up, left out. Prints a table and writes bench/results/episodes_<device>.json.
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
from grpo_env.train import make_env_host, make_score_fn

PYTHON_PREFILL = '<tool_call>{"name": "python", "arguments": {"code": "print('

GUESS = ("games.guess", {"high": 8, "max_turns": 4}, "")
WORKLOADS = {  # name -> (task, options, prefill, TrainConfig settings)
    "single-turn math_arith": ("math_arith", {"difficulty": 1}, "", {}),
    "env games.guess": (*GUESS, {}),
    "env games.guess, no KV": (*GUESS, {"episode_kv_cache": False}),
    "env math_python (tool)": ("math_python", {"difficulty": 1}, PYTHON_PREFILL, {}),
}


def run_one(model, tok, reg, task_name: str, options: dict, prefill: str, settings: dict, args) -> list[dict]:
    task = reg.tasks[task_name]
    entry = MixEntry(task, options=task.parse_options(options), prefill=prefill)
    cfg = TrainConfig(steps=args.steps, prompts_per_step=args.prompts, group_size=args.group,
                      max_new_tokens=args.max_new, max_episode_tokens=args.episode_tokens, temperature=0.8,
                      beta=0.0, lr=1e-6, save_every=0, progress=False, log_samples=0, **settings)
    rewards = {n: reg.rewards[n] for n in entry.components}
    with tempfile.TemporaryDirectory() as out, ScoringService(rewards, workers=2) as svc:
        host = make_env_host(svc, [entry], workers=2)
        run = train(model, tok, TaskMixture([entry]), make_score_fn(svc, [entry]), cfg, out, env_host=host)
    return run.history


def summarise(history: list[dict], group: int, prompts: int) -> dict:
    rows = history[1:] or history
    n = len(rows)
    keys = ("generation", "environment", "scoring", "update", "total")
    mean = {k: sum(r["time"].get(k, 0.0) for r in rows) / n for k in keys}
    seqs = group * prompts
    turns = [sum(e.get("turns", 0) * e.get("episodes", 0) for e in r.get("episodes_by_env", {}).values()) or seqs
             for r in rows]
    tokens = [r["completion_len_mean"] * seqs for r in rows]  # the model's tokens (an episode's env tokens left out)
    rollout = [r["time"].get("generation", 0.0) + r["time"].get("environment", 0.0) for r in rows]
    eps = [e for r in rows for e in r.get("episodes_by_env", {}).values()]
    return {
        "mean_s": mean,
        "env_share": mean["environment"] / mean["total"],
        "turns_per_s": sum(turns) / sum(rollout),
        "model_tokens_per_s": sum(tokens) / sum(rollout),
        "turns_per_episode": sum(turns) / (n * seqs),
        "tool_calls_per_episode": (sum(e["tool_calls"] for e in eps) / len(eps)) if eps else 0.0,
        "reward_mean": sum(r["reward_mean"] or 0.0 for r in rows) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32, help="new tokens per turn")
    ap.add_argument("--episode-tokens", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="smollm2", help="a model name or path, e.g. a trained run's directory")
    ap.add_argument("--tag", default="", help="results go to episodes_<device>[_<tag>].json")
    ap.add_argument("--only", action="append", default=[], help="run only these workloads (by name prefix)")
    args = ap.parse_args()

    torch.manual_seed(0)
    mcfg = ModelConfig(name=args.model, device=args.device)
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    reg = get_registry()
    results = {}
    for name, (task, options, prefill, settings) in WORKLOADS.items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        torch.manual_seed(0)
        history = run_one(model, tok, reg, task, options, prefill, settings, args)
        results[name] = summarise(history, args.group, args.prompts)
    device = resolve_device(args.device).type
    base = results.get("single-turn math_arith", {}).get("mean_s", {}).get("total")
    print(f"{args.model}, {args.prompts} prompts x {args.group} samples, <= {args.max_new} tokens per turn, "
          f"device {device}, {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    head = f"{'workload':<26}{'s/step':>8}{'x base':>8}{'gen s':>8}{'env s':>8}{'env %':>7}{'upd s':>8}" \
           f"{'turns/s':>9}{'tok/s':>8}{'turns/ep':>9}{'calls/ep':>9}"
    print(head)
    for name, r in results.items():
        m = r["mean_s"]
        ratio = f"{m['total'] / base:.2f}" if base else "-"
        print(f"{name:<26}{m['total']:>8.2f}{ratio:>8}{m['generation']:>8.2f}{m['environment']:>8.2f}"
              f"{r['env_share']:>7.1%}{m['update']:>8.2f}{r['turns_per_s']:>9.2f}{r['model_tokens_per_s']:>8.1f}"
              f"{r['turns_per_episode']:>9.2f}{r['tool_calls_per_episode']:>9.2f}")
    out = {"settings": vars(args), "device": device, "machine": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "results": results}
    path = Path(__file__).parent / "results" / f"episodes_{device}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
