"""The `grpo-env` command line: plugins, tasks, score, check, play, doctor, train, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grpo_env import __version__
from grpo_env.environment import Environment
from grpo_env.plugins import PluginError, Registry, get_registry
from grpo_env.recipe import RecipeError, apply_override

out = Console(soft_wrap=True)  # long paths and messages stay on one line (copyable, greppable)
err = Console(stderr=True, soft_wrap=True)


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _registry(warn: bool = True) -> Registry:
    try:
        reg = get_registry()
    except PluginError as e:
        raise CLIError(str(e)) from None
    if warn:
        for info in reg.failures:
            err.print(f"[yellow]warning:[/] plugin {info.name!r} is disabled: {info.error}", highlight=False)
    return reg


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--option key=value`` pairs as a dict (values parsed as JSON when they parse)."""
    data: dict[str, Any] = {}
    for pair in pairs:
        try:
            apply_override(data, pair)
        except RecipeError as e:
            raise CLIError(str(e).replace("--section.key", "key")) from None
    return data


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for i, col in enumerate(columns):  # names are never cut to an ellipsis, and the first column's not wrapped
        table.add_column(col, overflow="fold", no_wrap=i == 0)
    return table


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = _registry(warn=False)
    table = _table("grpo-env plugins", "plugin", "distribution", "version", "status", "tasks", "rewards")
    for info in sorted(reg.plugins.values(), key=lambda i: i.name):
        status = {"loaded": "[green]loaded[/]", "failed": "[red]failed[/]"}.get(info.status, info.status)
        if info.dropped:
            status += f", [red]{len(info.dropped)} task(s) dropped[/]"
        tasks = ", ".join(f"[red]{t} (dropped)[/]" if t in info.dropped else t for t in info.tasks)
        table.add_row(info.name, info.distribution, info.version, status, tasks, ", ".join(info.rewards))
    out.print(table)
    _print_plugin_problems(reg, blocked=True)
    return 1 if reg.failures or reg.dropped else 0


def _print_plugin_problems(reg: Registry, blocked: bool = False) -> None:
    """Why each plugin is not (fully) there: failed, blocked or replaced, and its dropped tasks
    (warnings, such as an optional component left out, are logged when the registry is built)."""
    from rich.markup import escape

    for info in sorted(reg.plugins.values(), key=lambda i: i.name):
        if info.status == "failed":
            out.print(f"[red]plugin {info.name} failed:[/] {escape(info.error)}", highlight=False)
        elif info.status != "loaded" and blocked:  # blocked or replaced: chosen, not a problem
            out.print(f"[dim]plugin {info.name} is {info.status}: {escape(info.error)}[/]", highlight=False)
        for task, why in info.dropped.items():
            out.print(f"[red]task {task} (plugin {info.name}) dropped:[/] {escape(why)}", highlight=False)


def cmd_tasks(args: argparse.Namespace) -> int:
    reg = _registry()
    if args.name is None:
        table = _table("tasks and environments", "task", "plugin", "rewards (weight)", "episodes", "description")
        for name, task in sorted(reg.tasks.items()):
            rewards = ", ".join(f"{r} ({w:g})" for r, w in task.rewards.items())
            table.add_row(name, reg.origin[("task", name)], rewards, _episode_summary(task), task.description)
        out.print(table)
        return 0
    task = _task(reg, args.name)
    try:
        opts = task.parse_options(_options(args.option))
        example = next(iter(task.examples(args.split, args.seed, opts)), None)
    except Exception as e:
        raise CLIError(f"task {task.name!r} could not produce an example: {type(e).__name__}: {e}") from None
    out.print(f"[bold]{task.name}[/] (plugin {reg.origin[('task', task.name)]}): {task.description}")
    out.print(f"rewards: {task.rewards}   splits: {', '.join(task.splits)}")
    if isinstance(task, Environment):
        out.print(f"environment: {_episode_summary(task)}; step timeout {task.step_timeout:g} s, "
                  f"episode timeout {task.episode_timeout:g} s", highlight=False)
        for tool in task.tools:
            out.print(f"[cyan]tool {tool.name}[/]: {tool.description} {json.dumps(tool.parameters)}", highlight=False)
    if example is None:
        out.print(f"split {args.split!r} yields no examples")
        return 0
    out.print(f"\nexample {example.id!r} ({args.split}, seed {args.seed}):")
    for m in example.prompt:
        out.print(f"[cyan]{m.role}:[/] {m.content}", highlight=False)
    out.print(f"[dim]gold: {json.dumps(example.gold, ensure_ascii=False)[:1000]}[/]", highlight=False)
    return 0


def _episode_summary(task) -> str:
    """'-' for a single-turn task; an environment's turn limit and tools."""
    if not isinstance(task, Environment):
        return "-"
    tools = "tools: " + ", ".join(t.name for t in task.tools) if task.tools else "no tools"
    per_example = " (or an example's own limit)" if task.turn_limit is not None else ""
    return f"up to {task.max_turns} turns{per_example}; {tools}"


def _task(reg: Registry, name: str):
    try:
        return reg.task(name)
    except PluginError as e:
        raise CLIError(str(e)) from None


def _status_table(title: str, counts: dict[str, int]) -> Table:
    table = _table(title, "status", "rows")
    for status, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(status, str(n))
    table.add_row("[bold]total[/]", str(sum(counts.values())))
    return table


def cmd_score(args: argparse.Namespace) -> int:
    from grpo_env.scorefile import INVALID, score_file
    from grpo_env.scoring import ScoringService

    reg = _registry()
    task = _task(reg, args.task)
    src = Path(args.input)
    if not src.is_file():
        raise CLIError(f"{src}: no such input file")
    try:
        options = task.parse_options(_options(args.option))
    except ValueError as e:
        raise CLIError(f"task {task.name!r}: invalid options: {e}") from None
    dst = Path(args.output) if args.output else src.with_name(src.stem + ".scored.jsonl")
    with ScoringService(reg.rewards, workers=args.workers) as service:
        counts = score_file(task, task.rewards, src, dst, service, options)
    out.print(_status_table(f"{task.name}: {src} -> {dst}", counts))
    if counts.get(INVALID):
        err.print(f"{counts[INVALID]} invalid row(s): see their 'error' field in {dst}")
    if counts.get("error"):  # a reward or the sandbox failed: these rows carry no score
        err.print(f"{counts['error']} row(s) scored 'error' (the reward or its sandbox failed, not the completion): "
                  f"see their details in {dst}")
    return 1 if counts.get(INVALID) or counts.get("error") else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check the named tasks, or everything: then a dropped task or a failed plugin fails too."""
    from rich.markup import escape

    from grpo_env.check import check_environment, check_task
    from grpo_env.episodes import EpisodeHost
    from grpo_env.scoring import ScoringService

    reg = _registry(warn=bool(args.names))
    names = args.names or sorted(reg.tasks)
    tasks = [_task(reg, n) for n in names]
    dropped = [] if args.names else reg.dropped
    broken = [] if args.names else reg.failures
    if not tasks and not dropped and not broken:
        raise CLIError("no tasks registered: install a plugin (see `grpo-env plugins`)")
    options = _options(args.option)
    for t in tasks if options else []:
        try:
            t.parse_options(options)
        except ValueError as e:
            raise CLIError(f"task {t.name!r}: invalid options: {e}") from None
    results = []
    if tasks:
        envs = {t.name: (t, t.rewards) for t in tasks if isinstance(t, Environment)}
        with ScoringService(reg.rewards, workers=args.workers) as service, \
                EpisodeHost(envs, service, workers=args.workers) as host:
            results = [check_environment(t, reg, host, options) if t.name in envs
                       else check_task(t, reg, service, options) for t in tasks]
    probed = any(r.no_solution is not None for r in results)  # a column only when a task offers probes
    table = _table("grpo-env check", "task", "plugin", "fixtures", "passed", "deterministic",
                   *(["no-solution credit"] if probed else []), "result")
    for r in results:  # a flagged task's failures are known (its plugin's conformance check): reported, refused in training
        verdict = "[green]ok[/]" if r.ok else "[yellow]flagged[/]" if r.flagged else "[red]FAIL[/]"
        if r.weak:  # a warning about the examples, not a failure of the task's code: the exit status is unchanged
            verdict += ", [yellow]weak tests[/]"
        fixtures = f"{r.fixtures}" + (f" ({len(r.skipped)} skipped)" if r.skipped else "")
        credit = "-" if r.no_solution is None else f"{r.no_solution:.2f} ({r.probed} examples)"
        table.add_row(r.task, reg.origin[("task", r.task)], fixtures, str(r.passed), str(r.deterministic),
                      *([credit] if probed else []), verdict)
    for plugin, task, _ in dropped:
        table.add_row(task, plugin, "-", "-", "-", *(["-"] if probed else []), "[red]DROPPED[/]")
    out.print(table)
    for r in results:
        for w in r.weak:
            out.print(f"[yellow]{r.task}: warning: weak tests:[/] {escape(w)}", highlight=False)
        if r.flagged:
            out.print(f"[yellow]{r.task}[/]: flagged, refused in training unless the recipe sets allow_flagged: "
                      f"{escape('; '.join(r.flagged))}", highlight=False)
        for p in r.problems:
            out.print(f"[{'yellow' if r.flagged else 'red'}]{r.task}[/]: {escape(p)}", highlight=False)
        for s in r.skipped:
            out.print(f"[dim]{r.task}: skipped {escape(s)}[/]", highlight=False)
    if not args.names:
        _print_plugin_problems(reg)
    return 0 if all(r.ok or r.flagged for r in results) and not broken and not dropped else 1


def cmd_play(args: argparse.Namespace) -> int:
    """Play one episode of an environment in the terminal: you type the assistant's turns."""
    from grpo_env.check import describe
    from grpo_env.episodes import EpisodeHost
    from grpo_env.scoring import ScoringService

    reg = _registry()
    env = _task(reg, args.name)
    if not isinstance(env, Environment):
        raise CLIError(f"{env.name!r} is a single-turn task, not an environment (`grpo-env tasks {env.name}` shows "
                       "its prompt; `grpo-env tasks` lists the environments)")
    try:
        example = next(iter(env.examples(args.split, args.seed, env.parse_options(_options(args.option)))), None)
    except Exception as e:
        raise CLIError(f"environment {env.name!r} could not produce an example: {type(e).__name__}: {e}") from None
    if example is None:
        raise CLIError(f"environment {env.name!r}: split {args.split!r} yields no examples")
    example = example.model_copy(update={"task": env.name, "tools": env.tool_specs()})
    out.print(f"[bold]{env.name}[/]: {_episode_summary(env)}. One line per turn (write \\n for a newline); "
              "end of input stops the episode.", highlight=False)
    for tool in env.tools:
        out.print(f"[cyan]tool {tool.name}[/]: {tool.description} {json.dumps(tool.parameters)}", highlight=False)
    for m in example.prompt:
        out.print(f"[cyan]{m.role}:[/] {escape(m.content)}", highlight=False)
    rewards = {n: reg.reward(n) for n in env.rewards if n != env.name}
    with ScoringService(rewards, workers=1) as service, EpisodeHost({env.name: (env, env.rewards)}, service) as host:
        batch = host.open([example])
        session = batch.sessions[0]
        turn = 0
        limit = env.turns_for(example)
        while session.open and turn < limit:
            out.print(f"[bold]assistant {turn + 1}/{limit}>[/] ", end="")
            line = sys.stdin.readline()
            if not line:
                out.print()
                break
            turn += 1
            obs = batch.step([0], [line.rstrip("\n").replace("\\n", "\n")])[0]
            for m in obs or []:
                out.print(f"[green]{m.role}:[/] {escape(m.content)}", highlight=False)
        if session.open:
            batch.stop([0], "turns")
        stats = dict(session.stats.as_dict())
        scored = batch.judge()[0]
    out.print(f"episode ended by {stats['ended_by']} after {turn} turn(s), {stats['tool_calls']} tool call(s), "
              f"{stats['tool_errors']} tool error(s)", highlight=False)
    out.print(f"reward {scored.total:g} ({scored.status}): "
              + escape("; ".join(describe(n, o) for n, o in scored.components.items())), highlight=False)
    return 0


def cmd_rewards(args: argparse.Namespace) -> int:
    """List rewards, or describe one (what it checks, gold keys, scores, statuses, its tasks)."""
    from grpo_env.rewards import reward_markdown, rewards_page, score_range

    reg = _registry()
    origin = {n: reg.origin[("reward", n)] for n in reg.rewards}
    if args.name is not None:
        reward = reg.reward(args.name)
        users = sorted(t for t, task in reg.tasks.items() if reward.name in task.rewards)
        out.print(reward_markdown(reward, origin[reward.name], escape=args.markdown), markup=False, highlight=False)
        if not args.markdown:
            out.print(f"used by tasks: {', '.join(users) or 'none'}", highlight=False)
        return 0
    if args.markdown:
        out.print(rewards_page(reg.rewards, origin, set(origin.values())), markup=False, highlight=False, end="")
        return 0
    table = _table("rewards", "reward", "plugin", "score", "timeout (s)", "what it checks")
    for name, reward in sorted(reg.rewards.items()):
        described = reward.description or "[yellow](no description)[/]"
        table.add_row(name, origin[name], score_range(reward), f"{reward.timeout:g}", described)
    out.print(table)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import platform

    out.print(f"grpo-env {__version__} on Python {platform.python_version()}, {platform.platform()}")
    try:
        from grpo_env.sandbox import isolation_report, self_test
    except ImportError as e:  # the sandbox is optional for non-code tasks
        out.print(f"sandbox: unavailable ({e})")
        return 1
    table = _table("sandbox isolation on this machine", "feature", "granted", "detail")
    for feature, granted, detail in isolation_report():
        table.add_row(feature, "[green]yes[/]" if granted else "[red]no[/]", detail)
    out.print(table)
    checks = self_test()  # the same start path as scoring: a real template process and run
    table = _table("a sandbox started as code.tests starts it", "check", "ok", "detail")
    for check, ok, detail in checks:
        table.add_row(check, "[green]yes[/]" if ok else "[red]no[/]", detail)
    out.print(table)
    reg = _registry()
    out.print(f"{len(reg.plugins)} plugins, {len(reg.tasks)} tasks, {len(reg.rewards)} rewards")
    return 0 if checks[0][1] else 1


def cmd_train(args: argparse.Namespace) -> int:
    from grpo_env.train import main_train

    return main_train(args.recipe, args.overrides, resume=args.resume)


def cmd_eval(args: argparse.Namespace) -> int:
    from grpo_env.train import main_eval

    return main_eval(args.recipe, args.model, args.overrides, samples=args.samples, temperature=args.temperature)


def cmd_report(args: argparse.Namespace) -> int:
    from grpo_env.report import ReportError, write_report

    try:
        md = write_report(args.run_dir)
    except ReportError as e:
        raise CLIError(str(e)) from None
    out.print(f"report: {md} (plots beside it)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Scaffold a plugin distribution; refuse a name an installed plugin, task or reward already has."""
    from grpo_env.scaffold import ScaffoldError, names, target_dir, write_plugin

    try:
        subs = names(args.name)
        target_dir(args.name, args.dir)  # before the registry loads: a quick answer to a quick mistake
    except ScaffoldError as e:
        raise CLIError(str(e)) from None
    reg = _registry(warn=False)
    taken = [f"{kind} {n!r}" for kind, n, table in (("plugin", args.name, reg.plugins), ("task", args.name, reg.tasks),
                                                    ("reward", f"{args.name}.exact", reg.rewards)) if n in table]
    if taken:
        raise CLIError(f"cannot create plugin {args.name!r}: {', '.join(taken)} already exist(s) "
                       "(see `grpo-env plugins`); choose another name")
    try:
        root, files = write_plugin(args.name, args.dir)
    except (ScaffoldError, OSError) as e:
        raise CLIError(str(e)) from None
    out.print(f"created {subs['dist']} in {root}/:", highlight=False)
    for f in files:
        out.print(f"  {f.relative_to(root)}", highlight=False)
    out.print(f"next: pip install -e {root} && grpo-env check {args.name} && python -m pytest {root}/tests",
              highlight=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpo-env", description="GRPO training on verifiable tasks from plugins.")
    p.add_argument("--version", action="version", version=f"grpo-env {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("plugins", help="list plugins, their distributions and what they registered")
    s.set_defaults(fn=cmd_plugins)

    s = sub.add_parser("tasks", help="list tasks, or show one with a rendered example prompt")
    s.add_argument("name", nargs="?")
    s.add_argument("--split", default="train")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a task option")
    s.set_defaults(fn=cmd_tasks)

    s = sub.add_parser("score", help="score a JSONL file of rows with a 'completion' field")
    s.add_argument("task")
    s.add_argument("--input", "-i", required=True)
    s.add_argument("--output", "-o", help="default: INPUT.scored.jsonl")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a task option")
    s.set_defaults(fn=cmd_score)

    s = sub.add_parser("check", help="run tasks' fixtures through the scoring service (twice); warn of weak tests")
    s.add_argument("names", nargs="*")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option for its example streams and probes (e.g. source=FILE: check a data set)")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("play", help="play one episode of an environment in the terminal, typing the assistant's turns")
    s.add_argument("name")
    s.add_argument("--split", default="train")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="an environment option")
    s.set_defaults(fn=cmd_play)

    s = sub.add_parser("rewards", help="list rewards, or describe one: what it checks, gold keys, scores, statuses")
    s.add_argument("name", nargs="?")
    s.add_argument("--markdown", action="store_true", help="print markdown (the format of docs/rewards.md)")
    s.set_defaults(fn=cmd_rewards)

    s = sub.add_parser("doctor", help="report the sandbox isolation this machine grants")
    s.set_defaults(fn=cmd_doctor)

    s = sub.add_parser("train", help="train with a recipe: grpo-env train RECIPE [--train.lr=1e-5 ...]")
    s.add_argument("recipe")
    s.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("eval", help="accuracy per task on the held-out split")
    s.add_argument("recipe")
    s.add_argument("--model", help="a checkpoint or model directory (default: the recipe's model)")
    s.add_argument("--samples", type=int, default=1, metavar="K",
                   help="K samples per prompt: pass@1 .. pass@K and the mean reward (default 1: greedy)")
    s.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1.0 when K > 1)")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("report", help="regenerate a run directory's plots and markdown summary")
    s.add_argument("run_dir")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("init", help="scaffold a plugin distribution: task, reward, fixtures, tests, recipe")
    s.add_argument("name", help="the plugin, task and entry-point name (lower case, digits, '_')")
    s.add_argument("--dir", help="where to write it (default: ./grpo-env-NAME; must not exist or be empty)")
    s.set_defaults(fn=cmd_init)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if args.command in ("train", "eval"):
        bad = [a for a in extra if not (a.startswith("--") and "=" in a)]
        if bad:
            parser.error(f"unrecognised arguments: {' '.join(bad)} (recipe overrides look like --train.lr=1e-5)")
        args.overrides = extra
    elif extra:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        return args.fn(args)
    except (CLIError, RecipeError, PluginError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
