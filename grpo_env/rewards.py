"""The reward boundary: call a reward safely, and combine component outcomes into one judgement;
and the one description of a reward that `grpo-env rewards` and docs/rewards.md both print."""

from __future__ import annotations

import math
import traceback
from typing import Iterable, Mapping

from grpo_env.types import Example, Outcome, Reward, Scored, Status


def call_reward(reward: Reward, completion: str, example: Example) -> Outcome:
    """Run one reward; whatever goes wrong inside becomes an ``error`` outcome naming the reward.

    Exceptions, a wrong return type and a non-finite score are infrastructure failures (the
    reward's fault, not the model's), so they are reported, never turned into a 0 score.
    """
    try:
        out = reward.fn(completion, example)
    except Exception as e:
        tb = traceback.format_exc(limit=-3)
        return Outcome.error(f"reward {reward.name!r} raised {type(e).__name__}: {e}", reward=reward.name, traceback=tb)
    if not isinstance(out, Outcome):
        return Outcome.error(
            f"reward {reward.name!r} returned {type(out).__name__}, expected grpo_env.Outcome", reward=reward.name
        )
    return out


def combine(components: Mapping[str, Outcome], weights: Mapping[str, float]) -> Scored:
    """The weighted total of a completion's component outcomes.

    - any ``error`` component: total NaN, status ``error`` (no signal rather than a wrong one);
    - ``not_applicable`` components are left out of the sum; all of them: total NaN;
    - otherwise ``sum(weight * score)``; the status is that of the first component (the task's
      primary reward), or of the first applicable one when the primary is not applicable.
    """
    outcomes = [(name, components[name]) for name in weights]
    errors = [o for _, o in outcomes if o.status is Status.ERROR]
    if errors:
        return Scored(total=math.nan, status=Status.ERROR, components=dict(outcomes))
    applicable = [(n, o) for n, o in outcomes if o.status is not Status.NOT_APPLICABLE]
    if not applicable:
        return Scored(total=math.nan, status=Status.NOT_APPLICABLE, components=dict(outcomes))
    total = sum(weights[n] * o.score for n, o in applicable)
    return Scored(total=total, status=applicable[0][1].status, components=dict(outcomes))


ALWAYS = "`error` (the reward raised, returned garbage or its worker died; excluded from training)"


def score_range(reward: Reward) -> str:
    """``min to max`` (``at most max`` when the reward does not declare its worst score)."""
    if reward.min_score is None:
        return f"at most {reward.max_score:g}"
    return f"{reward.min_score:g} to {reward.max_score:g}"


def _md(text: str) -> str:
    """Plain text safe in markdown: tags such as ``<think>`` shown, not swallowed as HTML; no table breaks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def reward_markdown(reward: Reward, plugin: str, escape: bool = True) -> str:
    """One reward as a markdown section: what it checks, gold keys, scores, statuses, timeout
    (``escape=False``: text for a terminal, tags left as they are)."""
    md = _md if escape else str
    lines = [f"## `{reward.name}`", "", f"Plugin `{plugin}`. {md(reward.description) or '(no description)'}", ""]
    lines.append(f"- score: {score_range(reward)} (full marks: {reward.max_score:g})")
    statuses = ", ".join(f"`{s}`" for s in reward.statuses) or "not declared"
    lines.append(f"- statuses: {statuses}; and always possible: {ALWAYS}")
    lines.append(f"- timeout: {reward.timeout:g} s per call (hard deadline; past it the outcome is `timeout`)")
    if reward.gold_keys:
        lines.append("- gold keys read (`example.gold`; `a.b` is `gold[\"a\"][\"b\"]`):")
        lines += [f"  - `{key}`: {md(meaning)}" for key, meaning in reward.gold_keys.items()]
    else:
        lines.append("- gold keys read: none (it judges the completion alone)")
    return "\n".join(lines) + "\n"


# the statuses an environment's own outcome may have whatever it declares: the core gives them
ENV_ALWAYS = (Status.ERROR, Status.TIMEOUT, Status.NOT_APPLICABLE)
ENV_ALWAYS_TEXT = ("`error` (the environment raised or its process died; excluded from training), `timeout` (it ran "
                   "past its step or episode deadline; 0), `not_applicable` (it ended the episode without an "
                   "outcome: its reward components judge alone)")


def outcome_range(env) -> str:
    """An environment's declared outcome scores, ``low to high``."""
    low, high = env.outcome_range
    return f"{low:g} to {high:g}"


def environment_markdown(env, plugin: str, escape: bool = True) -> str:
    """An environment's own outcome as a markdown section, in the shape of a reward's: what the
    environment judges, its score range and statuses, how its rewards weigh it, its deadlines."""
    md = _md if escape else str
    own = env.rewards.get(env.name)
    others = ", ".join(f"{n} = {w:g}" for n, w in env.rewards.items() if n != env.name)
    lines = [f"## `{env.name}` (an environment's own outcome)", "",
             f"Plugin `{plugin}`. The outcome environment `{env.name}` gives each episode it ends, or that the "
             f"core stops (`Episode.end`). The environment: {md(env.description) or '(no description)'}", ""]
    lines.append(f"- score: {outcome_range(env)} (declared outcome_range)")
    statuses = ", ".join(f"`{s}`" for s in env.outcome_statuses) or "not declared"
    lines.append(f"- statuses: {statuses}; and always possible: {ENV_ALWAYS_TEXT}")
    if own:
        weighed = f"weight {own:g} under its own name" + (f", with {others}" if others else "")
    else:
        weighed = (f"weight 0: its rewards ({others or 'none'}) leave it out; reported, not paid, unless a "
                   f"recipe adds \"{env.name}\" to the task's rewards")
    lines.append(f"- in its rewards: {weighed}")
    lines.append(f"- deadlines: {env.step_timeout:g} s per turn, {env.episode_timeout:g} s per episode "
                 "(past either the outcome is `timeout`)")
    return "\n".join(lines) + "\n"


def rewards_page(rewards: Mapping[str, Reward], origin: Mapping[str, str], plugins: Iterable[str]) -> str:
    """A markdown page of every reward of the named ``plugins`` (``origin``: reward name -> plugin);
    with the built-in plugins it is docs/rewards.md."""
    wanted = set(plugins)
    names = sorted(n for n in rewards if origin[n] in wanted)
    head = [
        "# Rewards",
        "",
        f"<!-- generated: GRPO_ENV_PLUGINS={','.join(sorted(wanted))} grpo-env rewards --markdown > docs/rewards.md "
        "(tests/test_rewards_docs.py fails when this page is stale) -->",
        "",
        "Every reward registered by the plugins " + ", ".join(f"`{p}`" for p in sorted(wanted)) + ". "
        "`grpo-env rewards NAME` prints the same for any installed reward, with the tasks that use it. "
        "A task names the rewards that judge it in `Task.rewards`; to use another plugin's reward, see "
        "[Writing a plugin](plugins.md#using-another-plugins-reward).",
        "",
        "| reward | plugin | score | what it checks |",
        "|---|---|---|---|",
    ]
    head += [f"| [`{n}`](#{n.replace('.', '')}) | {origin[n]} | {score_range(rewards[n])} | {_md(rewards[n].description)} |"
             for n in names]
    return "\n".join(head) + "\n\n" + "\n".join(reward_markdown(rewards[n], origin[n]) for n in names)
