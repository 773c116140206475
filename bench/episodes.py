"""Episode throughput beside the single-turn step, on SmolLM2-135M-Instruct (CPU or CUDA).

    python bench/episodes.py [--steps 3] [--prompts 4] [--group 8] [--max-new 32]
    python bench/episodes.py --model runs/smollm2_env --only "env games" --tag trained   # longer episodes
    python bench/episodes.py --only "env" --episode-forks direct,zygote   # episode processes: before/after
    python bench/episodes.py --starts 40 [--resident-gib 3]   # episode process start latency alone

Runs the real trainer for a few steps on each of: the single-turn task ``math_arith`` (the
baseline), the ``games.guess`` environment (feedback every turn) and the ``math_python`` environment
(a python tool run in the sandbox; the model is prefilled with a tool call on its first turn so that
every episode exercises the tool). Per workload: seconds per step by stage, the share of the step
spent waiting on environments, assistant turns per second and model tokens per second of rollout,
and the step time as a ratio to the single-turn baseline of the same run. ``games.guess`` runs twice:
later turns continuing from the episode's KV cache (the default), and prefilling the whole episode
each turn (``episode_kv_cache = false``), to measure what the cache saves. The first step is a
warm-up, left out. Prints a table and writes bench/results/episodes_<device>.json.

Episode processes (issue 19 item 11): ``--episode-forks`` runs each environment workload once per
way of starting them, in the same invocation on the same machine: ``direct`` forks each episode's
process from the trainer (which holds the model, its gradients and optimiser state: ~3 GiB
resident), ``zygote`` from a small :class:`~grpo_env.episodes.EpisodeZygote` started before the
model loads (as ``grpo-env train`` does). Per run: the environment's share of the step and the mean
start time of an episode process as the host sees it (``start ms``). ``--starts N`` measures only
that: N episode processes started one after another (each: started, its ``make`` answered, stopped)
each way, from a parent holding SmolLM2 plus ballast up to ``--resident-gib``, with the processes'
resident sizes and the time to stop each (told to exit, then reaped); writes
bench/results/episode_starts_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import torch

from grpo_env.engine.config import ModelConfig, TrainConfig
from grpo_env.engine.model import load_model, load_tokenizer, resolve_device
from grpo_env.engine.trainer import train
from grpo_env.episodes import EpisodeHost, EpisodeZygote
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.plugins import get_registry
from grpo_env.scoring import ScoringService
from grpo_env.cli.train import make_env_host, make_score_fn

PYTHON_PREFILL = '<tool_call>{"name": "python", "arguments": {"code": "print('

GUESS = ("games.guess", {"high": 8, "max_turns": 4}, "")
WORKLOADS = {  # name -> (task, options, prefill, TrainConfig settings)
    "single-turn math_arith": ("math_arith", {"difficulty": 1}, "", {}),
    "env games.guess": (*GUESS, {}),
    "env games.guess, no KV": (*GUESS, {"episode_kv_cache": False}),
    "env math_python (tool)": ("math_python", {"difficulty": 1}, PYTHON_PREFILL, {}),
}
FORKS = ("direct", "zygote")


def rss_mib(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_one(model, tok, reg, task_name: str, options: dict, prefill: str, settings: dict, args,
            forks: EpisodeZygote | str = "direct") -> tuple[list[dict], dict]:
    task = reg.tasks[task_name]
    entry = MixEntry(task, options=task.parse_options(options), prefill=prefill)
    cfg = TrainConfig(steps=args.steps, prompts_per_step=args.prompts, group_size=args.group,
                      max_new_tokens=args.max_new, max_episode_tokens=args.episode_tokens, temperature=0.8,
                      beta=0.0, lr=1e-6, save_every=0, progress=False, log_samples=0, **settings)
    rewards = {n: reg.rewards[n] for n in entry.components}
    starts: dict = {}
    with tempfile.TemporaryDirectory() as out, ScoringService(rewards, workers=2) as svc:
        host = make_env_host(svc, [entry], workers=2, forks=forks)
        try:
            run = train(model, tok, TaskMixture([entry]), make_score_fn(svc, [entry]), cfg, out, env_host=host)
        finally:
            if host is not None:
                n = sum(host.started.values())
                starts = {"episode_processes": dict(host.started),
                          "start_ms_mean": 1e3 * host.start_seconds / n if n else None}
                host.close()
    starts["trainer_rss_mib"] = round(rss_mib())
    return run.history, starts


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


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure_starts(reg, zygote: EpisodeZygote | None, n: int) -> dict:
    """``n`` games.guess episode processes, one after another, each way: the host's start time, the
    start plus its ``make`` answered, and the resident sizes of an episode process and its parent."""
    env = reg.tasks["games.guess"]
    ex = next(iter(env.examples("train", 0, env.parse_options({}))))
    ex = ex.model_copy(update={"task": env.name, "tools": env.tool_specs()})
    out = {}
    with ScoringService({}, workers=1) as svc:
        for way in FORKS:
            forks = zygote if way == "zygote" else "direct"
            if way == "zygote" and zygote is None:
                continue
            with EpisodeHost({env.name: (env, env.rewards)}, svc, workers=1, forks=forks) as host:
                start, ready, stop, rss, parent = [], [], [], [], []
                for k in range(n + 1):  # the first is a warm-up
                    before = host.start_seconds
                    t = time.perf_counter()
                    batch = host.open([ex])  # forks the process and waits for its make
                    took = time.perf_counter() - t
                    s = batch.sessions[0]
                    assert s is not None and s.open and s.proc is not None, "the episode did not start"
                    if k:
                        start.append(host.start_seconds - before)
                        ready.append(took)
                        rss.append(rss_mib(s.proc.pid))
                        parent.append(psutil.Process(s.proc.pid).ppid())
                    t = time.perf_counter()
                    batch.close()  # the process told to exit, and reaped
                    if k:
                        stop.append(time.perf_counter() - t)
                assert host.started[way] == n + 1, host.started
            parents = set(parent)
            who = ("zygote" if zygote is not None and parents == {zygote.pid} else
                   "trainer" if parents == {os.getpid()} else repr(sorted(parents)))
            out[way] = {"start_ms_median": 1e3 * statistics.median(start), "start_ms_p90": 1e3 * _pct(start, 0.9),
                        "start_and_make_ms_median": 1e3 * statistics.median(ready),
                        "start_and_make_ms_p90": 1e3 * _pct(ready, 0.9),
                        "stop_ms_median": 1e3 * statistics.median(stop),
                        "episode_rss_mib_median": statistics.median(rss), "parent": who}
    return out


def main_starts(args, zygote: EpisodeZygote | None, reg) -> None:
    torch.manual_seed(0)
    mcfg = ModelConfig(name=args.model, device=args.device)
    load_tokenizer(mcfg)
    model = load_model(mcfg)
    ballast_mib = max(0.0, args.resident_gib * 1024 - rss_mib())
    ballast = torch.ones(int(ballast_mib * 2**20 // 4))  # touched: resident, as gradients and optimiser state are
    trainer = rss_mib()
    res = measure_starts(reg, zygote, args.starts)
    device = resolve_device(args.device).type
    zyg = rss_mib(zygote.pid) if zygote is not None else None
    print(f"episode process starts, {args.starts} each way, {machine()}, {os.cpu_count()} CPUs; trainer resident "
          f"{trainer:.0f} MiB ({args.model} + {ballast_mib:.0f} MiB ballast)"
          + (f", zygote resident {zyg:.0f} MiB" if zyg is not None else ""))
    print(f"{'forked from':<14}{'start ms':>10}{'p90':>8}{'start+make ms':>15}{'p90':>8}{'stop ms':>9}"
          f"{'episode RSS MiB':>17}")
    for way, r in res.items():
        print(f"{r['parent']:<14}{r['start_ms_median']:>10.1f}{r['start_ms_p90']:>8.1f}"
              f"{r['start_and_make_ms_median']:>15.1f}{r['start_and_make_ms_p90']:>8.1f}{r['stop_ms_median']:>9.1f}"
              f"{r['episode_rss_mib_median']:>17.0f}")
    out = {"settings": vars(args), "device": device, "machine": machine(), "cpus": os.cpu_count(),
           "trainer_rss_mib": trainer, "zygote_rss_mib": zyg, "results": res}
    path = Path(__file__).parent / "results" / f"episode_starts_{device}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"saved {path}")
    del ballast, model


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
    ap.add_argument("--episode-forks", default="direct,zygote",
                    help="comma-separated: where each environment workload's episode processes fork from, one run "
                         "each: direct (the trainer), zygote (a small process started before the model loads)")
    ap.add_argument("--starts", type=int, default=0,
                    help="only measure N episode process starts each way, from a parent of --resident-gib")
    ap.add_argument("--resident-gib", type=float, default=3.0, help="the parent's resident size for --starts")
    args = ap.parse_args()
    ways = [w.strip() for w in args.episode_forks.split(",") if w.strip()]
    if not ways or set(ways) - set(FORKS):
        ap.error(f"--episode-forks: a comma-separated list of {', '.join(FORKS)}")

    reg = get_registry()
    picked = {name: w for name, w in WORKLOADS.items() if not args.only or any(name.startswith(o) for o in args.only)}
    envs = {reg.tasks[w[0]].name: reg.tasks[w[0]] for w in picked.values() if name_is_env(reg, w[0])}
    if args.starts:
        envs = {"games.guess": reg.tasks["games.guess"]}
    # before the model loads, as grpo-env train starts it
    zygote = EpisodeZygote(envs) if envs and ("zygote" in ways or args.starts) else None
    try:
        if args.starts:
            main_starts(args, zygote, reg)
        else:
            main_steps(args, reg, picked, ways, zygote)
    finally:
        if zygote is not None:
            zygote.close()


def name_is_env(reg, task: str) -> bool:
    from grpo_env.environment import is_environment

    return is_environment(reg.tasks[task])


def main_steps(args, reg, picked: dict, ways: list[str], zygote: EpisodeZygote | None) -> None:
    torch.manual_seed(0)
    mcfg = ModelConfig(name=args.model, device=args.device)
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    results, starts = {}, {}
    for name, (task, options, prefill, settings) in picked.items():
        for way in (ways if name_is_env(reg, task) else ["direct"]):
            key = name if len(ways) == 1 or not name_is_env(reg, task) else f"{name} [{way}]"
            torch.manual_seed(0)
            history, starts[key] = run_one(model, tok, reg, task, options, prefill, settings, args,
                                           forks=zygote if way == "zygote" else "direct")
            results[key] = {**summarise(history, args.group, args.prompts), **starts[key]}
    device = resolve_device(args.device).type
    base = results.get("single-turn math_arith", {}).get("mean_s", {}).get("total")
    print(f"{args.model}, {args.prompts} prompts x {args.group} samples, <= {args.max_new} tokens per turn, "
          f"device {device}, {machine()}, torch threads {torch.get_num_threads()}"
          + (f", zygote resident {rss_mib(zygote.pid):.0f} MiB" if zygote is not None else ""))
    head = f"{'workload':<35}{'s/step':>8}{'x base':>8}{'gen s':>8}{'env s':>8}{'env %':>7}{'upd s':>8}" \
           f"{'turns/s':>9}{'tok/s':>8}{'turns/ep':>9}{'calls/ep':>9}{'start ms':>9}{'RSS MiB':>8}"
    print(head)
    for name, r in results.items():
        m = r["mean_s"]
        ratio = f"{m['total'] / base:.2f}" if base else "-"
        st = r.get("start_ms_mean")
        print(f"{name:<35}{m['total']:>8.2f}{ratio:>8}{m['generation']:>8.2f}{m['environment']:>8.2f}"
              f"{r['env_share']:>7.1%}{m['update']:>8.2f}{r['turns_per_s']:>9.2f}{r['model_tokens_per_s']:>8.1f}"
              f"{r['turns_per_episode']:>9.2f}{r['tool_calls_per_episode']:>9.2f}"
              f"{(f'{st:.1f}' if st is not None else '-'):>9}{r['trainer_rss_mib']:>8}")
    out = {"settings": vars(args), "device": device, "machine": machine(),
           "threads": torch.get_num_threads(), "results": results}
    path = Path(__file__).parent / "results" / f"episodes_{device}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
