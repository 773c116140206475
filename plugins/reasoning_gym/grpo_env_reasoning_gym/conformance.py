"""The conformance check of reasoning-gym's scorers, and the table of it in docs/reasoning_gym.md.

For each dataset, the first test example (default options) is scored through ``rg.score`` with the
gold answer and with junk answers. A dataset is *flagged* when its gold answer does not get full
marks, a junk answer gets any credit, or its scorer raises on text. The same probes are the task's
fixtures, so ``grpo-env check`` shows exactly the flagged tasks failing (as ``flagged``); they are refused in
training unless the recipe's task entry sets ``allow_flagged = true``.

``python -m grpo_env_reasoning_gym.conformance --write docs/reasoning_gym.md`` rewrites the table
between the markers of that file; without ``--write`` it prints the table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import version
from pathlib import Path

from grpo_env import Outcome, Status

from grpo_env_reasoning_gym import datasets

JUNK = ("", "x", "0", "I don't know")
START, END = "<!-- conformance:start -->", "<!-- conformance:end -->"
HEADER = ["task", "curriculum", "gold", "gold, entry via JSON", *(f"`{j!r}`" for j in JUNK), "flagged: why"]


def probes(name: str):
    """``(example, label, completion, expectation)`` for one dataset: the gold answer (when the dataset
    has one) must score full marks, each junk answer zero (a junk string that is the gold answer is
    left out), and text without an answer block is unparsable."""
    from grpo_env_reasoning_gym.tasks import first_example

    ex = first_example(name)
    answer = ex.gold["entry"].get("answer")
    out = []
    if isinstance(answer, str):
        out.append((ex, "gold answer", f"<answer>{answer}</answer>", "full"))
    gold = answer.strip() if isinstance(answer, str) else None
    out += [(ex, f"junk {j!r}", f"<answer>{j}</answer>", "zero") for j in JUNK if j != gold]
    out.append((ex, "no answer block", "I think it is 3.", Status.UNPARSABLE))
    return out


@dataclass
class Verdict:
    dataset: str
    gold: Outcome | None  # None: the dataset has no single gold answer (its scorer checks a solution)
    junk: dict[str, Outcome] = field(default_factory=dict)
    gold_json: Outcome | None = None  # the gold answer against the entry as a score file gives it back

    @property
    def reasons(self) -> list[str]:
        why = []
        if self.gold is not None and self.gold.status is not Status.CORRECT:
            why.append(f"gold answer {_cell(self.gold)}")
        failed = {j: _cell(o) for j, o in self.junk.items() if o.status is Status.ERROR}
        credited = [f"{j!r} {o.score:.3g}" for j, o in self.junk.items()
                    if o.status is not Status.ERROR and o.score > 0]
        for how, text in (("raises", "scorer raises on"), ("error", "scorer returns no valid score on")):
            if any(c == how for c in failed.values()):
                why.append(f"{text} {', '.join(repr(j) for j, c in failed.items() if c == how)}")
        if credited:
            why.append(f"junk credited: {', '.join(credited)}")
        return why

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def _cell(o: Outcome | None, missing: str = "no gold") -> str:
    if o is None:
        return missing
    if o.status is Status.ERROR:
        return "raises" if " raised " in o.details.get("error", "") else "error"
    return f"{o.score:.3g}"


@cache
def verdict(name: str) -> Verdict:
    """Score the probes in this process with the real reward function (cached per dataset)."""
    from grpo_env_reasoning_gym.reward import rg_score

    v = Verdict(dataset=name, gold=None)
    for ex, label, text, expect in probes(name):
        if expect == "full":
            v.gold = rg_score(text, ex)
            entry = datasets.json_copy(name, ex.gold["entry"])
            v.gold_json = rg_score(text, ex.model_copy(update={"gold": {**ex.gold, "entry": entry}}))
        elif expect == "zero":
            v.junk[label.removeprefix("junk ")[1:-1]] = rg_score(text, ex)
    return v


def row(v: Verdict) -> str:
    curriculum = f"0..{datasets.max_difficulty(v.dataset)}" if datasets.has_curriculum(v.dataset) else "-"
    junk = [_cell(v.junk.get(j), "is gold") for j in JUNK]
    cells = [f"`rg.{v.dataset}`", curriculum, _cell(v.gold), _cell(v.gold_json) if v.gold else "-", *junk,
             ("**yes**: " + "; ".join(v.reasons)) if v.flagged else "no"]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def table(names: list[str]) -> str:
    verdicts = [verdict(n) for n in names]
    flagged = sum(v.flagged for v in verdicts)
    lines = [f"reasoning-gym {version('reasoning-gym')}: {len(verdicts)} datasets, {flagged} flagged.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + [row(v) for v in verdicts])


def write(path: Path, names: list[str]) -> None:
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: no {START} ... {END} markers to write the table between")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{table(names)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m grpo_env_reasoning_gym.conformance",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="MARKDOWN", help="rewrite the table between the markers of this file")
    ap.add_argument("datasets", nargs="*", help="datasets to check (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.datasets if n not in datasets.dataset_names()]
    if unknown:
        print(f"error: not reasoning-gym datasets exposed here: {', '.join(unknown)}", file=sys.stderr)
        return 2
    names = args.datasets or datasets.dataset_names()
    if args.write:
        write(Path(args.write), names)
        print(f"wrote the conformance table of {len(names)} datasets to {args.write}")
    else:
        print(table(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
