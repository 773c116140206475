"""`grpo-env check`: run a task's own fixtures through the real scoring service, twice; an
environment's scripted episodes through the real episode processes, twice.

A task passes when it ships fixtures, every fixture gets the judgement it declares, two runs give
identical outcomes, and its example streams are deterministic for a (split, seed). A failure says
why in full: an ``error`` outcome brings its message and traceback (as lines, not escaped), since
"(error)" alone sends the author hunting. A fixture aimed at an optional component that is absent
(its plugin is not installed) is skipped, not failed.

A task may also offer ``probes(example) -> [(label, completion)]``: completions that solve nothing
(the code tasks' constant functions, ``grpo_env_code.probes``). They are scored like any completion,
through the scoring service, on the first ``PROBE_SAMPLE`` examples of each split, and the task is
reported as having *weak tests* when what they earn passes a bound (``WEAK_MEAN``, ``WEAK_EXAMPLE``).
That is a warning, not a failure: the reward and its sandbox are right, the examples are what is
weak (often a public data set the user cannot change), and the remedy is in the recipe (stricter
scoring such as ``all_or_nothing``) or in the data (more tests).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from grpo_env.environment import SCORE_TOLERANCE, Environment, EpisodeFixture
from grpo_env.episodes import EpisodeHost, play
from grpo_env.plugins import Registry
from grpo_env.rewards import ENV_ALWAYS
from grpo_env.scoring import ScoringService
from grpo_env.types import Example, Fixture, Message, Outcome, Scored, Status, Task

SAMPLE = 8  # examples drawn per split for the determinism check
PROBE_SAMPLE = 64  # examples per split that a task's probes are scored on
# Weak tests, measured with the best probe for each example (a policy can learn which constant
# suits which problem: "is_..." -> True). GRPO compares completions of one prompt with each other.
WEAK_EXAMPLE = 0.5  # more than half of full marks for no solution on one example: in a group where
#                     nobody solves it, the constant scores highest and is what gets reinforced
WEAK_MEAN = 0.2  # more than a fifth of full marks on average over the sample: the set pays, across
#                  the board, for answering only the edge cases (empty input, 0, False) a suite holds


@dataclass
class TaskCheck:
    task: str
    fixtures: int = 0
    passed: int = 0
    skipped: list[str] = field(default_factory=list)  # fixtures of absent optional components
    deterministic: bool = True
    problems: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # the task's own flags: known, refused in training
    probed: int = 0  # examples its probes were scored on (0: it offers none)
    no_solution: float | None = None  # mean over them of the best probe's share of full marks
    weak: list[str] = field(default_factory=list)  # weak-tests warnings (they do not make it fail)

    @property
    def ok(self) -> bool:
        run = self.fixtures - len(self.skipped)
        return not self.problems and run > 0 and self.passed == run and self.deterministic


def describe(name: str, outcome: Outcome) -> str:
    """``name=score (status)`` (``name (status, excluded)`` for ``error`` and ``not_applicable``, which
    carry no score), plus the reason an ``error`` or ``not_applicable`` outcome gives and, for an
    error, its traceback as indented lines."""
    # an excluded outcome (error, not_applicable) carries no score: its 0 is no judgement, so none is shown
    if outcome.status.excluded:
        text = f"{name} ({outcome.status}, excluded)"
    else:
        text = f"{name}={outcome.score:g} ({outcome.status})"
    reason = outcome.details.get("error") or outcome.details.get("reason")
    if (outcome.status.excluded or outcome.status is Status.TIMEOUT) and reason:
        text += f": {reason}"
    tb = outcome.details.get("traceback")
    if outcome.status is Status.ERROR and isinstance(tb, str) and tb.strip():
        text += "\n" + "\n".join("    " + line for line in tb.rstrip().splitlines())
    return text


def _short_of_full(name: str, o: Outcome, task: Task, registry: Registry) -> bool:
    """True when component ``name`` is below full marks. An environment's own outcome is full when
    ``correct``, or when it gave none (``not_applicable``) and its components judge alone."""
    if name in registry.rewards and name != task.name:
        return o.score != registry.rewards[name].max_score
    return not (o.status is Status.CORRECT or (o.status is Status.NOT_APPLICABLE and not task.rewards.get(name)))


def judge(fixture: Fixture | EpisodeFixture, scored: Scored, task: Task, registry: Registry) -> str | None:
    """Why ``scored`` does not meet the fixture's expectation, or None when it does."""
    comps = scored.components
    if fixture.expect == "full":
        short = {n: o for n, o in comps.items() if _short_of_full(n, o, task, registry)}
        if scored.status is Status.ERROR or short:
            got = ", ".join(describe(n, o) for n, o in (short or comps).items())
            return f"expected full marks, got {got}"
        return None
    name = getattr(fixture, "reward", None)
    if name is not None and name not in comps:
        return f"fixture names reward {name!r}, which task {task.name!r} does not use"
    if fixture.expect == "zero":
        value = comps[name].score if name else scored.total
        if math.isnan(value) or value != 0:
            if name:
                return f"expected {name} = 0, got {describe(name, comps[name])}"
            why = "; ".join(describe(n, o) for n, o in comps.items() if o.status.excluded)
            return f"expected total = 0, got {value:g} ({scored.status})" + (f": {why}" if why else "")
        return None
    want = Status(fixture.expect)
    name = name or next(iter(task.rewards))
    if name not in comps:  # an episode the core stopped, or whose environment failed: its own outcome alone
        name = task.name
    got = comps[name]
    if got.status is not want:
        extra = "" if got.status.excluded else f" {got.details}"
        return f"expected status {want} from {name}, got {describe(name, got)}{extra}"
    return None


def _score_mismatch(fixture: EpisodeFixture, scored: Scored) -> str | None:
    """Why the episode's reward is not the fixture's ``score``, or None."""
    if fixture.score is None or (math.isfinite(scored.total)
                                 and math.isclose(scored.total, fixture.score, rel_tol=0, abs_tol=SCORE_TOLERANCE)):
        return None
    got = "; ".join(describe(n, o) for n, o in scored.components.items())
    return f"expected reward {fixture.score:g}, got {scored.total:g} ({scored.status}): {got}"


def _undeclared(env: Environment, scored: Scored) -> str | None:
    """Why the environment's own outcome is outside what it declares (``outcome_range``, and
    ``outcome_statuses`` when declared), or None. The statuses every environment may get (an error,
    a deadline, no outcome at all) are never undeclared."""
    o = scored.components.get(env.name)
    if o is None or o.status in ENV_ALWAYS:
        return None
    low, high = env.outcome_range
    whys = []
    if not low <= o.score <= high:
        whys.append(f"score {o.score:g} is outside its outcome_range {low:g} to {high:g}")
    if env.outcome_statuses and o.status not in env.outcome_statuses:
        whys.append(f"status {o.status} is not among its outcome_statuses "
                    f"({', '.join(str(s) for s in env.outcome_statuses)})")
    return f"the environment's outcome {describe(env.name, o)}: {' and '.join(whys)}" if whys else None


def _unseen(fixture: EpisodeFixture, observations: list[list[Message]]) -> str | None:
    """Why some of the fixture's ``observations_contain`` appear in no observation, or None."""
    texts = [m.content for turn in observations for m in turn]
    missing = [s for s in fixture.observations_contain if not any(s in t for t in texts)]
    if not missing:
        return None
    shown = "; ".join(f"after turn {i}: {m.role} {m.content[:160]!r}"
                      for i, turn in enumerate(observations, 1) for m in turn) or "nothing (no observation)"
    if len(shown) > 1200:
        shown = shown[:1200] + " ..."
    return f"expected an observation containing {', '.join(repr(s) for s in missing)}; the model saw {shown}"


def _stream_sample(task: Task, split: str, seed: int, options: dict | None = None) -> list[str]:
    opts = task.parse_options(options or {})
    return [ex.model_dump_json() for ex in itertools.islice(task.examples(split, seed, opts), SAMPLE)]


def _check_streams(task: Task, result: TaskCheck, options: dict | None = None) -> None:
    for split in task.splits:
        try:
            if _stream_sample(task, split, 0, options) != _stream_sample(task, split, 0, options):
                result.deterministic = False
                result.problems.append(f"examples({split!r}, seed=0) differ between two calls")
        except Exception as e:
            result.problems.append(f"examples({split!r}, seed=0) failed: {type(e).__name__}: {e}")


def _fixtures(task: Task, result: TaskCheck, none: str) -> list | None:
    """The task's fixtures, counted on ``result`` (``none`` recorded when it has none); None when they
    cannot be built (the reason recorded)."""
    try:
        fixtures = task.get_fixtures()
    except Exception as e:
        result.problems.append(f"fixtures could not be built: {type(e).__name__}: {e}")
        return None
    result.fixtures = len(fixtures)
    if not fixtures:
        result.problems.append(none)
    return fixtures


def check_environment(env: Environment, registry: Registry, host: EpisodeHost,
                      options: dict | None = None) -> TaskCheck:
    """An environment's scripted episodes, each played twice through the real episode processes:
    the declared judgement, reward, observations, tool-error count and turns played, an outcome within
    the environment's declared ``outcome_range`` and ``outcome_statuses``, and identical runs."""
    result = TaskCheck(task=env.name)
    fixtures = _fixtures(env, result, "the environment ships no scripted episodes (fixtures)")
    if fixtures is None:
        return result
    for i, f in enumerate(fixtures):
        label = f.note or f.example.id
        example = f.example.model_copy(update={"task": env.name, "tools": env.tool_specs()})
        a, b = play(host, example, f.turns), play(host, example, f.turns)
        whys = [judge(f, a.scored, env, registry)]
        if f.tool_errors is not None and a.stats.get("tool_errors") != f.tool_errors:
            whys.append(f"expected {f.tool_errors} tool error(s), the core counted {a.stats.get('tool_errors')}")
        if f.turns_played is not None and a.stats.get("turns") != f.turns_played:
            whys.append(f"expected the episode to last {f.turns_played} turn(s), it lasted {a.stats.get('turns')}")
        whys += [_score_mismatch(f, a.scored), _unseen(f, a.observations), _undeclared(env, a.scored)]
        whys = [w for w in whys if w]
        if whys:
            result.problems.append(f"fixture {i} ({label}): {'; '.join(whys)}")
        else:
            result.passed += 1
        same = a.scored.model_dump_json() == b.scored.model_dump_json() and a.observations == b.observations
        if not same:
            result.deterministic = False
            result.problems.append(f"fixture {i} ({label}): two runs differ")
    _check_streams(env, result, options)
    return result


def _check_probes(task: Task, registry: Registry, service: ScoringService, result: TaskCheck,
                  options: dict | None) -> None:
    """Score the task's probes (completions that solve nothing) on a sample of its examples, with
    its first reward (the one that decides accuracy), and record weak tests as warnings."""
    probes = task.probes
    if probes is None:
        return
    name = next(iter(task.rewards))
    top = registry.rewards[name].max_score if name in registry.rewards else 1.0
    try:
        opts = task.parse_options(options or {})
        sample: dict[str, Example] = {}  # by id: a file that is both splits yields each problem twice
        for split in task.splits:
            for ex in itertools.islice(task.examples(split, 0, opts), PROBE_SAMPLE):
                sample.setdefault(ex.id, ex.model_copy(update={"task": task.name}))
        examples = list(sample.values())
        items = [(i, label, (name, ex, completion)) for i, ex in enumerate(examples)
                 for label, completion in probes(ex)]
    except Exception as e:
        result.problems.append(f"probes could not be built: {type(e).__name__}: {e}")
        return
    outcomes = service.score([item for _, _, item in items])
    best: dict[int, tuple[float, str]] = {}  # example -> its best probe's share of full marks, and the probe
    for (i, label, _), o in zip(items, outcomes):
        if o.status.excluded or not math.isfinite(o.score) or top <= 0:
            continue  # no signal (the sandbox failed): counted neither way
        share = o.score / top
        if share > best.get(i, (-1.0, ""))[0]:
            best[i] = (share, label)
    if not best:
        return
    result.probed = len(best)
    result.no_solution = sum(share for share, _ in best.values()) / len(best)
    weak = sorted(((share, examples[i].id, label) for i, (share, label) in best.items() if share > WEAK_EXAMPLE),
                  key=lambda w: -w[0])
    if result.no_solution > WEAK_MEAN:
        result.weak.append(f"submissions that solve nothing (its probes, the best one for each example) earn "
                           f"{result.no_solution:.2f} of full marks on average over {len(best)} examples "
                           f"(bound {WEAK_MEAN}): score all-or-nothing, or add tests")
    if weak:
        shown = ", ".join(f"{ex_id} ({label}: {share:.2f})" for share, ex_id, label in weak[:10])
        more = f" and {len(weak) - 10} more" if len(weak) > 10 else ""
        result.weak.append(f"{len(weak)} of {len(best)} examples pay more than {WEAK_EXAMPLE} of full marks to a "
                           f"submission that solves nothing: {shown}{more}")


def check_task(task: Task, registry: Registry, service: ScoringService, options: dict | None = None) -> TaskCheck:
    """``options``: the task options its example streams and probes use (its fixtures carry their own)."""
    result = TaskCheck(task=task.name)
    try:
        result.flagged = task.flagged(task.parse_options(options or {})) if task.flagged else []
    except Exception as e:
        result.problems.append(f"its flags could not be computed: {type(e).__name__}: {e}")
    fixtures = _fixtures(task, result, "the task ships no fixtures")
    if fixtures is None:
        return result
    absent = {r for r in task.optional if r not in task.rewards}
    for i, f in enumerate(fixtures):
        if f.reward in absent:
            result.skipped.append(f"fixture {i} ({f.note or f.example.id}): optional reward {f.reward!r} is absent")
    index = [i for i, f in enumerate(fixtures) if f.reward not in absent]
    fixtures = [fixtures[i] for i in index]
    weights = [task.rewards] * len(fixtures)
    examples = [f.example.model_copy(update={"task": task.name}) for f in fixtures]
    completions = [f.completion for f in fixtures]
    first = service.score_examples(weights, examples, completions)
    second = service.score_examples(weights, examples, completions)
    for i, fixture, a, b in zip(index, fixtures, first, second):
        why = judge(fixture, a, task, registry)
        if why is None:
            result.passed += 1
        else:
            label = fixture.note or fixture.example.id
            result.problems.append(f"fixture {i} ({label}): {why}")
        if a.model_dump_json() != b.model_dump_json():
            result.deterministic = False
            result.problems.append(f"fixture {i}: two runs differ")
    _check_streams(task, result, options)
    _check_probes(task, registry, service, result, options)
    return result
