"""Where a decoding step's time goes, in our decode loop on this machine's CPU: the products, the
attention, the other operations, and the per-token overhead (Python and dispatch), before and after
the decode's products went to this machine's kernels directly (``grpo_env/engine/cpu_matmul.py``).

    python bench/decode_overhead.py              # SmolLM2-135M-Instruct, 4 prompts x G = 8, 32 tokens

Two variants, interleaved, in one run:

- ``routed``: the engine before: oneDNN for every product, chosen by a ``TorchFunctionMode`` that
  sees every operation of the forward (a Python call per operation);
- ``direct``: the engine now: each ``nn.Linear``'s forward replaced for the decode by the kernel this
  machine's calibration chose (no hook on the other operations).

With ``--compile``, a third: ``compiled``, the engine now with the decoder (every layer, not the
head or the sampling) compiled by ``torch.compile(dynamic=True)`` into a fresh inductor cache. Its
first run, compilation included, is reported apart; its tokens and log-probs are compared with
``direct``'s at temperature 0. This is the issue's suggested lever, measured, and not the engine's
default (the numbers say why: bench/STEP.md).

Wall time is the best of ``--reps`` runs of each variant. One more run of each under torch's profiler
splits it: the products (``mm``/``addmm``/oneDNN linear), the attention kernel, every other
operation, and the rest of the wall time, which no operation accounts for: the per-token overhead
(the profiler adds some of its own to that rest, the same for both variants). Writes
bench/results/decode_overhead.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpo_env.engine import cpu_matmul, decode  # noqa: E402
from grpo_env.engine.config import ModelConfig  # noqa: E402
from grpo_env.engine.generation import Sampling, hf  # noqa: E402
from grpo_env.engine.model import load_model, load_tokenizer  # noqa: E402

PRODUCTS = ("aten::mm", "aten::addmm", "mkldnn::_linear_pointwise")
ATTENTION = "aten::_scaled_dot_product"


@contextlib.contextmanager
def routed(model):
    """The engine before: oneDNN everywhere, through the TorchFunctionMode route."""
    old = os.environ.get("GRPO_ENV_CPU_MATMUL")
    os.environ["GRPO_ENV_CPU_MATMUL"] = "onednn"
    try:
        with cpu_matmul.onednn_linear():
            yield
    finally:
        if old is None:
            del os.environ["GRPO_ENV_CPU_MATMUL"]
        else:
            os.environ["GRPO_ENV_CPU_MATMUL"] = old


VARIANTS = {"routed": routed, "direct": cpu_matmul.decode_linears}
_COMPILED: dict[int, torch.nn.Module] = {}


@contextlib.contextmanager
def compiled(model):
    """The engine now, its decoder compiled once (dynamic shapes: the prefill and every cache length)."""
    real = decode._hidden_and_head
    base, head = real(model)
    if id(base) not in _COMPILED:
        _COMPILED[id(base)] = torch.compile(base, dynamic=True)
    fast = _COMPILED[id(base)]
    decode._hidden_and_head = lambda m: (fast, head)
    try:
        with cpu_matmul.decode_linears(model):
            yield
    finally:
        decode._hidden_and_head = real


def split(prof, wall: float, tokens: int) -> dict:
    """ms per decoding step: products, attention, other operations, and what no operation accounts for."""
    parts = {"products": 0.0, "attention": 0.0, "other_ops": 0.0}
    for e in prof.key_averages():
        us = e.self_cpu_time_total
        key = "products" if e.key in PRODUCTS else "attention" if e.key.startswith(ATTENTION) else "other_ops"
        parts[key] += us / 1e3
    ms = {k: v / tokens for k, v in parts.items()}
    ms["overhead"] = wall * 1e3 / tokens - sum(ms.values())
    ms["wall"] = wall * 1e3 / tokens
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time the decoder under torch.compile")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode_overhead.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mcfg = ModelConfig(device="cpu")
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    enc = tok(["What is 17 + 25?", "Name three primes.", "Why is the sky blue?", "Write a haiku about rain."],
              return_tensors="pt", padding=True)
    gen = hf.HFGenerator(model)
    s = Sampling(max_new_tokens=args.tokens, eos=(tok.eos_token_id,), pad_id=tok.pad_token_id or 0,
                 min_new_tokens=args.tokens)
    real = hf.cpu_matmul
    variants = dict(VARIANTS, compiled=compiled) if args.compile else VARIANTS

    def run(name: str, sampling: Sampling = s):
        hf.cpu_matmul = type("Variant", (), {"decode_linears": staticmethod(variants[name])})
        try:
            t = time.perf_counter()
            out, lps = gen.generate(enc["input_ids"], enc["attention_mask"], 8, sampling, logprobs=True)
            return time.perf_counter() - t, out, lps
        finally:
            hf.cpu_matmul = real

    chosen = cpu_matmul.choice()
    extra = {}
    if args.compile:  # compiled into a fresh cache: the cost a new machine pays on its first run
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="grpo-env-inductor-")
        extra["compile_first_run_s"] = run("compiled")[0]
        greedy = dataclasses.replace(s, temperature=0.0)
        (_, a, la), (_, b, lb) = run("direct", greedy), run("compiled", greedy)
        extra["greedy_tokens_equal"] = bool(torch.equal(a, b))
        extra["greedy_max_abs_dlogp"] = float((la - lb).abs().max()) if a.shape == b.shape else None
    for name in variants:  # warm-up (oneDNN primitives, allocator)
        run(name)
    walls: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.reps):
        for name in variants:
            walls[name].append(run(name)[0])
    profiles = {}
    from torch.profiler import ProfilerActivity, profile

    for name in VARIANTS:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = run(name)[0]
        profiles[name] = split(prof, wall, args.tokens)
    rows = 4 * 8
    print(f"SmolLM2-135M-Instruct decode, {rows} rows x {args.tokens} tokens, fp32, {args.threads} threads; "
          f"{cpu_matmul.machine_key()}; kernels chosen: {chosen}")
    print(f"{'variant':<8} {'best s':>7} {'ms/token':>9} | profiled ms/token: {'products':>8} {'attention':>9} "
          f"{'other ops':>9} {'overhead':>8}")
    for name in VARIANTS:
        best, p = min(walls[name]), profiles[name]
        print(f"{name:<8} {best:7.2f} {best * 1e3 / args.tokens:9.1f} |                    {p['products']:8.1f} "
              f"{p['attention']:9.1f} {p['other_ops']:9.1f} {p['overhead']:8.1f}")
    ratio = min(walls["direct"]) / min(walls["routed"])
    print(f"direct / routed (best wall): {ratio:.3f}")
    if args.compile:
        shutil.rmtree(os.environ.pop("TORCHINDUCTOR_CACHE_DIR"), ignore_errors=True)
        best = min(walls["compiled"])
        extra["compiled_over_direct"] = best / min(walls["direct"])
        print(f"compiled {best:7.2f} {best * 1e3 / args.tokens:9.1f} | compiled / direct (best wall): "
              f"{extra['compiled_over_direct']:.3f}; first run, compilation included: {extra['compile_first_run_s']:.1f} s; "
              f"greedy tokens equal: {extra['greedy_tokens_equal']}, max |dlogp| {extra['greedy_max_abs_dlogp']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": cpu_matmul.machine_key(), "kernels": chosen, "rows": rows, "tokens": args.tokens,
        "walls_s": walls, "profiled_ms_per_token": profiles, "direct_over_routed": ratio, **extra,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
