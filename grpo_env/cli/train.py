"""Glue for ``grpo-env train`` and ``grpo-env eval``: recipe -> registry tasks -> task mix ->
scoring service -> engine. The engine itself knows nothing of plugins."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from grpo_env.engine import checkpoint, cpu_matmul, sharding, tblog, zero
from grpo_env.engine.config import ModelConfig
from grpo_env.engine.distributed import DistributedError
from grpo_env.engine.generation import GenerationError, make_generator, resolve_backend
from grpo_env.engine.model import ModelError, load_config, load_model, load_tokenizer, resolve_device, save_model
from grpo_env.engine.parallel import init_from_env
from grpo_env.engine.sampling import prefill_of
from grpo_env import monitors
from grpo_env.engine.episode_watch import EnvironmentFailing
from grpo_env.engine.monitor import MonitorAlarm
from grpo_env.engine.trainer import ScoreFn, TrainingDiverged, train
from grpo_env.mixture import MixEntry, MixtureError, TaskMixture
from grpo_env.plugins import own_outcome_hint
from grpo_env.recipe import Recipe, RecipeError, load_recipe
from grpo_env.scoring import make_service
from grpo_env.scoring.ray import ClusterError
from grpo_env.types import Example, Scored, Status


def mix_entries(recipe: Recipe, registry) -> list[MixEntry]:
    """The recipe's tasks resolved in the registry, options validated, reward components checked."""
    entries, seen = [], set()
    for t in recipe.tasks:
        if t.name in seen:
            raise RecipeError(f"task {t.name!r} is listed twice in the recipe; list it once")
        seen.add(t.name)
        task = registry.task(t.name)
        try:
            options = task.parse_options(t.options)
        except ValueError as e:
            raise RecipeError(f"tasks.{t.name}.options: {e}") from None
        flags = task.flagged(options) if task.flagged else []
        if flags and not t.allow_flagged:
            raise RecipeError(f"task {t.name!r} is flagged: {'; '.join(flags)}. Its reward would train on a broken "
                              f"signal; set allow_flagged = true on this task in the recipe to use it anyway")
        entry = MixEntry(task=task, weight=t.weight, options=options, rewards=t.rewards, prefill=t.prefill)
        own = task.name if entry.is_environment else None
        for name in entry.components:
            hint = own_outcome_hint(name, own) if name not in registry.rewards else None
            if hint is not None:  # "games.gues": a slip of the environment's own name, not a missing plugin
                raise RecipeError(f"tasks.{t.name}.rewards: no reward named {name!r} ({hint})")
            registry.reward(name)  # an unknown reward fails here, naming it, not mid-run
        if own is not None and t.rewards is not None and own not in t.rewards and task.rewards.get(own):
            print(f"warning: tasks.{t.name}.rewards leaves out the environment's own outcome {own!r} (weight "
                  f"{task.rewards[own]:g} by default), so it weighs 0: episodes are judged by "
                  f"{', '.join(t.rewards) or 'nothing'} alone; add \"{own}\" = {task.rewards[own]:g} to "
                  "the recipe's rewards to keep it", file=sys.stderr)
        entries.append(entry)
    return entries


def monitor_rewards(recipe: Recipe, registry, entries: list[MixEntry]) -> dict:
    """What the recipe's [monitor] scores besides the rewards (strict variants, plugin monitors); a
    threshold for a signal no monitor has is an error, before the model loads."""
    try:
        monitors.check_thresholds(recipe.monitor, registry)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    return monitors.scoring_rewards(registry, entries, recipe.monitor)


def reward_texts(examples: list[Example], completions: list[str]) -> list[str]:
    """What rewards judge: the assistant's whole turn, its prefill (e.g. ``<think>``) then the
    model's completion, so a format reward written for R1-style output sees the tag it expects."""
    return [prefill_of(ex) + c for ex, c in zip(examples, completions)]


def make_score_fn(service, entries: list[MixEntry]) -> ScoreFn:
    """score_fn for the engine: each example scored by its own task's reward components."""
    weights = {e.task.name: e.reward_weights for e in entries}

    def score_fn(examples: list[Example], completions: list[str]) -> list[Scored]:
        return service.score_examples([weights[ex.task] for ex in examples], examples,
                                      reward_texts(examples, completions))

    return score_fn


def make_env_host(service, entries: list[MixEntry], workers: int = 2, grace: float = 1.0, forks=None, ray=None):
    """The episode host for the mix's environments (None when the mix has none). ``forks``: where
    its episode processes come from (an EpisodeZygote started before the model loaded; see
    :class:`grpo_env.episodes.EpisodeHost`). ``ray``: a ScoringConfig with ``backend = "ray"``: the
    episodes run on the cluster's nodes (:class:`grpo_env.episodes.ray.RayEpisodeHost`)."""
    from grpo_env.episodes import EpisodeHost

    envs = {e.task.name: (e.task, e.reward_weights) for e in entries if e.is_environment}
    if not envs:
        return None
    if ray is not None:
        from grpo_env.episodes.ray import RayEpisodeHost

        return RayEpisodeHost(envs, service, workers=workers, grace=grace, address=ray.address,
                              allow_unisolated=ray.allow_unisolated)
    return EpisodeHost(envs, service, workers=workers, grace=grace, forks=forks)


def run_dir(recipe: Recipe) -> Path:
    return Path(recipe.train.output_dir.format(name=recipe.name))


def _setup_torch(mcfg: ModelConfig, seed: int) -> None:
    if mcfg.threads:
        torch.set_num_threads(mcfg.threads)
    torch.manual_seed(seed)


class _DropProbeLine(logging.Filter):
    """Drops DeepSpeed's import-time "Setting accelerator to CPU" warning, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Setting accelerator to CPU")


def quiet_unused_deepspeed() -> None:
    """Keep DeepSpeed's accelerator probe line out of runs that do not use DeepSpeed.

    transformers' ``save_pretrained`` imports accelerate, which imports DeepSpeed when it is
    installed; DeepSpeed then warns at import that it set its accelerator to CPU, a line about a
    library the run does not use. The filter sits on DeepSpeed's own logger (which keeps its filters
    when DeepSpeed configures it) and drops that one message; a DeepSpeed launch keeps it.
    """
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").strip().lower() in ("1", "true", "yes"):
        return  # a DeepSpeed launch: its own lines are the user's business
    logger = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _DropProbeLine) for f in logger.filters):
        logger.addFilter(_DropProbeLine())


def generation_plan(recipe: Recipe, mcfg: ModelConfig, max_new_tokens: int) -> tuple[str, int | None]:
    """The generation backend (``[generation] backend``, ``auto`` resolved for the model's device) and,
    for vLLM, its context length; checked before the model loads (vLLM missing, an architecture it
    cannot run, a context too short: a GenerationError that says so)."""
    device = resolve_device(mcfg.device)
    backend = resolve_backend(recipe.generation.backend, device)
    if backend != "vllm":
        return backend, None
    from grpo_env.engine.generation.vllm import preflight

    return backend, preflight(load_config(mcfg), recipe.generation.max_model_len, max_new_tokens, device)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main_train(recipe_path: str, overrides: list[str], resume: bool = False) -> int:
    """``grpo-env train RECIPE [--key=value ...] [--resume]``; returns the exit code."""
    from grpo_env.plugins import PluginError, get_registry

    quiet_unused_deepspeed()
    service = host = None  # on Ray, started before the model loads
    try:
        recipe = load_recipe(recipe_path, overrides)
        if recipe.train.tensorboard:
            tblog.require()  # before the model loads
        registry = get_registry()
        entries = mix_entries(recipe, registry)
        # issue 19 item 11: episode processes fork from this small process, started before the model loads
        from grpo_env.episodes import start_zygote

        on_ray = recipe.scoring.backend == "ray"  # then episodes run on the cluster's nodes, not forked here
        zygote = None if on_ray else start_zygote(e.task for e in entries if e.is_environment)  # None: no environments
        mix = TaskMixture(entries, seed=recipe.seed, split=recipe.train.split)
        watched = monitor_rewards(recipe, registry, entries)  # strict variants and plugin monitors, for scoring
        rewards = {name: registry.reward(name) for e in entries for name in e.components} | watched
        if on_ray:  # a cluster that cannot score or play episodes stops the run before the model loads
            service = make_service(recipe.scoring, rewards)
            host = make_env_host(service, entries, recipe.scoring.workers, recipe.scoring.grace, ray=recipe.scoring)
        out = run_dir(recipe)
        if not resume and checkpoint.latest(out / "checkpoints") is not None:
            raise FileExistsError(f"{out} already holds a run's checkpoints: continue it with --resume, or choose "
                                  "another directory (--name=... or --train.output_dir=...)")
        _setup_torch(recipe.model, recipe.seed)
        backend, context = generation_plan(recipe, recipe.model, recipe.train.max_new_tokens)
        device = resolve_device(recipe.model.device)
        if device.type == "cpu":  # this machine's product kernels, chosen (or read from its cache) before the
            cpu_matmul.choice()  # model loads; a bad GRPO_ENV_CPU_MATMUL stops here
        dist = init_from_env(device)  # several processes under accelerate launch / torchrun
        fsdp = sharding.requested() if dist.active else None  # accelerate launch --use_fsdp (or an FSDP config)
        ds = zero.requested() if dist.active else None  # accelerate launch --use_deepspeed (or a DEEPSPEED config)
        tok = load_tokenizer(recipe.model)
        model = load_model(recipe.model)
        ref = None
        if recipe.train.beta > 0 and not recipe.model.lora:  # LoRA: the base (adapters off) is the reference
            ref = load_model(recipe.model, trainable=False)
        if fsdp is not None:
            full = sharding.local_numel(model)
            sharding.shard_model(model, fsdp)
            if ref is not None:  # the reference stays whole on every rank (no gradients, no optimiser state)
                sharding.sync_from_rank0(ref)
            print(f"fsdp: rank {dist.rank} of {dist.world} holds {sharding.local_numel(model)} of {full} policy "
                  "parameter elements", file=sys.stderr)
        if ds is not None:  # ZeRO 1/2: the engine starts in train(), which owns the optimiser
            zero.prepare(model, ds, recipe.train)
            if ref is not None:  # the reference stays whole on every rank, outside DeepSpeed
                sharding.sync_from_rank0(ref)
        generator = make_generator(model, tok, backend, recipe.generation, max_model_len=context,
                                   seed=recipe.seed + dist.rank)
    except (RecipeError, PluginError, MixtureError, ModelError, FileExistsError, DistributedError,
            tblog.TensorBoardMissing, GenerationError, ClusterError, cpu_matmul.MatmulConfigError) as e:
        for started in (host, service):
            if started is not None:
                started.close()
        return _fail(str(e))
    if dist.main:  # only rank 0 writes the run directory
        if resume and checkpoint.latest(out / "checkpoints") is None:
            unsaved = "; [train] save = false writes none" if not recipe.train.save else ""
            print(f"note: nothing to resume: no checkpoint under {out}/checkpoints{unsaved}; starting from scratch",
                  file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(recipe.model_dump_json(indent=2))
        (out / "plugins.json").write_text(json.dumps(plugin_versions(registry, entries), indent=2))
    mon = recipe.monitor
    prompts = monitors.CanarySource(mix, entries, mon.canary_share, recipe.seed) if mon.enabled and mon.canary_share else mix
    try:
        with service or make_service(recipe.scoring, rewards) as service:
            if not on_ray:
                host = make_env_host(service, entries, recipe.scoring.workers, recipe.scoring.grace, forks=zygote)
            monitor = monitors.make_monitor(mon, registry, entries, service, dist, reward_texts)
            try:
                run = train(model, tok, prompts, monitors.canary_blind(make_score_fn(service, entries)), recipe.train,
                            out, ref_model=ref, resume=resume, save_model=save_model, dist=dist, env_host=host,
                            monitor=monitor, generator=generator)
            finally:
                monitor.close()
                generator.close()
                if host is not None:
                    host.close()
    except (TrainingDiverged, FileExistsError, MonitorAlarm, EnvironmentFailing, GenerationError, DistributedError) as e:
        if isinstance(e, MonitorAlarm) and dist.main:
            from grpo_env.cli.report import write_report

            print(f"report: {write_report(out)}", file=sys.stderr)
        return _fail(str(e))
    finally:
        if zygote is not None:  # issue 19 item 11: its episode processes go with it
            zygote.close()
    if not dist.main:
        return 0
    last = run.history[-1] if run.history else {}
    reward = last.get("reward_mean")
    shown = f"{reward:.3f}" if isinstance(reward, (int, float)) else "-"  # None: the last step had no finite reward
    kept = "logs and checkpoints" if recipe.train.save else "logs (no checkpoints: [train] save = false)"
    print(f"done: {run.step} steps; last reward {shown}; {kept} in {out}")
    if run.history:
        from grpo_env.cli.report import write_report

        print(f"report: {write_report(out)}")
    return 0


def plugin_versions(registry, entries: list[MixEntry]) -> list[dict[str, str]]:
    """The plugins whose tasks or rewards this run uses, with their distributions and versions."""
    used = {registry.origin[("task", e.task.name)] for e in entries}
    used |= {registry.origin[("reward", r)] for e in entries for r in e.components}
    return [
        {"name": i.name, "distribution": i.distribution, "version": i.version}
        for i in sorted(registry.plugins.values(), key=lambda i: i.name)
        if i.name in used
    ]


# ---------------------------------------------------------------------------------------------
# eval


def resolve_model_dir(path: str) -> str:
    """A run directory, a checkpoint directory or a plain model directory -> the model directory."""
    p = Path(path)
    ck = checkpoint.latest(p / "checkpoints")
    if ck is not None:
        return str(ck / "model")
    if (p / "model" / "config.json").exists():
        return str(p / "model")
    return str(p)


def eval_examples(entry: MixEntry, split: str, n: int, seed: int) -> list[Example]:
    exs = itertools.islice(entry.task.examples(split, seed, dict(entry.options)), n)
    return [entry.prepare(e) for e in exs]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator: the chance that k of n samples, c of them correct, hold a correct one.

    ``1 - C(n-c, k) / C(n, k)``, computed as a product so large n does not overflow.
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def pass_ks(samples: int) -> list[int]:
    """The k reported for K samples: 1, the powers of two below K, and K itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return ks + [samples]


def evaluate(model, tok, recipe: Recipe, entries: list[MixEntry], service, samples: int = 1,
             temperature: float = 0.0, forks=None) -> dict[str, dict[str, Any]]:  # model: the policy or a generator
    """Per task on the held-out split: the fraction of completions whose primary (first) reward
    component says ``correct``, and the mean weighted reward. With ``samples`` K > 1 each prompt is
    sampled K times at ``temperature``, and pass@1 .. pass@K (unbiased estimator over the K) are added.
    Environments are played as episodes (the same rollout as training; ``forks`` as for
    :func:`make_env_host`); their results add the mean turns, tool calls and tool errors per episode."""
    from grpo_env.engine import rollout

    ecfg, tcfg = recipe.train.eval, recipe.train
    max_new = ecfg.max_new_tokens or tcfg.max_new_tokens
    rcfg = tcfg.model_copy(update={"max_new_tokens": max_new})
    host = make_env_host(service, entries, recipe.scoring.workers, recipe.scoring.grace, forks=forks,
                         ray=recipe.scoring if recipe.scoring.backend == "ray" else None)
    results: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if ecfg.split not in entry.task.splits:
            results[entry.task.name] = {"error": f"no split {ecfg.split!r}"}
            continue
        exs = eval_examples(entry, ecfg.split, ecfg.examples_per_task, ecfg.seed)
        weights = entry.reward_weights
        primary = next(iter(weights))
        correct_per_example: list[int] = []
        total_reward, n_reward, statuses = 0.0, 0, {}
        per_call = max(1, ecfg.batch_size // samples)  # prompts per generate call: batch_size rows at most
        episodes: list[dict[str, Any]] = []
        for i in range(0, len(exs), per_call):
            chunk = exs[i : i + per_call]
            ro, judged = rollout.run(model, tok, chunk, samples, rcfg, host, temperature=temperature)
            repeated = [e for e in chunk for _ in range(samples)]  # a prompt's samples are consecutive rows
            scored = judged if judged is not None else service.score_examples(
                [entry.components] * len(repeated), repeated, reward_texts(repeated, ro.texts))
            episodes += [e for e in (ro.episodes or []) if e is not None]
            for j in range(0, len(scored), samples):
                group = scored[j : j + samples]
                correct_per_example.append(sum(_primary(s, primary) is Status.CORRECT for s in group))
                for s in group:
                    st = str(_primary(s, primary))
                    statuses[st] = statuses.get(st, 0) + 1
                    if s.total == s.total:  # not NaN
                        total_reward += s.total
                        n_reward += 1
        n_done = max(len(exs), 1)
        result: dict[str, Any] = {
            "accuracy": sum(correct_per_example) / (n_done * samples),
            "n": len(exs),
            "mean_reward": total_reward / max(n_reward, 1),
            "primary_reward": primary,
            "statuses": statuses,
        }
        if episodes:
            result["episodes"] = {k: sum(e[k] for e in episodes) / len(episodes)
                                  for k in ("turns", "tool_calls", "tool_errors", "tokens")}
        if samples > 1:
            result["samples"] = samples
            result["temperature"] = temperature
            result["pass_at_k"] = {str(k): sum(pass_at_k(samples, c, k) for c in correct_per_example) / n_done
                                   for k in pass_ks(samples)}
            result["correct_counts"] = correct_per_example  # per prompt, in order: pass@k can be recomputed
        results[entry.task.name] = result
    if host is not None:
        host.close()
    return results


def _primary(s: Scored, primary: str) -> Status:
    """The status of the primary component (an episode whose environment failed has only that)."""
    return s.components[primary].status if primary in s.components else s.status


def main_eval(recipe_path: str, model_dir: str | None = None, overrides: list[str] = (), samples: int = 1,
              temperature: float | None = None) -> int:
    """``grpo-env eval RECIPE [--model DIR] [--samples K [--temperature T]]``: print (and optionally
    save) accuracy per task; greedy by default, K samples per prompt (pass@k) with ``samples``."""
    from rich.console import Console

    from grpo_env.episodes import start_zygote
    from grpo_env.plugins import PluginError, get_registry

    if samples < 1:
        return _fail(f"--samples must be at least 1, got {samples}")
    if temperature is None:
        temperature = 1.0 if samples > 1 else 0.0
    if temperature < 0 or (samples > 1 and temperature == 0):
        return _fail(f"--temperature {temperature}: K > 1 samples need a temperature above 0 "
                     "(greedy repeats one answer)")
    quiet_unused_deepspeed()
    zygote = None  # episodes fork from a small process started before the model loads, as in training
    try:
        try:
            recipe = load_recipe(recipe_path, list(overrides))
            registry = get_registry()
            entries = mix_entries(recipe, registry)
            if recipe.scoring.backend != "ray":  # on Ray, episodes run on the cluster's nodes
                zygote = start_zygote(e.task for e in entries if e.is_environment)  # None: no environments
            mcfg = recipe.model
            if model_dir is not None:
                mcfg = mcfg.model_copy(update={"name": resolve_model_dir(model_dir), "gguf_file": None, "lora": False})
            _setup_torch(mcfg, recipe.seed)
            max_new = recipe.train.eval.max_new_tokens or recipe.train.max_new_tokens
            backend, context = generation_plan(recipe, mcfg, max_new)
            tok = load_tokenizer(mcfg)
            model = load_model(mcfg, trainable=False)
            generator = make_generator(model, tok, backend, recipe.generation, max_model_len=context, seed=recipe.seed)
        except (RecipeError, PluginError, MixtureError, ModelError, GenerationError) as e:
            return _fail(str(e))
        rewards = {name: registry.reward(name) for e in entries for name in e.components}
        try:
            with make_service(recipe.scoring, rewards) as service:
                results = evaluate(generator, tok, recipe, entries, service, samples=samples, temperature=temperature,
                                   forks=zygote)
        except ClusterError as e:  # no cluster to score on, or the episodes' nodes (on Ray) could not start
            return _fail(str(e))
        finally:
            generator.close()
    finally:
        if zygote is not None:  # its episode processes go with it
            zygote.close()
    Console().print(eval_table(mcfg.name, recipe.train.eval.split, results, samples, temperature))
    if recipe.train.eval.output:
        out = Path(recipe.train.eval.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": mcfg.name, "samples": samples, "temperature": temperature,
                                   "results": results}, indent=2))
    return 0


def eval_table(model: str, split: str, results: dict[str, dict[str, Any]], samples: int, temperature: float):
    """The terminal table of an evaluation (pass@k columns when K > 1 samples were drawn)."""
    from rich.table import Table

    how = "greedy" if samples == 1 and temperature == 0 else f"{samples} samples at temperature {temperature:g}"
    table = Table(title=f"held-out accuracy: {model} ({split} split, {how})")
    ks = pass_ks(samples) if samples > 1 else []
    for col in ["task", "accuracy" if not ks else "pass@1", *[f"pass@{k}" for k in ks[1:]], "n", "mean reward",
                "statuses"]:
        table.add_column(col)
    for name, r in results.items():
        if "error" in r:
            table.add_row(name, "-", *["-"] * len(ks[1:]), "0", "-", r["error"])
            continue
        table.add_row(name, f"{r['accuracy']:.3f}", *[f"{r['pass_at_k'][str(k)]:.3f}" for k in ks[1:]], str(r["n"]),
                      f"{r['mean_reward']:.3f}", ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())))
    return table
