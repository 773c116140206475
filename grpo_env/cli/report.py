"""The run report: PNG plots of a run's metrics.jsonl and a markdown summary (`grpo-env report RUN_DIR`).

It reads only files in the run directory: ``metrics.jsonl`` (one record per step), ``recipe.json``,
``plugins.json`` (plugin versions at training time) and ``eval_*.json`` (before/after evaluations),
so it can be regenerated at any time, also while the run goes on.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

PLOTS = ("reward", "components", "status", "length", "kl", "zero_spread", "time", "episodes", "episode_ends", "monitors")


class ReportError(ValueError):
    """The run directory cannot be reported on; the message says why."""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise ReportError(f"{run_dir}: no metrics.jsonl (is this a run directory?)")
    lines = path.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):  # a torn last line of a killed run
                break
            raise ReportError(f"{path}:{n}: not valid JSON") from None
    if not records:
        raise ReportError(f"{path}: no steps logged yet")
    return records


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) else math.nan


def smooth(ys: list[float], window: int) -> list[float]:
    """Trailing moving average ignoring NaN (a step without a value stays NaN)."""
    out = []
    for i, y in enumerate(ys):
        vals = [v for v in ys[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        out.append(sum(vals) / len(vals) if vals and not math.isnan(y) else math.nan)
    return out


def series(records: list[dict[str, Any]], *path: str) -> list[float]:
    """The value at ``path`` (nested keys) for every step, NaN where absent."""
    out = []
    for r in records:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        out.append(_num(v))
    return out


def _keys(records: list[dict[str, Any]], field: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        seen.update(dict.fromkeys(r.get(field) or {}))
    return list(seen)


def status_rates(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per step, the fraction of completions with each status (summed over tasks)."""
    per_step = []
    for r in records:
        counts: dict[str, float] = defaultdict(float)
        for by_status in (r.get("status_by_task") or {}).values():
            for status, n in by_status.items():
                if ":" not in status:  # "reward:status" entries count components, not completions
                    counts[status] += n
        total = sum(counts.values())
        per_step.append({s: n / total for s, n in counts.items()} if total else {})
    statuses = sorted({s for d in per_step for s in d})
    return {s: [d.get(s, 0.0) if d else math.nan for d in per_step] for s in statuses}


def _plot(ax, steps: list[int], ys: list[float], label: str, window: int) -> None:
    line = ax.plot(steps, ys, alpha=0.25, linewidth=1)[0]
    if window > 1:
        ax.plot(steps, smooth(ys, window), color=line.get_color(), linewidth=2, label=label)
    else:
        line.set_alpha(1.0)
        line.set_label(label)


def make_plots(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in records]
    window = max(1, len(records) // 20)
    written = []

    def figure(name: str, title: str, ylabel: str, curves: Iterable[tuple[str, list[float]]], stack: bool = False):
        curves = [(label, ys) for label, ys in curves if any(not math.isnan(y) for y in ys)]
        if not curves:
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        if stack:
            ax.stackplot(steps, *[[0.0 if math.isnan(y) else y for y in ys] for _, ys in curves],
                         labels=[label for label, _ in curves], alpha=0.8)
        else:
            for label, ys in curves:
                _plot(ax, steps, ys, label, window)
        ax.set(title=title, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    tasks = _keys(records, "reward_by_task")
    figure("reward", "reward (mean over completions)", "reward",
           [("all tasks", series(records, "reward_mean"))]
           + [(t, series(records, "reward_by_task", t, "mean")) for t in tasks])
    figure("components", "reward components (mean score)", "score",
           [(c, series(records, "reward_by_component", c)) for c in _keys(records, "reward_by_component")])
    figure("status", "completion status rates", "fraction", status_rates(records).items())
    figure("length", "completion length", "tokens",
           [("mean", series(records, "completion_len_mean")), ("max", series(records, "completion_len_max"))])
    figure("kl", "KL to the reference", "KL", [("kl", series(records, "kl"))])
    figure("zero_spread", "groups with zero reward spread; truncation", "fraction",
           [("zero-spread groups", series(records, "zero_spread_frac")),
            ("truncated completions", series(records, "truncated_frac"))])
    parts = [k for k in _keys(records, "time") if k != "total"]
    figure("time", "step time split", "seconds", [(k, series(records, "time", k)) for k in parts], stack=True)
    envs = _keys(records, "episodes_by_env")
    figure("episodes", "per episode, per environment", "mean per episode",
           [(f"{env} {what.replace('_', ' ')}", series(records, "episodes_by_env", env, what))
            for env in envs for what in ("turns", "tool_calls", "tool_errors")])
    figure("episode_ends", "episodes ended by a timeout or an environment error", "episodes",
           [(f"{env} {what.replace('env_', '')}", series(records, "episodes_by_env", env, what))
            for env in envs for what in ("env_timeouts", "env_errors")])
    figure("monitors", "reward-hacking signals (docs/monitors.md)", "value",
           [(label, series(records, "monitor", *path)) for label, path in monitor_series(records)])
    return written


def monitor_series(records: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    """(label, path under ``monitor``) of every numeric signal the run logged, per task (and component)."""
    seen: dict[tuple[str, ...], None] = {}
    for r in records:
        for task, sigs in (r.get("monitor") or {}).items():
            for sig, v in sigs.items():
                for comp in (v if isinstance(v, dict) else {None: v}):
                    seen[(task, sig) if comp is None else (task, sig, comp)] = None
    return [(" ".join(p), p) for p in seen]


def alarms_section(records: list[dict[str, Any]]) -> list[str]:
    """The monitor's alarms, first: each task and signal, the step it began, its worst value."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        for a in r.get("alarms") or []:
            key = (a["task"], a["signal"])
            seen = found.setdefault(key, {**a, "steps": 0, "worst": a["value"]})
            seen["steps"] += 1
            seen["last"] = r["step"]
            high = a["value"] >= a["threshold"]
            seen["worst"] = max(seen["worst"], a["value"]) if high else min(seen["worst"], a["value"])
    if not found:
        return []
    lines = ["## Alarms", "", "Reward-hacking signals past their thresholds (docs/monitors.md says what each means).", "",
             "| task | signal | began at step | last at step | steps alarmed | worst value | threshold |",
             "|---|---|---|---|---|---|---|"]
    for (task, signal), a in sorted(found.items(), key=lambda kv: kv[1]["first_step"]):
        lines.append(f"| {task} | {signal} | {a['first_step']} | {a['last']} | {a['steps']} | {a['worst']:g} | "
                     f"{a['threshold']:g} |")
    return lines + [""]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _mean(xs: list[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else math.nan


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def pass_at_k_section(run_dir: Path, evals: list[Path]) -> list[str]:
    """pass@k per task for the evaluations that drew K > 1 samples per prompt (``grpo-env eval --samples K``)."""
    rows = []
    for path in evals:
        data = _read_json(path) or {}
        for task, r in (data.get("results") or {}).items():
            ks = r.get("pass_at_k") if isinstance(r, dict) else None
            if ks:
                passes = ", ".join(f"pass@{k} {_fmt(v)}" for k, v in ks.items())
                temperature = _fmt(r.get("temperature"), "g")
                rows.append(f"| {path.stem[5:]} | {task} | {r.get('samples', '')} | {temperature} | {passes} | "
                            f"{_fmt(r.get('mean_reward'))} | {r.get('n', '')} |")
    if not rows:
        return []
    return ["## pass@k", "", "K samples per prompt; pass@k by the unbiased estimator over the K; mean reward over "
            "all K samples.", "", "| eval | task | K | temperature | pass@k | mean reward | n |",
            "|---|---|---|---|---|---|---|", *rows, ""]


def summary(run_dir: Path, records: list[dict[str, Any]], plots: list[Path]) -> str:
    recipe = _read_json(run_dir / "recipe.json") or {}
    lines = [f"# Run report: {recipe.get('name', run_dir.name)}", ""]
    lines += alarms_section(records)
    last = records[-1]
    n = max(1, len(records) // 10)
    head = [_num(r.get("reward_mean")) for r in records[:n]]
    tail = [_num(r.get("reward_mean")) for r in records[-n:]]
    total_s = sum(t for t in series(records, "time", "total") if not math.isnan(t))
    lines += [
        f"- steps: {last['step']} ({len(records)} logged), training time {total_s / 60:.1f} min",
        f"- reward (mean of first / last {n} steps): {_mean(head):.3f} -> {_mean(tail):.3f}",
        f"- last step: KL {_fmt(last.get('kl'), '.4f')}, completion length {_fmt(last.get('completion_len_mean'), '.1f')}, "
        f"zero-spread groups {_fmt(last.get('zero_spread_frac'), '.2f')}, skipped steps "
        f"{sum(bool(r.get('skipped')) for r in records)}",
        "",
    ]
    evals = sorted(run_dir.glob("eval_*.json"))
    if evals:
        lines += ["## Held-out evaluation", "", "| eval | model | task | accuracy | n |", "|---|---|---|---|---|"]
        for path in evals:
            data = _read_json(path) or {}
            for task, r in (data.get("results") or {}).items():
                lines.append(f"| {path.stem[5:]} | {data.get('model', '')} | {task} | {_fmt(r.get('accuracy'))} | {r.get('n', '')} |")
        lines.append("")
        lines += pass_at_k_section(run_dir, evals)
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    plugins = _read_json(run_dir / "plugins.json")
    if plugins:
        lines += ["## Plugins", "", "| plugin | distribution | version |", "|---|---|---|"]
        lines += [f"| {p['name']} | {p.get('distribution', '')} | {p.get('version', '')} |" for p in plugins]
        lines.append("")
    if recipe:
        lines += ["## Recipe", "", "```json", json.dumps(recipe, indent=2), "```", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> Path:
    """Regenerate ``RUN_DIR/report/``: the plots and ``report.md``. Returns the markdown path."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    plots = make_plots(records, out)
    md = out / "report.md"
    md.write_text(summary(run_dir, records, plots))
    return md
