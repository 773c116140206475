"""The `grpo-env` command line: plugins, tasks, score, check, play, doctor, train, eval."""

from __future__ import annotations

import argparse
import difflib
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


UNBOUNDED = 1_000_000  # the width a table is measured at when nothing may wrap


def _print_table(table: Table) -> None:
    """A table on stdout. In a terminal it fits the window (long cells wrap); in a pipe or a file
    (``grpo-env rewards | grep repetition_penalty``) the table is as wide as its longest cells, so no
    cell wraps: every name, and every row, stays whole on one line for grep, awk and diff."""
    if out.is_terminal:
        out.print(table)
        return
    width = out.measure(table, options=out.options.update_width(UNBOUNDED)).maximum
    kept = out.width
    out.width = max(kept, width)
    try:
        out.print(table)
    finally:
        out.width = kept


def _names(names: Sequence[str], dropped: dict[str, str]) -> str:
    """A cell listing names, each dropped one marked."""
    return ", ".join(f"[red]{n} (dropped)[/]" if n in dropped else n for n in names)


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = _registry(warn=False)
    table = _table("grpo-env plugins", "plugin", "distribution", "version", "status", "tasks", "environments",
                   "rewards", "monitors")
    for info in sorted(reg.plugins.values(), key=lambda i: i.name):
        status = {"loaded": "[green]loaded[/]", "failed": "[red]failed[/]"}.get(info.status, info.status)
        if info.dropped:
            status += f", [red]{len(info.dropped)} task(s) dropped[/]"
        table.add_row(info.name, info.distribution, info.version, status, _names(info.tasks, info.dropped),
                      _names(info.environments, info.dropped), ", ".join(info.rewards), ", ".join(info.monitors))
    _print_table(table)
    _print_plugin_problems(reg, blocked=True)
    return 1 if reg.failures or reg.dropped else 0


def _print_plugin_problems(reg: Registry, blocked: bool = False) -> None:
    """Why each plugin is not (fully) there: failed, blocked or replaced, and its dropped tasks
    (warnings, such as an optional component left out, are logged when the registry is built)."""

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
        _print_table(table)
        return 0
    task = _task(reg, args.name)
    opts = _parse_options(task, args.option)
    try:
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
        out.print(f"[cyan]{m.role}:[/] {escape(m.content)}", highlight=False)
    out.print(f"[dim]gold: {escape(json.dumps(example.gold, ensure_ascii=False)[:1000])}[/]", highlight=False)
    if isinstance(task, Environment) or args.model or args.system_prompt is not None:
        _print_seen(example, task, args.model, args.system_prompt)
    return 0


class _MessagesOnly:
    """A stand-in tokenizer whose chat template renders nothing but the messages it is given (as
    JSON), and no tools: :func:`grpo_env.engine.sampling.render_prompt` through it gives the exact
    messages a chat template that does not render tools receives, the tool fallback included."""

    chat_template = "grpo-env: the messages only"

    def apply_chat_template(self, messages, tokenize=False, **_: Any) -> str:
        return json.dumps(list(messages))


def seen_messages(example, tools: list[dict[str, Any]], system_prompt: str | None = None) -> list[dict[str, str]]:
    """The messages of ``example``'s prompt as a chat template that does not render tools gets them
    (SmolLM2's): ``system_prompt`` (``[train] system_prompt``) as a first system message when the
    prompt has none, the tools' specs and call format appended to the system message (the fallback),
    a final assistant message (a prefill) left out: it is put after the opened turn, verbatim."""
    from grpo_env.engine.sampling import prefill_of, render_prompt

    ex = example.model_copy(update={"tools": tools})
    text = render_prompt(ex, _MessagesOnly(), True, system_prompt)
    prefill = prefill_of(ex)
    return json.loads(text[: len(text) - len(prefill)] if prefill else text)


def _print_seen(example, task, model: str | None, system_prompt: str | None) -> None:
    """What the model is shown: with ``model``, its tokenizer's rendering of the prompt, verbatim;
    without, the system message of the tool fallback (chat templates without tools), said so."""
    tools = task.tool_specs() if isinstance(task, Environment) else []
    if model:
        from grpo_env.engine import chat
        from grpo_env.engine.config import ModelConfig
        from grpo_env.engine.model import ModelError, load_tokenizer
        from grpo_env.engine.sampling import render_prompt

        try:
            tok = load_tokenizer(ModelConfig(name=model))
        except ModelError as e:
            raise CLIError(str(e)) from None
        if not chat.has_template(tok):
            how = "it has no chat template: plain text" + (", the tools' system message first" if tools else "")
        elif tools and chat.probe(tok)[0]:
            how = "its chat template renders the tools"
        elif tools:
            how = "its chat template does not render tools: they are in the system message (the fallback)"
        else:
            how = "its chat template"
        ex = example.model_copy(update={"tools": tools})
        out.print(f"\n[bold]the prompt as {escape(model)}'s tokenizer renders it[/] ({escape(how)}), between the lines:",
                  highlight=False)
        out.print("-" * 40 + "\n" + escape(render_prompt(ex, tok, True, system_prompt)) + "\n" + "-" * 40,
                  highlight=False)
        return
    messages = seen_messages(example, tools, system_prompt)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    if tools:
        what = ("the system message the model sees under a chat template that does not render tools (SmolLM2's), "
                "with the tool fallback; no model given, so this is the fallback text that would be used (a "
                "template that renders tools offers the same specs its own way; --model NAME shows the exact prompt)")
    else:
        what = "the system message the model sees (--model NAME shows the exact prompt)"
    if system_prompt is not None:
        what += "; --system-prompt stands for [train] system_prompt"
    out.print(f"\n[bold]system message[/] ({escape(what)}), between the lines:", highlight=False)
    out.print("-" * 40 + "\n" + (escape(system) if system is not None else "(none)") + "\n" + "-" * 40,
              highlight=False)


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


def _parse_options(task, pairs: Sequence[str] | dict[str, Any]) -> dict[str, Any]:
    """A task's validated options from ``--option`` pairs (or a dict of them); a bad one is a CLIError
    naming the task and the option (a close name for a misspelled one)."""
    try:
        return task.parse_options(pairs if isinstance(pairs, dict) else _options(pairs))
    except ValueError as e:
        raise CLIError(f"task {task.name!r}: invalid options: {e}") from None


def _status_table(title: str, counts: dict[str, int]) -> Table:
    table = _table(title, "status", "rows")
    for status, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(status, str(n))
    table.add_row("[bold]total[/]", str(sum(counts.values())))
    return table


def cmd_score(args: argparse.Namespace) -> int:
    from grpo_env.cli.scorefile import INVALID, score_file
    from grpo_env.scoring import ScoringService

    reg = _registry()
    task = _task(reg, args.task)
    src = Path(args.input)
    if not src.is_file():
        raise CLIError(f"{src}: no such input file")
    options = _parse_options(task, args.option)
    dst = Path(args.output) if args.output else src.with_name(src.stem + ".scored.jsonl")
    with ScoringService(reg.rewards, workers=args.workers) as service:
        counts = score_file(task, task.rewards, src, dst, service, options)
    _print_table(_status_table(f"{task.name}: {src} -> {dst}", counts))
    if counts.get(INVALID):
        err.print(f"{counts[INVALID]} invalid row(s): see their 'error' field in {dst}")
    if counts.get("error"):  # a reward or the sandbox failed: these rows carry no score
        err.print(f"{counts['error']} row(s) scored 'error' (the reward or its sandbox failed, not the completion): "
                  f"see their details in {dst}")
    return 1 if counts.get(INVALID) or counts.get("error") else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check the named tasks, or everything: then a dropped task or a failed plugin fails too."""

    from grpo_env.cli.check import check_environment, check_task
    from grpo_env.episodes import EpisodeHost
    from grpo_env.scoring import ScoringService

    reg = _registry(warn=bool(args.names))
    names = list(dict.fromkeys(args.names)) or sorted(reg.tasks)
    tasks, missing = [], {}  # missing: a named task that is unknown or dropped -> why (checked: the others)
    for n in names:
        try:
            tasks.append(reg.task(n))
        except PluginError as e:
            missing[n] = str(e)
    if args.names and not tasks:  # nothing to check at all: an error, as for any command given no task
        raise CLIError("; ".join(missing.values()))
    dropped = [] if args.names else reg.dropped
    broken = [] if args.names else reg.failures
    if not tasks and not dropped and not broken:
        raise CLIError("no tasks registered: install a plugin (see `grpo-env plugins`)")
    options = _options(args.option)
    for t in tasks if options else []:
        _parse_options(t, options)
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
    for name, why in missing.items():  # named, not checked: unavailable (dropped, its plugin failed) or unknown
        verdict = "[red]UNAVAILABLE[/]" if " is unavailable: " in why else "[red]UNKNOWN[/]"
        table.add_row(name, "-", "-", "-", "-", *(["-"] if probed else []), verdict)
    _print_table(table)
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
    for name, why in missing.items():
        out.print(f"[red]{escape(name)}[/]: not checked: {escape(why)}", highlight=False)
    if not args.names:
        _print_plugin_problems(reg)
    return 0 if all(r.ok or r.flagged for r in results) and not broken and not dropped and not missing else 1


def cmd_play(args: argparse.Namespace) -> int:
    """Play one episode of an environment in the terminal: you type the assistant's turns."""
    from grpo_env.cli.check import describe
    from grpo_env.episodes import EpisodeHost
    from grpo_env.scoring import ScoringService

    reg = _registry()
    env = _task(reg, args.name)
    if not isinstance(env, Environment):
        raise CLIError(f"{env.name!r} is a single-turn task, not an environment (`grpo-env tasks {env.name}` shows "
                       "its prompt; `grpo-env tasks` lists the environments)")
    options = _parse_options(env, args.option)
    try:
        example = next(iter(env.examples(args.split, args.seed, options)), None)
    except Exception as e:
        raise CLIError(f"environment {env.name!r} could not produce an example: {type(e).__name__}: {e}") from None
    if example is None:
        raise CLIError(f"environment {env.name!r}: split {args.split!r} yields no examples")
    example = example.model_copy(update={"task": env.name, "tools": env.tool_specs()})
    out.print(f"[bold]{env.name}[/]: {_episode_summary(env)}. One line per turn (write \\n for a newline); "
              "end of input stops the episode.", highlight=False)
    for tool in env.tools:
        out.print(f"[cyan]tool {tool.name}[/]: {tool.description} {json.dumps(tool.parameters)}", highlight=False)
    if args.model:  # the exact prompt, as the model's tokenizer renders it
        _print_seen(example, env, args.model, args.system_prompt)
    else:  # the model's messages, its system message as a template without tools gets it
        from grpo_env.engine.sampling import prefill_of

        for m in seen_messages(example, env.tool_specs(), args.system_prompt):
            out.print(f"[cyan]{m['role']}:[/] {escape(m['content'])}", highlight=False)
        if prefill_of(example):  # the assistant's turn starts with it
            out.print(f"[cyan]assistant (prefill):[/] {escape(prefill_of(example))}", highlight=False)
        if env.tools:
            out.print("[dim](the system message above is the tool fallback, what a chat template that does not "
                      "render tools gets, SmolLM2's; --model NAME shows the exact prompt of a model)[/]",
                      highlight=False)
    rewards = {n: reg.reward(n) for n in env.rewards if n != env.name}
    with ScoringService(rewards, workers=1) as service, EpisodeHost({env.name: (env, env.rewards)}, service) as host:
        batch = host.open([example])
        session = batch.sessions[0]
        turn = 0
        limit = env.turns_for(example)
        input_ended = False
        while session.open and turn < limit:
            out.print(f"[bold]assistant {turn + 1}/{limit}>[/] ", end="")
            line = sys.stdin.readline()
            if not line:
                out.print()
                input_ended = True
                break
            turn += 1
            obs = batch.step([0], [line.rstrip("\n").replace("\\n", "\n")])[0]
            for m in obs or []:
                out.print(f"[green]{m.role}:[/] {escape(m.content)}", highlight=False)
        if session.open:
            batch.stop([0], "turns")
        stats = dict(session.stats.as_dict())
        scored = batch.judge()[0]
    # the input ran out before the episode did: say so (the environment judged it as stopped at the turn limit)
    how = "stopped (input ended)" if input_ended and stats["ended_by"] == "turns" else f"ended by {stats['ended_by']}"
    out.print(f"episode {how} after {turn} turn(s), {stats['tool_calls']} tool call(s), "
              f"{stats['tool_errors']} tool error(s)", highlight=False)
    out.print(f"reward {scored.total:g} ({scored.status}): "
              + escape("; ".join(describe(n, o) for n, o in scored.components.items())), highlight=False)
    for name, o in scored.components.items():  # what the outcome says besides its score: guesses, tests passed ...
        details = {k: v for k, v in o.details.items() if k != "traceback"}
        if details:
            out.print(f"[dim]{escape(name)} details:[/] {escape(json.dumps(details, ensure_ascii=False, default=str))}",
                      highlight=False)
    if args.reveal:
        out.print(f"gold: {escape(json.dumps(example.gold, ensure_ascii=False, default=str))}", highlight=False)
    return 0


def cmd_rewards(args: argparse.Namespace) -> int:
    """List rewards, or describe one (what it checks, gold keys, scores, statuses, its tasks)."""
    from grpo_env.rewards import environment_markdown, outcome_range, reward_markdown, rewards_page, score_range

    reg = _registry()
    origin = {n: reg.origin[("reward", n)] for n in reg.rewards}
    envs = reg.environments
    if args.name is not None and args.name not in reg.rewards and args.name in envs:  # its own outcome
        env = envs[args.name]
        out.print(environment_markdown(env, reg.origin[("task", env.name)], escape=args.markdown), markup=False,
                  highlight=False)
        if not args.markdown:
            out.print(f"the environment itself: grpo-env tasks {env.name}", highlight=False)
        return 0
    if args.name is not None:
        reward = _reward(reg, args.name)
        users = sorted(t for t, task in reg.tasks.items() if reward.name in task.rewards)
        out.print(reward_markdown(reward, origin[reward.name], escape=args.markdown), markup=False, highlight=False)
        if not args.markdown:
            out.print(f"used by tasks: {', '.join(users) or 'none'}", highlight=False)
        return 0
    if args.markdown:
        out.print(rewards_page(reg.rewards, origin, set(origin.values())), markup=False, highlight=False, end="")
        return 0
    table = _table("rewards, and environments' own outcomes", "reward", "plugin", "score", "timeout (s)",
                   "what it checks")
    rows = [(name, origin[name], score_range(r), f"{r.timeout:g}",
             escape(r.description) or "[yellow](no description)[/]") for name, r in reg.rewards.items()]
    rows += [(name, reg.origin[("task", name)], outcome_range(env), f"{env.episode_timeout:g} (episode)",
              "[cyan](an environment's own outcome)[/] " + escape(env.description)) for name, env in envs.items()]
    for row in sorted(rows):
        table.add_row(*row)
    _print_table(table)
    return 0


def _reward(reg: Registry, name: str):
    """A registered reward; a name close to an environment's (whose own outcome it may mean) says so."""
    try:
        return reg.reward(name)
    except PluginError as e:
        best = difflib.get_close_matches(name, [*reg.rewards, *reg.environments], n=1)  # the closest of either
        if best and best[0] in reg.environments:
            raise CLIError(f"no reward named {name!r} (did you mean {best[0]!r}, "
                           "an environment's own outcome?)") from None
        raise CLIError(str(e)) from None


def cmd_doctor_ray(args: argparse.Namespace) -> int:
    """``grpo-env doctor --ray``: every node of the Ray cluster, its grpo-env and sandbox isolation;
    exit 1 when a node would be refused for scoring."""
    from grpo_env import __version__
    from grpo_env.scoring.ray import ClusterError, connect, probe_nodes

    try:
        connect(args.address)
    except ClusterError as e:
        raise CLIError(str(e)) from None
    reports = probe_nodes()
    if not reports:
        raise CLIError("the Ray cluster has no live node with CPUs to score on")
    table = _table(f"Ray cluster at {args.address}: {len(reports)} nodes with CPUs", "node", "grpo-env", "sandbox",
                   "scores", "why not")
    refused = 0
    for r in reports:
        why = r.problem(__version__, args.allow_unisolated)
        refused += bool(why)
        sandbox = "namespaces" if r.isolated else (f"fallback (missing: {r.missing})" if not r.error else "-")
        table.add_row(f"{r.address} {r.node_id[:12]}", r.version or "-", sandbox,
                      "[red]no[/]" if why else "[green]yes[/]", why)
    _print_table(table)
    if refused:
        out.print(f"{refused} of {len(reports)} nodes would be refused for scoring ([scoring] backend = \"ray\")")
    return 1 if refused else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import platform

    if args.ray:
        return cmd_doctor_ray(args)
    out.print(f"grpo-env {__version__} on Python {platform.python_version()}, {platform.platform()}")
    try:
        from grpo_env.sandbox import isolation_report, self_test
    except ImportError as e:  # the sandbox is optional for non-code tasks
        out.print(f"sandbox: unavailable ({e})")
        return 1
    table = _table("sandbox isolation on this machine", "feature", "granted", "detail")
    for feature, granted, detail in isolation_report():
        table.add_row(feature, "[green]yes[/]" if granted else "[red]no[/]", detail)
    _print_table(table)
    checks = self_test()  # the same start path as scoring: a real template process and run
    table = _table("a sandbox started as code.tests starts it", "check", "ok", "detail")
    for check, ok, detail in checks:
        table.add_row(check, "[green]yes[/]" if ok else "[red]no[/]", detail)
    _print_table(table)
    reg = _registry()
    out.print(f"{len(reg.plugins)} plugins, {len(reg.tasks)} tasks, {len(reg.rewards)} rewards")
    from grpo_env.engine import cpu_matmul

    try:
        kernels = cpu_matmul.choice()
    except cpu_matmul.MatmulConfigError as e:
        out.print(f"[red]fp32 products on the CPU: {e}[/]")
        return 1
    out.print("fp32 products on the CPU (this machine's fastest, GRPO_ENV_CPU_MATMUL forces one): training "
              f"{kernels['train']}, decode {kernels['decode']}, decode LM head {kernels['decode_head']}; "
              f"chosen for {cpu_matmul.machine_key()}, kept in {cpu_matmul.cache_path()}")
    return 0 if checks[0][1] else 1


def cmd_train(args: argparse.Namespace) -> int:
    from grpo_env.cli.train import main_train

    return main_train(args.recipe, args.overrides, resume=args.resume)


def cmd_eval(args: argparse.Namespace) -> int:
    from grpo_env.cli.train import main_eval

    return main_eval(args.recipe, args.model, args.overrides, samples=args.samples, temperature=args.temperature)


def cmd_report(args: argparse.Namespace) -> int:
    from grpo_env.cli.report import ReportError, write_report

    try:
        md = write_report(args.run_dir)
    except ReportError as e:
        raise CLIError(str(e)) from None
    out.print(f"report: {md} (plots beside it)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Scaffold a plugin distribution; refuse a name an installed plugin, task or reward already has."""
    from grpo_env.cli.scaffold import ScaffoldError, names, target_dir, write_plugin

    try:
        subs = names(args.name)
        target_dir(args.name, args.dir)  # before the registry loads: a quick answer to a quick mistake
    except ScaffoldError as e:
        raise CLIError(str(e)) from None
    reg = _registry(warn=False)
    names_of = [("plugin", args.name, reg.plugins), ("task", args.name, reg.tasks)]
    if not args.environment:  # an environment plugin registers no reward
        names_of.append(("reward", f"{args.name}.exact", reg.rewards))
    taken = [f"{kind} {n!r}" for kind, n, table in names_of if n in table]
    if taken:
        raise CLIError(f"cannot create plugin {args.name!r}: {', '.join(taken)} already exist(s) "
                       "(see `grpo-env plugins`); choose another name")
    try:
        root, files = write_plugin(args.name, args.dir, environment=args.environment)
    except (ScaffoldError, OSError) as e:
        raise CLIError(str(e)) from None
    out.print(f"created {subs['dist']} in {root}/:", highlight=False)
    for f in files:
        out.print(f"  {f.relative_to(root)}", highlight=False)
    out.print(f"next: pip install -e {root} && grpo-env check {args.name} && python -m pytest {root}/tests",
              highlight=False)
    return 0


OVERRIDES = ("recipe overrides: any recipe key as --section.key=value after the recipe, e.g. --train.lr=1e-5 "
             "--train.steps=5 --tasks.0.options.max_turns=3 --tasks.0.rewards.\"math.answer\"=2 (values are JSON "
             "when they parse; docs/recipes.md lists every key)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grpo-env", description="GRPO training on verifiable tasks from plugins.")
    p.add_argument("--version", action="version", version=f"grpo-env {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="one of these (grpo-env COMMAND --help: its arguments and options)")

    def command(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".", **kw)

    def option(s: argparse.ArgumentParser, what: str) -> None:
        s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help=f"{what} (repeatable; the value is JSON when it parses)")

    def examples(s: argparse.ArgumentParser, what: str) -> None:
        s.add_argument("--split", default="train", help=f"the split {what} (default: train)")
        s.add_argument("--seed", type=int, default=0, help="the seed of the example stream (default: 0)")

    def workers(s: argparse.ArgumentParser) -> None:
        s.add_argument("--workers", type=int, default=2, help="scoring worker processes (default: 2)")

    s = command("plugins", "list plugins, their distributions and what they registered (tasks, environments, "
                "rewards, monitors)")
    s.set_defaults(fn=cmd_plugins)

    def seen(s: argparse.ArgumentParser) -> None:
        s.add_argument("--model", metavar="NAME",
                       help="show the prompt exactly as this model's tokenizer renders it (a recipe's [model] name: "
                            "smollm2, a hub id or a directory); without it, an environment shows the system message "
                            "of the tool fallback")
        s.add_argument("--system-prompt", metavar="TEXT",
                       help="a recipe's [train] system_prompt, to see how it combines with the prompt and the tools")

    s = command("tasks", "list tasks and environments, or show one with a rendered example prompt")
    s.add_argument("name", nargs="?", help="a task or environment to show (default: list them all)")
    examples(s, "the example comes from")
    option(s, "a task option")
    seen(s)
    s.set_defaults(fn=cmd_tasks)

    s = command("score", "score a JSONL file of rows with a 'completion' field")
    s.add_argument("task", help="the task whose rewards score the rows")
    s.add_argument("--input", "-i", required=True, help="the JSONL file: the example's fields plus a 'completion'")
    s.add_argument("--output", "-o", help="where the scored rows go (default: INPUT.scored.jsonl)")
    workers(s)
    option(s, "a task option")
    s.set_defaults(fn=cmd_score)

    s = command("check", "run tasks' fixtures through the scoring service (twice); warn of weak tests")
    s.add_argument("names", nargs="*", metavar="TASK",
                   help="tasks and environments to check (default: all; unknown ones are reported, the rest checked)")
    workers(s)
    option(s, "a task option for its example streams and probes (e.g. source=FILE: check a data set)")
    s.set_defaults(fn=cmd_check)

    s = command("play", "play one episode of an environment in the terminal, typing the assistant's turns")
    s.add_argument("name", help="the environment to play")
    examples(s, "the episode's example comes from")
    option(s, "an environment option")
    s.add_argument("--reveal", action="store_true", help="print the example's gold data when the episode ends")
    seen(s)
    s.set_defaults(fn=cmd_play)

    s = command("rewards", "list rewards, or describe one (or an environment's own outcome): what it checks, "
                "gold keys, scores, statuses")
    s.add_argument("name", nargs="?", help="a reward, or an environment (its own outcome), to describe")
    s.add_argument("--markdown", action="store_true", help="print markdown (the format of docs/rewards.md)")
    s.set_defaults(fn=cmd_rewards)

    s = command("doctor", "report the sandbox isolation this machine grants (--ray: every node of a Ray cluster)")
    s.add_argument("--ray", action="store_true", help="probe every node of the Ray cluster that would score")
    s.add_argument("--address", default="auto", help="with --ray: the cluster (default: auto, the one on this machine)")
    s.add_argument("--allow-unisolated", action="store_true",
                   help="with --ray: accept nodes whose sandbox cannot isolate (as [scoring] allow_unisolated)")
    s.set_defaults(fn=cmd_doctor)

    s = command("train", "train with a recipe: grpo-env train RECIPE [--train.lr=1e-5 ...]", epilog=OVERRIDES,
                usage="%(prog)s [-h] [--resume] RECIPE [--key=value ...]")
    s.add_argument("recipe", metavar="RECIPE", help="the recipe TOML file (tasks/*.toml are examples)")
    s.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    s.set_defaults(fn=cmd_train)

    s = command("eval", "accuracy per task on the held-out split", epilog=OVERRIDES,
                usage="%(prog)s [-h] [--model DIR] [--samples K] [--temperature T] RECIPE [--key=value ...]")
    s.add_argument("recipe", metavar="RECIPE", help="the recipe TOML file: its tasks, model and [train.eval] settings")
    s.add_argument("--model", metavar="DIR", help="a checkpoint or model directory (default: the recipe's model)")
    s.add_argument("--samples", type=int, default=1, metavar="K",
                   help="K samples per prompt: pass@1 .. pass@K and the mean reward (default 1: greedy)")
    s.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="sampling temperature (default 1.0 when K > 1)")
    s.set_defaults(fn=cmd_eval)

    s = command("report", "regenerate a run directory's plots and markdown summary")
    s.add_argument("run_dir", help="a run directory (the recipe's [train] output_dir)")
    s.set_defaults(fn=cmd_report)

    s = command("init", "scaffold a plugin distribution: task, reward, fixtures, tests, recipe (or, with "
                "--environment, an environment)")
    s.add_argument("name", help="the plugin, task and entry-point name (lower case, digits, '_')")
    s.add_argument("--environment", action="store_true",
                   help="an environment plugin: an episode with a tool and feedback, scripted episodes, tests "
                        "that play them, a recipe mixing it with math_arith")
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
