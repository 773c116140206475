"""Plot a run's reward curve from its metrics.jsonl (and copy the data next to the figure).

    python bench/plot_curve.py runs/smollm2_math [--out bench/results/smollm2_math_curve]

Writes OUT.png (reward mean per step, per component, and a moving average) and OUT.jsonl (the
per-step records with the fields the figure uses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", default="bench/results/smollm2_math_curve")
    ap.add_argument("--window", type=int, default=5)
    args = ap.parse_args()
    recs = [json.loads(x) for x in (Path(args.run) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    keep = ("step", "reward_mean", "reward_std", "reward_by_component", "completion_len_mean", "truncated_frac",
            "zero_spread_frac", "entropy", "kl", "grad_norm", "time")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".jsonl").write_text("".join(json.dumps({k: r.get(k) for k in keep}) + "\n" for r in recs))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in recs]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    comps = sorted({c for r in recs for c in (r.get("reward_by_component") or {})})
    for c in comps:
        ys = [(r.get("reward_by_component") or {}).get(c) for r in recs]
        ax[0].plot(steps, [y if y is not None else float("nan") for y in ys], alpha=0.4, label=c)
    total = [r["reward_mean"] if r.get("reward_mean") is not None else float("nan") for r in recs]
    w = args.window
    smooth = [sum(total[max(0, i - w + 1) : i + 1]) / len(total[max(0, i - w + 1) : i + 1]) for i in range(len(total))]
    ax[0].plot(steps, total, color="k", alpha=0.3, label="total reward")
    ax[0].plot(steps, smooth, color="k", label=f"total reward ({w}-step mean)")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training reward (sampled)")
    ax[0].legend(fontsize=8)
    ax[1].plot(steps, [r.get("completion_len_mean") for r in recs], label="completion length (tokens)")
    ax2 = ax[1].twinx()
    ax2.plot(steps, [r.get("truncated_frac") for r in recs], color="C3", label="truncated fraction")
    ax[1].set_xlabel("step")
    ax[1].legend(loc="upper left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.jsonl')}")


if __name__ == "__main__":
    main()
