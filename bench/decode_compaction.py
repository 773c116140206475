"""What dropping finished rows from the decoding batch saves (``grpo_env/engine/decode.py``,
``COMPACT_BELOW``): our decode loop on SmolLM2-135M-Instruct, with and without it, interleaved in one
run, on prompts whose completions end at different lengths.

    python bench/decode_compaction.py              # 16 math_arith + 16 math_word prompts, greedy, 128 tokens

Greedy decoding, one completion per prompt, so both variants produce the same tokens (checked): the
wall times compare the same work. Without compaction every row is computed until the last one ends
(as ``transformers``' ``generate`` does); with it, finished rows leave the batch once they are a
quarter of it. Reports the best of ``--reps`` wall times of each, the completion lengths, and the
rows the model computed (counted at its embedding). Writes bench/results/decode_compaction.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpo_env.engine import cpu_matmul, decode  # noqa: E402
from grpo_env.engine.config import ModelConfig  # noqa: E402
from grpo_env.engine.generation import Sampling, hf  # noqa: E402
from grpo_env.engine.model import load_model, load_tokenizer  # noqa: E402
from grpo_env.engine.sampling import completion_masks, eos_ids, render_prompt  # noqa: E402

from step import bench_examples  # noqa: E402  (bench/step.py: the same examples)

VARIANTS = {"compacted": decode.COMPACT_BELOW, "full_batch": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-task", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode_compaction.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mcfg = ModelConfig(device="cpu")
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    examples = bench_examples(args.per_task, "math_arith") + bench_examples(args.per_task, "math_word")
    texts = [render_prompt(e, tok) for e in examples]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos = eos_ids(tok, model)
    s = Sampling(max_new_tokens=args.tokens, eos=tuple(eos), pad_id=tok.pad_token_id or 0, temperature=0.0)
    gen = hf.HFGenerator(model)
    rows_seen: list[int] = []
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: rows_seen.append(o.shape[0]))

    def run(name: str) -> tuple[float, torch.Tensor, int]:
        decode.COMPACT_BELOW = VARIANTS[name]
        rows_seen.clear()
        t = time.perf_counter()
        out, _ = gen.generate(enc["input_ids"], enc["attention_mask"], 1, s)
        return time.perf_counter() - t, out, sum(rows_seen[1:])  # the decoding steps' rows (not the prefill)

    outs = {name: run(name) for name in VARIANTS}  # warm-up, and the outputs compared
    same = all(torch.equal(outs["compacted"][1], o[1]) for o in outs.values())
    walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.reps):
        for name in VARIANTS:
            walls[name].append(run(name)[0])
    decode.COMPACT_BELOW = VARIANTS["compacted"]
    mask, truncated = completion_masks(outs["compacted"][1], eos)
    lengths = mask.sum(1).tolist()
    ratio = min(walls["compacted"]) / min(walls["full_batch"])
    print(f"SmolLM2-135M-Instruct, {len(texts)} prompts x 1, greedy, at most {args.tokens} tokens, fp32, "
          f"{args.threads} threads; {cpu_matmul.machine_key()}")
    print(f"completion lengths: mean {sum(lengths) / len(lengths):.1f}, min {min(lengths)}, max {max(lengths)}, "
          f"{int(truncated.sum())} of {len(lengths)} cut at {args.tokens}; the same tokens both ways: {same}")
    print(f"{'variant':<11} {'best s':>7} {'rows computed':>14}")
    for name in VARIANTS:
        print(f"{name:<11} {min(walls[name]):7.2f} {outs[name][2]:14d}")
    print(f"compacted / full batch (best wall): {ratio:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": cpu_matmul.machine_key(), "prompts": len(texts), "max_new_tokens": args.tokens,
        "lengths": lengths, "same_tokens": same, "walls_s": walls,
        "rows_computed": {name: o[2] for name, o in outs.items()}, "compacted_over_full": ratio,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
