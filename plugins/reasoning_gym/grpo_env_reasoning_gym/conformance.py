"""The conformance check of reasoning-gym's scorers: cheap strategies that commit to nothing, scored
through ``rg.score`` over many examples per dataset, and the table of it in docs/reasoning_gym.md.

For each dataset, the first ``N_EXAMPLES`` examples of its ``test`` stream (default options) are
scored through the real reward function with:

- each example's gold answer (it must get full marks on every example);
- junk constants (``JUNK``: empty, ``x``, ``0``, ``I don't know``, ``{}``, ``[]``), on every example
  whose gold they are not: any credit, or a scorer that fails on them, flags the dataset;
- the most frequent gold seen, as a constant answer on every example: flagged when its mean score
  beats uniform guessing over the k distinct golds seen by ``MARGIN`` (mean > 1/k + MARGIN), or
  when every gold seen is the same;
- hedges built from the golds seen (the two most frequent concatenated, then space-separated, then
  every distinct gold space-separated) and echoes of the prompt (the whole question, its last line,
  everything after its last colon): flagged when one earns systematic credit (mean > ``CREDIT``).

Each strategy is also scored as upstream scores it (the dataset's opt-in option set, for the
datasets ``rg.score`` scores by exact match). Each dataset's record says whether its scorer shows
upstream's substring rule (the gold wrapped in either filler scores exactly
``len(gold)/len(answer)``), which strategies upstream gives partial credit (``farmed``), and
whether its scorer runs a code probe, upstream and through ``rg.score``. A dataset that shows the
rule or pays that partial credit without being scored by exact match (``datasets.exact_option``),
or whose scorer runs a probe through ``rg.score``, is flagged.

A full run takes minutes (a few generators take a second per example), so its result is committed:
``python -m grpo_env_reasoning_gym.conformance --jobs 2 --write docs/reasoning_gym.md`` recomputes
every dataset, writes ``RECORD`` (JSON, next to this file) and the table between the markers of the
page; ``--from-record`` renders the table from the record without recomputing. ``Task.flagged``
reads the record when it was made by the installed reasoning-gym under the current rules
(``rules()``), and recomputes the dataset's verdict otherwise, so it cannot go stale.
The first example's gold and junk probes are also each task's fixtures (``probes``), so ``grpo-env
check`` shows the flagged tasks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from grpo_env import Example, Outcome, Status

from grpo_env_reasoning_gym import datasets, guard

N_EXAMPLES = 50  # examples per dataset (the first of the test stream, seed 0, default options)
MARGIN = 0.15  # a constant answer is flagged when its mean exceeds 1/k + MARGIN (k distinct golds seen)
CREDIT = 0.05  # a hedge or an echo is flagged when its mean exceeds this
JUNK = ("", "x", "0", "I don't know", "{}", "[]")
HEDGES = ("AB", "A B", "all")  # top two golds concatenated / space-separated; every distinct gold
ECHOES = ("question", "last line", "after ':'")
FILLERS = (("#", " #"), ("~~ ", "~"))  # the substring-rule probe: the gold wrapped in text no parser accepts
MARKER = "rg_conformance_ran"  # what the code probes set in sys.__dict__ when a scorer runs them
CODE = (f"__import__('sys').__dict__.setdefault('{MARKER}')", f"[__import__('sys').__dict__.setdefault('{MARKER}')]")
STRATEGIES = ([f"junk {j!r}" for j in JUNK] + ["mode"] + [f"hedge {h}" for h in HEDGES]
              + [f"echo {e}" for e in ECHOES])  # the order of the table and of the reasons
RECORD = Path(__file__).with_name("conformance.json")
START, END = "<!-- conformance:start -->", "<!-- conformance:end -->"
HEADER = ["task", "curriculum", "scored by", "gold", "gold, entry via JSON", *(f"`{j!r}`" for j in JUNK),
          "mode: mean > 1/k + 0.15", *(f"hedge {h}" for h in HEDGES), *(f"echo {e}" for e in ECHOES),
          "best junk, hedge or echo, upstream's scoring", "flagged: why"]


def rules() -> dict[str, Any]:
    """What a record depends on besides reasoning-gym: a record made under other rules is recomputed."""
    return {"examples": N_EXAMPLES, "margin": MARGIN, "credit": CREDIT, "junk": list(JUNK), "hedges": list(HEDGES),
            "echoes": list(ECHOES), "code": list(CODE),
            "exact": {n: o for n in datasets.dataset_names() if (o := datasets.exact_option(n)) is not None},
            "guarded": sorted(n for n in datasets.dataset_names() if guard.runs_answer(n))}


def _gold(ex: Example) -> str | None:
    answer = ex.gold["entry"].get("answer")
    return answer.strip() if isinstance(answer, str) else None


def probes(name: str):
    """``(example, label, completion, expectation)`` on the dataset's first example, its fixtures:
    the gold answer (when the dataset has one) must score full marks, each junk answer zero (a junk
    string that is the gold answer is left out), and text without an answer block is unparsable."""
    from grpo_env_reasoning_gym.tasks import first_example

    ex = first_example(name)
    answer = ex.gold["entry"].get("answer")
    out = []
    if isinstance(answer, str):
        out.append((ex, "gold answer", f"<answer>{answer}</answer>", "full"))
    out += [(ex, f"junk {j!r}", f"<answer>{j}</answer>", "zero") for j in JUNK if j != _gold(ex)]
    out.append((ex, "no answer block", "I think it is 3.", Status.UNPARSABLE))
    return out


def _last_line(question: str) -> str:
    lines = [line.strip() for line in question.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _after_colon(question: str) -> str | None:
    head, colon, tail = question.rpartition(":")
    return tail.strip() or None if colon else None


def strategies(examples: list[Example]) -> dict[str, list[str | None]]:
    """Each cheap strategy's answer to each example (None: the strategy skips that example)."""
    golds = [_gold(ex) for ex in examples]
    seen = Counter(g for g in golds if g is not None)
    out: dict[str, list[str | None]] = {f"junk {j!r}": [None if j == g else j for g in golds] for j in JUNK}
    if seen:
        ranked = [g for g, _ in seen.most_common()]  # ties: first seen first
        out["mode"] = [ranked[0]] * len(examples)
        if len(ranked) >= 2:
            hedges = {"AB": ranked[0] + ranked[1], "A B": f"{ranked[0]} {ranked[1]}", "all": " ".join(ranked)}
            out.update({f"hedge {h}": [hedges[h]] * len(examples) for h in HEDGES})
    questions = [ex.gold["entry"].get("question", "") for ex in examples]
    out["echo question"] = list(questions)
    out["echo last line"] = [_last_line(q) for q in questions]
    out["echo after ':'"] = [_after_colon(q) for q in questions]
    return out


def _short(text: str, width: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= width else shown[:width - 1] + "…"


@dataclass
class Tally:
    """A strategy's outcomes over the examples it answered."""

    n: int = 0
    total: float = 0.0
    credited: int = 0  # examples with a score above 0
    full: int = 0  # examples with full marks
    errors: int = 0  # examples whose outcome was 'error' (the scorer raised or returned garbage)
    partial: int = 0  # examples with a score strictly between 0 and 1

    def add(self, o: Outcome) -> None:
        self.n += 1
        self.partial += o.status is Status.PARTIAL
        self.total += o.score
        self.credited += o.score > 0
        self.full += o.status is Status.CORRECT
        self.errors += o.status is Status.ERROR

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0


@dataclass
class Verdict:
    dataset: str
    examples: int
    exact: str | None  # the opt-in option when rg.score scores it by exact match (datasets.exact_option)
    substring_rule: bool  # its scorer showed upstream's substring rule on the filler probes
    runs_code: bool  # upstream's scorer ran a code probe (the answer as code)
    runs_code_scored: bool  # ... and did so through rg.score (the guard let it through)
    golds: list[str] = field(default_factory=list)  # the distinct golds seen, most frequent first (at most 3 kept)
    k: int = 0  # distinct golds seen (0: no single gold answer)
    tallies: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> Tally fields
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> Tally under upstream's scoring
    seconds: float = 0.0

    def tally(self, strategy: str, upstream: bool = False) -> Tally | None:
        t = (self.upstream if upstream else self.tallies).get(strategy)
        return Tally(**t) if t is not None else None

    @property
    def farmed(self) -> list[str]:
        """The strategies that commit to nothing and get partial credit from upstream's scorer."""
        return [s for s in STRATEGIES if (t := self.tally(s, upstream=True)) and t.partial]

    @property
    def upstream_best(self) -> tuple[str, float] | None:
        """The junk, hedge or echo with the highest mean under upstream's scoring (the constant has its column)."""
        return max(((s, t.mean) for s in STRATEGIES if s != "mode" and (t := self.tally(s, upstream=True))),
                   key=lambda p: p[1], default=None)  # the first of the best, in the table's order

    @property
    def reasons(self) -> list[str]:
        why = []
        gold = self.tally("gold")
        if gold is not None and gold.full < gold.n:
            why.append(f"gold answer short of full marks on {gold.n - gold.full}/{gold.n} examples "
                       f"(mean {gold.mean:.3g})")
        failing = {s: t for s in STRATEGIES if (t := self.tally(s)) is not None and t.errors}
        if failing:
            why.append("scorer fails on " + ", ".join(f"{s.removeprefix('junk ')} ({t.errors}/{t.n})"
                                                      for s, t in failing.items()))
        credited = [f"{j!r} on {t.credited}/{t.n} (mean {t.mean:.3g})" for j in JUNK
                    if (t := self.tally(f"junk {j!r}")) is not None and t.credited]
        if credited:
            why.append(f"junk credited: {', '.join(credited)}")
        mode = self.tally("mode")
        if mode is not None and self.k == 1 and self.examples > 1:
            why.append(f"every gold seen is {_short(self.golds[0])}: a constant answer is always right")
        elif mode is not None and mode.mean > 1 / self.k + MARGIN:
            why.append(f"constant {_short(self.golds[0])} scores {mode.mean:.3g} > 1/{self.k} + {MARGIN}")
        for s in [f"hedge {h}" for h in HEDGES] + [f"echo {e}" for e in ECHOES]:
            t = self.tally(s)
            if t is not None and t.mean > CREDIT:
                why.append(f"{s} earns {t.mean:.3g} > {CREDIT}")
        if self.substring_rule and not self.exact:
            why.append("scorer credits the gold inside other text (upstream's substring rule) and is not exact-matched")
        if self.farmed and not self.exact:
            why.append(f"upstream's partial credit goes to {', '.join(self.farmed)} and is not exact-matched")
        if self.runs_code_scored:
            why.append("scorer runs the answer as code")
        return why

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def sample(name: str, n: int = N_EXAMPLES) -> list[Example]:
    """The dataset's first ``n`` test examples (seed 0, default options): the conformance sample."""
    import itertools

    from grpo_env_reasoning_gym.options import options_model
    from grpo_env_reasoning_gym.tasks import examples

    opts = options_model(name).model_construct().model_dump()  # no validation: no flag refusal here
    return list(itertools.islice(examples(name, "test", 0, opts), n))


def _shows_substring_rule(name: str, ex: Example) -> bool:
    """Whether upstream's scorer gives the gold wrapped in filler exactly ``len(gold)/len(answer)``,
    for both fillers (one could match by chance), bare or inside braces (where codeio applies it)."""
    from grpo_env_reasoning_gym.reward import scorer_for

    gold = _gold(ex)
    if not gold:
        return False
    scorer = scorer_for(name, "{}")

    def matches(answer: str) -> bool:
        try:
            value = scorer.score_answer(answer, ex.gold["entry"])
        except Exception:
            return False
        return isinstance(value, float) and math.isclose(value, len(gold) / len(answer), rel_tol=1e-9)

    return any(all(matches(fmt.format(a + gold + b)) for a, b in FILLERS) for fmt in ("{}", "{{{}}}"))


def _runs_code(name: str, ex: Example, scored: bool) -> bool:
    """Whether the scorer runs a code probe: upstream's own (``scored=False``) or through ``rg.score``."""
    from grpo_env_reasoning_gym.reward import rg_score, scorer_for

    ran = False
    for text in CODE:
        try:
            if scored:
                rg_score(f"<answer>{text}</answer>", ex)
            else:
                scorer_for(name, "{}").score_answer(text, ex.gold["entry"])
        except Exception:
            pass
        ran = ran or MARKER in sys.__dict__
        sys.__dict__.pop(MARKER, None)
    return ran


def compute(name: str, n: int = N_EXAMPLES) -> Verdict:
    """Score every strategy on the dataset's sample in this process, with the real reward function,
    as ``rg.score`` scores it by default and as upstream's scorer does (the opt-in option set)."""
    from grpo_env_reasoning_gym.reward import rg_score

    start = time.perf_counter()
    examples = sample(name, n)
    seen = Counter(g for ex in examples if (g := _gold(ex)) is not None)
    option = datasets.exact_option(name)
    v = Verdict(dataset=name, examples=len(examples), exact=option,
                substring_rule=any(_shows_substring_rule(name, ex) for ex in examples),
                runs_code=bool(examples) and _runs_code(name, examples[0], scored=False),
                runs_code_scored=bool(examples) and _runs_code(name, examples[0], scored=True),
                golds=[g for g, _ in seen.most_common(3)], k=len(seen))
    tallies: dict[str, Tally] = {}
    upstream: dict[str, Tally] = {}
    for ex in examples:
        answer = ex.gold["entry"].get("answer")
        if isinstance(answer, str):
            tallies.setdefault("gold", Tally()).add(rg_score(f"<answer>{answer}</answer>", ex))
            entry = datasets.json_copy(name, ex.gold["entry"])
            tallies.setdefault("gold json", Tally()).add(
                rg_score(f"<answer>{answer}</answer>", ex.model_copy(update={"gold": {**ex.gold, "entry": entry}})))
    for strategy, answers in strategies(examples).items():
        t, u = tallies.setdefault(strategy, Tally()), upstream.setdefault(strategy, Tally())
        for ex, text in zip(examples, answers):
            if text is None:
                continue
            out = rg_score(f"<answer>{text}</answer>", ex)
            t.add(out)
            if option is not None:
                opted = {**ex.gold, "options": {**ex.gold["options"], option: True}}
                out = rg_score(f"<answer>{text}</answer>", ex.model_copy(update={"gold": opted}))
            u.add(out)
    v.tallies = {s: asdict(t) for s, t in tallies.items() if t.n}
    v.upstream = {s: asdict(t) for s, t in upstream.items() if t.n}
    v.seconds = round(time.perf_counter() - start, 2)
    return v


# -- the committed record ---------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@cache
def recorded() -> dict[str, Verdict]:
    """The committed record's verdicts, when it was made by the installed reasoning-gym under the
    current rules; else empty (each verdict is then recomputed when needed)."""
    data = _load(RECORD)
    if data.get("reasoning_gym") != version("reasoning-gym") or data.get("rules") != rules():
        return {}
    fields = [f.name for f in dataclasses.fields(Tally)]

    def expand(v: dict[str, Any]) -> Verdict:
        for key in ("tallies", "upstream"):
            v[key] = {s: dict(zip(fields, t)) for s, t in v[key].items()}
        return Verdict(**v)

    return {name: expand(v) for name, v in data.get("datasets", {}).items()}


@cache
def verdict(name: str) -> Verdict:
    """The dataset's verdict: the committed record's when it is current, else computed now (cached)."""
    return recorded().get(name) or compute(name)


def write_record(verdicts: list[Verdict], path: Path = RECORD) -> None:
    """The verdicts as JSON, one dataset a line (the file stays reviewable in a diff)."""
    head = {"reasoning_gym": version("reasoning-gym"), "rules": rules()}
    fields = [f.name for f in dataclasses.fields(Tally)]

    def compact(v: Verdict) -> dict[str, Any]:  # a tally as a list in Tally's field order
        d = asdict(v)
        for key in ("tallies", "upstream"):
            d[key] = {s: [t[f] for f in fields] for s, t in d[key].items()}
        return d

    lines = [f"{json.dumps(v.dataset)}: {json.dumps(compact(v), sort_keys=True, separators=(',', ':'))}"
             for v in sorted(verdicts, key=lambda v: v.dataset)]
    body = json.dumps(head, sort_keys=True)[:-1]
    path.write_text(body + ',\n"datasets": {\n' + ",\n".join(lines) + "\n}}\n")


# -- the table --------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.2g}" if 0 < x < 0.01 else f"{x:.2f}".rstrip("0").rstrip(".")


def _cell(t: Tally | None, missing: str = "-") -> str:
    if t is None:
        return missing
    text = _num(t.mean)
    if t.errors:
        text += f" ({t.errors} err)"
    return text


def row(v: Verdict) -> str:
    curriculum = f"0..{datasets.max_difficulty(v.dataset)}" if datasets.has_curriculum(v.dataset) else "-"
    gold = v.tally("gold")
    mode = v.tally("mode")
    shown = repr(v.golds[0]) if v.golds else ""
    shown = shown if len(shown) <= 24 else shown[:23] + "…"
    mode_cell = "-" if mode is None else f"{mode.mean:.3g} vs {1 / v.k + MARGIN:.3g}, {shown}"
    best = v.upstream_best
    scored_by = {datasets.LENIENT: "exact (substring)", datasets.PARTIAL: "exact (partial)"}.get(v.exact, "upstream")
    cells = [f"`rg.{v.dataset}`", curriculum, scored_by, _cell(gold, "no gold"),
             _cell(v.tally("gold json")),
             *(_cell(v.tally(f"junk {j!r}"), "is gold") for j in JUNK), mode_cell,
             *(_cell(v.tally(f"hedge {h}")) for h in HEDGES), *(_cell(v.tally(f"echo {e}")) for e in ECHOES),
             "-" if best is None else f"{_num(best[1])} ({best[0]})" if best[1] else "0",
             ("**yes**: " + "; ".join(v.reasons)) if v.flagged else "no"]
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", "\\n") for c in cells) + " |"


def table(verdicts: list[Verdict]) -> str:
    flagged = sum(v.flagged for v in verdicts)
    exact = sum(v.exact is not None for v in verdicts)
    lines = [f"reasoning-gym {version('reasoning-gym')}: {len(verdicts)} datasets, {flagged} flagged, "
             f"{exact} scored by exact match; {N_EXAMPLES} examples each.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + [row(v) for v in verdicts])


def write(path: Path, verdicts: list[Verdict]) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: no {START} ... {END} markers to write the table between")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{table(verdicts)}\n{END}{tail}")


def _compute_logged(name: str) -> Verdict:
    v = compute(name)
    print(f"{name}: {v.seconds:.1f} s, {'flagged' if v.flagged else 'ok'}", file=sys.stderr, flush=True)
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grpo_env_reasoning_gym.conformance",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="MARKDOWN", help="rewrite the table between the markers of this file")
    ap.add_argument("--record", metavar="JSON", help=f"write the verdicts as JSON here (with --write and no "
                    f"datasets named: default {RECORD.name} next to this module, what Task.flagged reads)")
    ap.add_argument("--jobs", type=int, default=1, help="datasets computed in parallel processes")
    ap.add_argument("--from-record", action="store_true",
                    help="render the table from the committed record (when current) instead of recomputing")
    ap.add_argument("datasets", nargs="*", help="datasets to check (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.datasets if n not in datasets.dataset_names()]
    if unknown:
        print(f"error: not reasoning-gym datasets exposed here: {', '.join(unknown)}", file=sys.stderr)
        return 2
    names = args.datasets or datasets.dataset_names()
    start = time.perf_counter()
    if args.from_record:
        record = recorded()
        if not record:
            print(f"error: {RECORD} is missing or stale (another reasoning-gym or other rules)", file=sys.stderr)
            return 2
        verdicts = [record[n] for n in names]
        if args.write:
            write(Path(args.write), verdicts)
            print(f"wrote the conformance table of {len(names)} datasets to {args.write}")
        else:
            print(table(verdicts))
        return 0
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            verdicts = pool.map(_compute_logged, names, chunksize=1)
    else:
        verdicts = [_compute_logged(n) for n in names]
    print(f"computed {len(names)} datasets in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    record = Path(args.record) if args.record else RECORD if args.write and not args.datasets else None
    if record is not None:
        write_record(verdicts, record)
        print(f"wrote the verdicts of {len(names)} datasets to {record}")
    if args.write:
        write(Path(args.write), verdicts)
        print(f"wrote the conformance table of {len(names)} datasets to {args.write}")
    elif record is None:
        print(table(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
