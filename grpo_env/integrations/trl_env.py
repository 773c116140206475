"""Our tool environments inside TRL's ``GRPOTrainer``, through its ``environment_factory``.

TRL plays an environment as a tool loop: the model's turn calls tools (methods of an environment
instance, one instance per rollout), each result comes back as a ``tool`` message, and the first
turn without a tool call ends the rollout. That is our episode when the environment only runs tools
and judges the final turn: it never answers a turn with feedback of its own. Such environments
*fit* (``math_python``); the others are refused with the reason (:func:`unfit_reason`).

``TRLEnvironments(recipe)`` serves a recipe whose tasks are all fitting environments:

- ``environment_factory``: for TRL. Each instance is one rollout: ``reset(**row)`` opens an episode
  for the row's example in our :class:`~grpo_env.episodes.EpisodeHost` (its own process, the
  environment's ``step_timeout``/``episode_timeout``, the sandbox its tools use); each of the
  environment's tools is a method generated from the tool's spec (typed keyword arguments and a
  Google-style docstring, which transformers turns back into the schema the chat template shows);
  a call goes to the episode's process as a turn holding that one call, where the core checks its
  arguments and runs it under the deadlines. Whatever happens (a bad argument, a ``ToolError``, a
  timeout, a crash), the model gets the text our engine would show, ``error: ...``; nothing is
  raised into TRL and nothing waits past the deadlines. Results pass through
  :func:`grpo_env.text.plain`. Resetting an instance again, or closing the bridge, ends its episode.
- ``funcs``: the judgement, as TRL ``reward_funcs``: one function per component (the environment's
  own outcome, named after it, and its reward components), each returning its weighted score, as
  :class:`~grpo_env.integrations.trl.TRLRewards` does. They receive TRL's ``environments`` (the
  rollouts' instances) and ``completions``: the final assistant turn goes to the episode
  (``step``), which ends it; the components judge that turn. An ``error`` or all-``not_applicable``
  judgement is ``None`` from every function (TRL leaves the rollout out), never 0.
  TRL's own ``get_reward()`` is not used: it takes no argument and runs after the rollout, so it
  cannot see the final turn, which is what our environments judge.
- ``dataset(n)``: rows drawn from the recipe's mix (``prompt``, ``task``, ``id``, ``gold``; and
  ``environment`` when the recipe holds several environments, for TRL's dict factory).

As under ``grpo-env train``, an episode TRL ended without a final answer gets the environment's
``end(reason)`` outcome alone (no credit by default): a last turn whose tool calls TRL did not run
(``max_tool_calling_iterations``, the completion length) or holding an unparsed call, more turns than
the environment's ``max_turns`` / ``turn_limit``, a rollout that ends on a tool result, and (with
``eos_token_ids``) a final turn cut at the completion length.

    envs = TRLEnvironments("python.toml")  # a recipe of tool environments: [[tasks]] name = "math_python"
    trainer = GRPOTrainer(model=..., processing_class=tokenizer, reward_funcs=envs.funcs,
                          environment_factory=envs.environment_factory, train_dataset=envs.dataset(512),
                          args=GRPOConfig(..., max_tool_calling_iterations=envs.max_tool_calling_iterations,
                                          chat_template_kwargs={"sanitize_control_tokens": True}))
    trainer.train(); envs.close()
"""

from __future__ import annotations

import inspect
import json
import keyword
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Literal, Union

from grpo_env.environment import Environment, Tool, is_environment
from grpo_env.integrations._common import EnvironmentRefused, entries_of, recipe_of, rewards_of
from grpo_env.recipe import Recipe
from grpo_env.text import plain
from grpo_env.tools import CLOSE, OPEN, find_calls
from grpo_env.types import Example, Outcome, Scored, Status, Task

RESERVED = ("reset", "get_reward")  # TRL's own names on an environment instance
RECEIVER = "_rollout"  # the generated methods' receiver (a tool argument may be called "self")

RewardFunc = Callable[..., list[float | None]]


# ---------------------------------------------------------------------------------------------
# what fits


def unfit_reason(env: Environment) -> str | None:
    """Why ``env`` cannot be played by TRL's tool loop, or None when it fits.

    There is no declared "gives feedback" property: a turn without a tool call goes to
    ``Episode.step``, which may answer it (feedback) or end the episode, and only running it tells.
    What is known beforehand is refused here: an environment without tools (every turn of it is a
    step), one that hands cut turns to ``step`` (``on_truncated="step"``), and tools TRL cannot
    offer as methods. An environment with tools whose ``step`` does answer a final turn is caught
    when it does: that rollout is ``error`` (left out, counted, warned about)."""
    if not env.tools:
        return ("it offers no tools, so each of its turns goes to step(), which answers with feedback or ends the "
                "episode; TRL's loop gives the model no turn after one without a tool call")
    if env.on_truncated == "step":
        return ('it answers turns cut at max_new_tokens (on_truncated="step"), a feedback turn TRL\'s loop '
                "cannot play")
    for tool in env.tools:
        if tool.name in RESERVED or tool.name.startswith("_"):
            return (f"its tool {tool.name!r} cannot be an environment method in TRL (TRL reserves "
                    f"{' and '.join(RESERVED)}, and skips names starting with '_')")
        for arg in tool.parameters.get("properties", {}):
            if not arg.isidentifier() or keyword.iskeyword(arg) or arg == RECEIVER:
                return (f"argument {arg!r} of its tool {tool.name!r} is not a Python identifier: TRL calls tools "
                        "as Python methods with keyword arguments")
    return None


def refuse_unfit(tasks: list[Task]) -> None:
    """Raise unless every task is an environment TRL's tool loop can play, naming each and why."""
    singles = [t.name for t in tasks if not is_environment(t)]
    if singles:
        names = ", ".join(repr(n) for n in singles)
        raise ValueError(
            f"{names} {'is a single-turn task' if len(singles) == 1 else 'are single-turn tasks'}: TRLEnvironments "
            "serves environments only (TRL's environment_factory gives every row of a run an environment); train "
            "single-turn tasks with TRLRewards and recipe_dataset, in a run of their own")
    unfit = [(t.name, why) for t in tasks if (why := unfit_reason(t)) is not None]  # type: ignore[arg-type]
    if unfit:
        raise EnvironmentRefused(
            "; ".join(f"{name!r} does not fit TRL's environment_factory: {why}" for name, why in unfit)
            + ". TRL's loop plays tools only (the model calls tools, each result comes back, the first turn without "
            "a tool call ends the rollout); an environment that answers turns with feedback trains with "
            "`grpo-env train` (docs/environments.md)")


# ---------------------------------------------------------------------------------------------
# tools as typed, documented methods


_JSON_TYPES: dict[Any, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "null": type(None), "object": dict}
_SCALARS = (str, int, float, bool, type(None))


def _hint(schema: Any) -> Any:
    """The Python type hint transformers turns back into ``schema`` (top level: type, enum, items)."""
    if not isinstance(schema, dict):
        return Any
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(type(v) in _SCALARS for v in enum):
        return Literal[tuple(enum)]  # type: ignore[valid-type]
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        hints = tuple(dict.fromkeys(_one(k, schema) for k in kind))
        return hints[0] if len(hints) == 1 else Union[hints]  # type: ignore[valid-type]
    return _one(kind, schema)


def _one(kind: Any, schema: dict) -> Any:
    if kind == "array":
        items = schema.get("items")
        return list[_hint(items)] if isinstance(items, dict) and items else list  # type: ignore[misc]
    return _JSON_TYPES.get(kind, Any) if isinstance(kind, str) else Any


def _line(text: str) -> str:
    """One line of docstring text that transformers' Google-style parser reads back whole."""
    text = " ".join(str(text).split())
    return re.sub(r"(Args|Returns|Raises):", r"\1 :", text)  # these words would end the section early


def tool_method(tool: Tool) -> Callable[..., str]:
    """A function (made a method of the rollout class) whose signature, annotations and docstring
    transformers' ``get_json_schema`` reads back as ``tool``'s spec: name, description, arguments
    with their types, descriptions and which are required. It forwards its keyword arguments to the
    episode: the core checks them against the full schema there, as for any call."""
    props: dict[str, Any] = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    name = tool.name

    def call(*args: Any, **kwargs: Any) -> str:
        if not args:  # never called unbound by TRL; a plain string either way
            return f"error: {name} is a method of an environment instance"
        return args[0]._bridge._call(args[0], name, args[1:], kwargs)

    params = [inspect.Parameter(RECEIVER, inspect.Parameter.POSITIONAL_ONLY)]
    hints: dict[str, Any] = {}
    for arg, schema in props.items():
        hints[arg] = _hint(schema)
        default = inspect.Parameter.empty if arg in required else (
            schema.get("default") if isinstance(schema, dict) else None)
        params.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hints[arg]))
    doc = [_line(tool.description) or f"The {name} tool."]
    if props:
        doc += ["", "Args:"] + [f"    {arg}: {_line(s.get('description', '') if isinstance(s, dict) else '') or arg}"
                                for arg, s in props.items()]
    call.__name__ = call.__qualname__ = name
    call.__doc__ = "\n".join(doc)
    call.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    call.__annotations__ = {**hints, "return": str}
    return call


class Rollout:
    """The base of the generated environment classes: one TRL rollout, one episode of ours.

    TRL offers every public function of the class as a tool, so the class has none but ``reset``
    and the tools; the rest is the bridge's."""

    _bridge: "TRLEnvironments"
    _env: Environment

    def __init__(self) -> None:
        self._batch: Any = None  # the episode (an EpisodeBatch of one), open between reset and judgement
        self._example: Example | None = None
        self._scored: Scored | None = None  # the judgement, once the reward functions asked for it
        self._stats: dict[str, Any] = {}
        self._bridge._instances.append(self)

    def reset(self, **row: Any) -> None:
        """Open an episode for this row's example (ending the previous one). Returns None: the
        prompt is the row's."""
        self._bridge._open(self, row)
        return None


def rollout_class(bridge: "TRLEnvironments", env: Environment) -> type:
    """The environment class TRL instantiates for ``env``: :class:`Rollout` plus one method per tool."""
    attrs: dict[str, Any] = {t.name: tool_method(t) for t in env.tools}
    attrs.update(_bridge=bridge, _env=env, __doc__=f"TRL environment {env.name!r}: " + _line(env.description))
    cls_name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", env.name) if p) + "Environment"
    cls = type(cls_name, (Rollout,), attrs)
    for t in env.tools:
        attrs[t.name].__qualname__ = f"{cls_name}.{t.name}"
    return cls


# ---------------------------------------------------------------------------------------------
# the bridge


class TRLEnvironments:
    """TRL ``environment_factory`` and ``reward_funcs`` for a recipe of tool environments, played in
    our episode processes and judged by our scoring service. Close it when done (or use ``with``).

    ``workers``: the scoring workers and episode steps at once (default: the recipe's
    ``scoring.workers``); ``forks``: where episode processes come from, as ``EpisodeHost``'s
    (``"zygote"``: a small process started now, before the model loads, that forks them: build the
    bridge before loading the model); ``eos_token_ids``: the ids that end a turn (the tokenizer's
    eos and pad ids): given, a final turn that ends with none of them was cut at the completion
    length and is ``truncated``, as under ``grpo-env train`` (no credit by default)."""

    def __init__(self, recipe: Recipe | str | Path, workers: int | None = None, forks: Any = None,
                 eos_token_ids: Any = None):
        from grpo_env.episodes import EpisodeHost
        from grpo_env.scoring import ScoringService

        rec = recipe_of(recipe)
        entries = entries_of(rec)
        refuse_unfit([e.task for e in entries])
        prefilled = [e.task.name for e in entries if e.prefill]
        if prefilled:
            raise ValueError(f"{prefilled}: a prefill (an assistant message the model continues) is not bridged: "
                             "TRL's tool loop renders each turn from messages and does not continue one")
        self.recipe, self.entries = rec, entries
        self.environments: dict[str, Environment] = {e.task.name: e.task for e in entries}  # type: ignore[misc]
        self.weights = {e.task.name: e.reward_weights for e in entries}
        self.eos = None if eos_token_ids is None else frozenset(
            [eos_token_ids] if isinstance(eos_token_ids, int) else eos_token_ids)
        workers = workers or rec.scoring.workers
        self.service = ScoringService(rewards_of(entries), workers=workers, grace=rec.scoring.grace)
        try:
            self.host = EpisodeHost({n: (env, self.weights[n]) for n, env in self.environments.items()},
                                    self.service, workers=workers, grace=rec.scoring.grace, forks=forks)
        except BaseException:
            self.service.close()
            raise
        self.counts: Counter[str] = Counter()  # rollouts per status (the judgement's), over the run
        self.episodes: Counter[str] = Counter()  # tool_calls, tool_errors, ended_by/<how>, over the run
        self.rollouts: list[dict[str, Any]] = []  # the last judged batch, a record per rollout
        self._instances: list[Rollout] = []
        self._warned: set[str] = set()
        self._closed = False
        self.classes = {name: rollout_class(self, env) for name, env in self.environments.items()}
        components: dict[str, None] = {}
        for name, w in self.weights.items():
            components.update(dict.fromkeys([name, *(k for k in w if k != name)]))
        self.funcs: list[RewardFunc] = [self._func(c) for c in components]

    # -- what TRL takes ------------------------------------------------------------------------

    @property
    def environment_factory(self) -> Any:
        """For ``GRPOTrainer(environment_factory=...)``: the environment class (one environment), or
        a dict of them by name (several; the rows' ``environment`` column picks)."""
        if len(self.classes) == 1:
            return next(iter(self.classes.values()))
        return dict(self.classes)

    @property
    def max_tool_calling_iterations(self) -> int:
        """For ``GRPOConfig``: the tool turns ``max_turns`` allows before a final answer. TRL plays
        no turn past it, which is where our core stops an episode; longer rollouts are judged as the
        core would (no credit), but cost generation."""
        return max(0, max(env.max_turns for env in self.environments.values()) - 1)

    def dataset(self, n: int, split: str | None = None):
        """``n`` rows drawn from the recipe's mix (weights and seed), as TRL's ``train_dataset``."""
        import datasets

        from grpo_env.integrations.trl import example_row
        from grpo_env.mixture import TaskMixture

        mix = TaskMixture(self.entries, seed=self.recipe.seed, split=split or self.recipe.train.split)
        rows = []
        for ex in mix.sample(n):
            row = example_row(ex, self.recipe.train.system_prompt)
            if len(self.classes) > 1:
                row["environment"] = ex.task
            rows.append(row)
        return datasets.Dataset.from_list(rows)

    # -- an instance's life ---------------------------------------------------------------------

    def _open(self, inst: Rollout, row: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("this TRLEnvironments is closed: its episode processes are gone")
        self._end(inst)
        env = inst._env
        task = row.get("task", env.name)
        if task != env.name:
            raise ValueError(f"a row of task {task!r} reached the environment {env.name!r}: with several "
                             "environments, give TRL the dict environment_factory and rows with an environment column "
                             "(TRLEnvironments.dataset writes it)")
        try:
            gold = row["gold"]
            example = Example(id=str(row["id"]),
                              prompt=[{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
                              gold=json.loads(gold) if isinstance(gold, str) else gold, task=env.name,
                              tools=env.tool_specs())
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"a row for {env.name!r} needs prompt, id and gold (TRLEnvironments.dataset writes "
                             f"them): {type(e).__name__}: {e}") from None
        inst._example, inst._scored, inst._stats = example, None, {}
        inst._batch = self.host.open([example])  # forks the episode's process and makes the episode there

    def _end(self, inst: Rollout) -> None:
        """The instance's episode closed: its process stopped and reaped."""
        batch, inst._batch = inst._batch, None
        if batch is not None:
            batch.close()

    def _call(self, inst: Rollout, name: str, args: tuple, kwargs: dict[str, Any]) -> str:
        """One tool call, forwarded to the episode's process as a turn holding that call. Always a
        string: the result, or ``error: ...`` as our engine words it."""
        try:
            if args:
                return f"error: {name} takes keyword arguments only"
            batch = inst._batch
            if batch is None:
                return ("error: the episode has ended" if inst._scored is not None or self._closed
                        else "error: no episode is open (reset() opens one)")
            session = batch.sessions[0]
            if not session.open:
                return f"error: the episode has ended: {_why(session.outcome)}"
            try:
                text = OPEN + json.dumps({"name": name, "arguments": kwargs}) + CLOSE
            except (TypeError, ValueError) as e:
                return f"error: the arguments of {name} are not JSON: {plain(str(e))}"
            observations = batch.step([0], [text])[0]
            if observations is None:  # the episode ended: a deadline, a crash, an environment error
                return f"error: {_why(session.outcome)}"
            return plain("\n".join(m.content for m in observations))
        except Exception as e:  # the bridge's own failure: the episode is excluded, TRL goes on
            why = f"the TRL bridge failed on a call of {name}: {type(e).__name__}: {plain(str(e))}"
            warnings.warn(why, RuntimeWarning, stacklevel=2)
            if inst._batch is not None:
                inst._batch.fail([0], why)
            return f"error: {why}"

    def _judge(self, inst: Rollout, completion: Any, ids: Any) -> Scored:
        """The rollout's judgement: its final turn played into the episode (or the episode stopped,
        as our core stops one), then the environment's outcome and components combined."""
        env, batch = inst._env, inst._batch
        if batch is None:
            why = f"environment {env.name!r}: no episode was open for this rollout (reset() was not called)"
            return Scored(total=math.nan, status=Status.ERROR, components={env.name: Outcome.error(why)})
        session = batch.sessions[0]
        if session.open:
            messages = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
            turns = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
            last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
            text = _content(last)
            session.stats.turns = turns
            if last.get("role") != "assistant":  # it ends on a tool result: no room was left for a turn
                batch.stop([0], "tokens")
            elif turns > env.turns_for(inst._example):  # our core stops at the limit: no final answer
                batch.stop([0], "turns")
            elif self.eos is not None and ids and ids[-1] not in self.eos:  # cut at the completion length
                batch.stop([0], "truncated")
            elif last.get("tool_calls") or find_calls(text):  # tool calls TRL did not run: no final answer
                batch.stop([0], "turns")
            else:
                session.stats.turns = turns - 1  # step() counts the final turn in
                if batch.step([0], [text])[0] is not None:  # the environment answered: feedback TRL cannot play
                    why = (f"environment {env.name!r} answered the final turn with feedback, which TRL's loop cannot "
                           "show the model (it ends the rollout at a turn without a tool call): this environment does "
                           "not fit TRL; train it with `grpo-env train`")
                    self.episodes["feedback"] += 1
                    if env.name not in self._warned:
                        self._warned.add(env.name)
                        warnings.warn(why + "; such rollouts are left out (error)", RuntimeWarning, stacklevel=3)
                    batch.fail([0], why)
        inst._stats = batch.stats[0] or {}
        scored = batch.judge()[0]
        inst._batch = None  # judge() closed it
        return scored

    # -- the judgement as reward functions ------------------------------------------------------

    def _func(self, component: str) -> RewardFunc:
        def reward(prompts=None, completions=(), environments=None, completion_ids=None, log_metric=None,
                   **_: Any) -> list[float | None]:
            if environments is None:
                raise ValueError("TRL passed no environments: give GRPOTrainer environment_factory="
                                 "envs.environment_factory together with reward_funcs=envs.funcs")
            completions = list(completions)
            ids = list(completion_ids) if completion_ids is not None else [None] * len(completions)
            fresh = []
            for inst, completion, cids in zip(environments, completions, ids):
                if isinstance(inst, Rollout) and inst._bridge is self and inst._scored is None:
                    inst._scored = self._judge(inst, completion, cids)
                    fresh.append(inst)
            if fresh:
                self._record(fresh, log_metric)
            return [self._value(inst, component) if isinstance(inst, Rollout) and inst._bridge is self else None
                    for inst in environments]

        reward.__name__ = reward.__qualname__ = component
        return reward

    def _value(self, inst: Rollout, component: str) -> float | None:
        scored, name = inst._scored, inst._env.name
        weights = self.weights[name]
        weight = weights.get(component, 0.0 if component == name else None)  # its own outcome: always reported
        if scored is None or weight is None or math.isnan(scored.total):
            return None
        outcome = scored.components.get(component)
        return None if outcome is None or outcome.status.excluded else weight * outcome.score

    def _record(self, judged: list[Rollout], log_metric: Callable[[str, float], None] | None) -> None:
        batch: Counter[str] = Counter(str(i._scored.status) for i in judged)  # type: ignore[union-attr]
        self.counts.update(batch)
        self.rollouts = []
        for inst in judged:
            stats, scored = inst._stats, inst._scored
            assert scored is not None
            self.episodes.update({"tool_calls": stats.get("tool_calls", 0), "tool_errors": stats.get("tool_errors", 0),
                                  f"ended_by/{stats.get('ended_by') or 'error'}": 1})
            self.rollouts.append({"task": inst._env.name, "id": inst._example.id if inst._example else None,
                                  "status": str(scored.status), "total": scored.total,
                                  "components": dict(scored.components), "stats": dict(stats)})
        if log_metric is not None:  # every status seen so far, 0 when absent, so TRL's step means are true
            for status in sorted(self.counts):
                log_metric(f"grpo_env/status/{status}", float(batch.get(status, 0)))
            log_metric("grpo_env/tool_errors", float(sum(i._stats.get("tool_errors", 0) for i in judged)))

    # -- life -------------------------------------------------------------------------------------

    def close(self) -> None:
        """End every open episode (their processes stopped and reaped), then the host and the service."""
        if self._closed:
            return
        self._closed = True
        try:
            for inst in self._instances:
                self._end(inst)
            self.host.close()
        finally:
            self.service.close()

    def __enter__(self) -> "TRLEnvironments":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _content(message: dict) -> str:
    """A message's text (TRL's parsed content: a string, or content blocks)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _why(outcome: Outcome | None) -> str:
    if outcome is None:
        return "it ended"
    return plain(str(outcome.details.get("error") or outcome.details.get("reason") or outcome.status))


__all__ = ["EnvironmentRefused", "Rollout", "TRLEnvironments", "refuse_unfit", "rollout_class", "tool_method",
           "unfit_reason"]
