"""Benchmark: our math answer check against Math-Verify on one corpus of known verdicts.

    pip install -e plugins/math math-verify      # math-verify is a benchmark-only dependency
    python bench/math_verify_bench.py            # prints the table, writes bench/results/math_verify_bench.json

The corpus (built here, deterministic) holds (gold, completion, equal?) rows:
- the hand-written equivalence table ``tasks/data/math/verdicts.jsonl`` (every answer form the
  issue names, equal and non-equal, wrapped in varied completion styles);
- completions for the plugin's own generators (arithmetic, fractions, linear equations, word
  problems): right answers in several notations and styles, wrong answers, hedges;
- hostile completions whose verdict is clear (towers of powers, code, hedges): never equal;
- two "blind" batches whose verdicts were written before either checker saw them, not used for tuning.

Ours runs through the real scoring service (forked worker, hard deadline enforced by kill), one
worker, so its throughput includes the isolation; Math-Verify runs in-process, single-threaded,
with its own timeouts. Each side parses each distinct gold once.
"""

from __future__ import annotations

import json
import platform
import random
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tasks" / "data" / "math" / "verdicts.jsonl"
OUT = ROOT / "bench" / "results" / "math_verify_bench.json"


# ---- the corpus --------------------------------------------------------------------------------


def _wrap(answer: str, k: int) -> str:
    """A completion that states ``answer`` in one of a few styles (all with a box)."""
    styles = [
        "Let me work through it step by step.\nSo we get \\boxed{%s}.",
        "We simplify and find the result.\n\nThe final answer is $\\boxed{%s}$",
        "<think>compute carefully</think><answer>\\boxed{%s}</answer>",
    ]
    return styles[k % len(styles)] % answer


def _table_rows() -> list[dict]:
    rows = []
    for k, line in enumerate(TABLE.read_text().splitlines()):
        r = json.loads(line)
        if not r["answer"]:
            continue
        rows.append({"source": "table", "form": r["form"], "gold": r["gold"], "completion": _wrap(r["answer"], k),
                     "equal": r["equal"]})
    return rows


def _generated_rows() -> list[dict]:
    from grpo_env_math import generators as gen

    rows: list[dict] = []

    def add(form, gold, completion, equal):
        rows.append({"source": "generated", "form": form, "gold": gold, "completion": completion, "equal": equal})

    rng = random.Random(0)
    for d in range(1, 6):
        for k in range(4):
            _, a = gen.make_arith(rng, d)
            v = int(a)
            add("gen_arith", a, f"First we compute the parts. The answer is {v}.", True)
            add("gen_arith", a, f"Adding up.\n#### {v:,}", True)
            add("gen_arith", a, f"\\boxed{{{v}.0}}", True)
            add("gen_arith", a, f"So the result is \\boxed{{{v + 1}}}.", False)
            add("gen_arith", a, f"\\boxed{{{v} \\text{{ or }} {v + 1}}}", False)

            _, f = gen.make_fractions(rng, d)
            q = Fraction(f)
            tex = f"\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"
            tex = ("-" if q < 0 else "") + tex
            add("gen_fraction", f, f"The sum is $\\boxed{{{tex}}}$.", True)
            add("gen_fraction", f, f"\\boxed{{\\dfrac{{{q.numerator * 2}}}{{{q.denominator * 2}}}}}", True)
            if q > 1 and q.denominator != 1:
                w = q.numerator // q.denominator
                add("gen_fraction", f, f"\\boxed{{{w}\\frac{{{q.numerator - w * q.denominator}}}{{{q.denominator}}}}}",
                    True)
            if q != 0 and q.numerator != q.denominator:
                add("gen_fraction", f, f"\\boxed{{\\frac{{{q.denominator}}}{{{q.numerator}}}}}", False)
            add("gen_fraction", f, f"The answer is {q + Fraction(1, 7)}.", False)

            _, x = gen.make_linear(rng, d)
            xq = Fraction(x)
            add("gen_linear", x, f"Isolating x gives $\\boxed{{x = {x}}}$", True)
            add("gen_linear", x, f"Therefore $x = {x}$.\n\nThe final answer is {x}", True)
            add("gen_linear", x, f"\\boxed{{x = {xq + 1}}}", False)
            if xq != 0:
                add("gen_linear", x, f"\\boxed{{{-xq}}}", False)

            _, w = gen.make_word(rng, d)
            add("gen_word", w, f"Putting it together, the total is ${w}.\n#### {w}", True)
            add("gen_word", w, f"So {w} dollars in all. \\boxed{{\\${w}}}", True)
            add("gen_word", w, f"\\boxed{{{w} \\text{{ dollars}}}}", True)
            add("gen_word", w, f"The answer is {int(w) + 2}.", False)
    return rows


def _hostile_rows() -> list[dict]:
    hostile = [
        "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
        "\\boxed{9^{9^{9}}}",
        "\\boxed{100000!}",
        "\\boxed{__import__('os').getcwd()}",
        "\\boxed{17 \\text{ or } 18}",
        "\\boxed{18 \\text{ or } 17}",
        "The answer is 17 or 18.",
        "\\boxed{\\{17, 18\\}}",
        "\\boxed{18 \\pm 1}",
        "\\boxed{" + "(" * 60 + "18" + ")" * 60 + "1}",
        "\\boxed{\\text{not } 18}",
        "\\boxed{1e999999}",
    ]
    return [{"source": "hostile", "form": "hostile", "gold": "18", "completion": c, "equal": False} for c in hostile]


# Verdicts written down before either checker saw these pairs; not used to tune ours:
# (gold, completion, equal?) by the mathematics, not by what either checker says.
BLIND = [
    ("\\frac{\\sqrt{3}}{3}", "\\boxed{\\frac{1}{\\sqrt{3}}}", True), ("4\\sqrt{5}", "\\boxed{\\sqrt{80}}", True),
    ("\\frac{9}{4}", "\\boxed{2.25}", True), ("-\\frac{1}{2}", "\\boxed{-0.5}", True),
    ("12", "The answer is $12$.", True), ("1,000", "\\boxed{1000}", True), ("0.125", "\\boxed{\\frac{1}{8}}", True),
    ("\\pi r^2", "\\boxed{r^2\\pi}", True), ("x^3 - 8", "\\boxed{(x-2)(x^2+2x+4)}", True),
    ("\\frac{x+1}{x-1}", "\\boxed{\\frac{1+x}{-1+x}}", True), ("(0, 1]", "\\boxed{(0,1]}", True),
    ("(-2, 5)", "\\boxed{(-2,5)}", True), ("\\{-1, 1\\}", "\\boxed{1, -1}", True), ("5", "\\boxed{\\sqrt{25}}", True),
    ("\\dfrac{7}{3}", "\\boxed{2\\frac{1}{3}}", True), ("60", "\\boxed{60^{\\circ}}", True),
    ("45\\%", "\\boxed{0.45}", True), ("\\frac{1}{e}", "\\boxed{e^{-1}}", True), ("2^{10}", "\\boxed{1024}", True),
    ("\\ln 8", "\\boxed{3\\ln 2}", True), ("(-\\infty, \\infty)", "\\boxed{(-\\infty,\\infty)}", True),
    ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\boxed{\\begin{bmatrix}1&0\\\\0&1\\end{bmatrix}}", True),
    ("3 + 4i", "\\boxed{4i+3}", True), ("\\sqrt{2}+\\sqrt{3}", "\\boxed{\\sqrt{3}+\\sqrt{2}}", True),
    ("1/4", "#### 0.25", True), ("100", "Thus, she has 100 stamps left.\n#### 100", True), ("7", "<answer>7</answer>", True),
    ("\\frac{3}{2}", "The final answer is: \\frac{3}{2}", True), ("14", "\\boxed{14 \\text{ cm}^2}", True),
    ("-3", "\\boxed{x=-3}", True), ("2", "\\fbox{2}", True), ("6", "\\boxed{3!}", True),
    ("\\frac{5}{12}", "\\boxed{\\frac{10}{24}}", True), ("1.5", "\\boxed{\\frac{3}{2}}", True),
    ("10^{-3}", "\\boxed{0.001}", True),
    ("\\frac{\\sqrt{3}}{3}", "\\boxed{\\sqrt{3}}", False), ("4\\sqrt{5}", "\\boxed{5\\sqrt{4}}", False),
    ("\\frac{9}{4}", "\\boxed{2.2}", False), ("-\\frac12", "\\boxed{\\frac12}", False),
    ("12", "The answer is $21$.", False), ("1,000", "\\boxed{100}", False), ("x^3-8", "\\boxed{(x-2)^3}", False),
    ("(0, 1]", "\\boxed{[0,1]}", False), ("(-2, 5)", "\\boxed{(5,-2)}", False), ("\\{-1, 1\\}", "\\boxed{1}", False),
    ("5", "\\boxed{\\sqrt{5}}", False), ("60", "\\boxed{30^\\circ}", False), ("45\\%", "\\boxed{0.045}", False),
    ("\\frac1e", "\\boxed{e}", False), ("2^{10}", "\\boxed{1000}", False), ("3+4i", "\\boxed{3-4i}", False),
    ("14", "\\boxed{14.5}", False), ("-3", "\\boxed{x=3}", False), ("6", "\\boxed{3}", False),
    ("100", "#### 1000", False), ("7", "<answer>7 or 8</answer>", False), ("1.5", "\\boxed{\\frac{2}{3}}", False),
    ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}0&1\\\\1&0\\end{pmatrix}}", False),
    ("\\sqrt{2}+\\sqrt{3}", "\\boxed{\\sqrt{5}}", False), ("10^{-3}", "\\boxed{10^{3}}", False),
    ("(-\\infty, \\infty)", "\\boxed{(0,\\infty)}", False), ("2", "Maybe 2 or 3. \\boxed{2, 3}", False),
    ("9", "The answer is 9 but actually the answer is 8.", False),
    ("24", "Step 1: 4 * 6 = 24. Step 2: 24 + 1 = 25. \\boxed{25}", False),
]

# A second blind batch, harder, written the same way (results reported as they came out).
BLIND += [
    ("\\sqrt{2}/2", "\\boxed{\\frac{\\sqrt{2}}{2}}", True), ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", True),
    ("-1", "\\boxed{\\cos(\\pi)}", True), ("0", "\\boxed{\\sin(\\pi)}", True),
    ("\\frac{1}{2}", "\\boxed{\\sin\\frac{\\pi}{6}}", True), ("1", "\\boxed{\\log_{10} 10}", True),
    ("2", "\\boxed{\\log_{3}9}", True), ("x^2 + y^2", "\\boxed{y^2 + x^2}", True),
    ("(x-1)(x-2)", "\\boxed{x^2-3x+2}", True), ("\\frac{a+b}{2}", "\\boxed{\\frac{a}{2}+\\frac{b}{2}}", True),
    ("4", "\\boxed{2^2}", True), ("\\left(1, -2\\right)", "\\boxed{(1,-2)}", True),
    ("[-1, 1]", "\\boxed{-1 \\le x \\le 1}", True),
    ("(-\\infty, -1) \\cup (1, \\infty)", "\\boxed{(-\\infty,-1)\\cup(1,+\\infty)}", True),
    ("\\{2, 4, 6\\}", "\\boxed{\\{6,4,2\\}}", True), ("3", "The value of $x$ is $\\boxed{3}$.", True),
    ("12.5", "\\boxed{\\frac{25}{2}}", True), ("1.25", "\\boxed{1\\frac{1}{4}}", True), ("0.6", "\\boxed{60\\%}", True),
    ("\\$1.50", "\\boxed{1.5}", True), ("5", "\\boxed{5.}", True),
    ("-4", "x = -4 is the only solution, so \\boxed{-4}", True), ("2", "\\boxed{\\sqrt[3]{8}}", True),
    ("\\frac{3}{8}", "\\boxed{0.375}", True), ("2 \\cdot 3^5", "\\boxed{486}", True),
    ("\\frac{1}{6}", "The probability is $\\boxed{\\dfrac{1}{6}}$.", True), ("1000", "\\boxed{10^3}", True),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{2}^{2}}", False), ("-1", "\\boxed{\\cos(0)}", False),
    ("1", "\\boxed{\\log_{10} 100}", False), ("x^2 + y^2", "\\boxed{(x+y)^2}", False),
    ("(x-1)(x-2)", "\\boxed{x^2-3x-2}", False), ("(1, -2)", "\\boxed{(-2, 1)}", False),
    ("[-1, 1]", "\\boxed{-1 < x \\le 1}", False), ("\\{2, 4, 6\\}", "\\boxed{\\{2,4\\}}", False),
    ("12.5", "\\boxed{12}", False), ("0.6", "\\boxed{6\\%}", False), ("5", "\\boxed{5^{2}}", False),
    ("\\frac{3}{8}", "\\boxed{0.38}", False), ("1000", "\\boxed{10^4}", False),
    ("\\frac{1}{6}", "\\boxed{\\frac{1}{6} \\text{ or } \\frac{1}{3}}", False),
    ("3", "I am unsure. It could be 3 or 4.", False), ("24", "<answer>\\boxed{24} or \\boxed{25}</answer>", False),
    ("100", "$\\boxed{99}$ dollars", False), ("\\infty", "\\boxed{\\text{undefined}}", False),
]


def _blind_rows() -> list[dict]:
    return [{"source": "blind", "form": "blind", "gold": g, "completion": c, "equal": e} for g, c, e in BLIND]


def build_corpus() -> list[dict]:
    return _table_rows() + _generated_rows() + _hostile_rows() + _blind_rows()


# ---- the two checkers --------------------------------------------------------------------------


def run_ours(corpus: list[dict]) -> tuple[list[bool], float, float, dict]:
    """Verdicts through the scoring service, total seconds, seconds for the non-hostile rows alone."""
    from grpo_env_math import register_rewards

    from grpo_env.scoring import ScoringService
    from grpo_env.types import Example, Status

    rewards = {}
    register_rewards(lambda r: rewards.__setitem__(r.name, r))
    items = [("math.answer", Example(id=str(i), prompt="q", gold={"answer": r["gold"]}), r["completion"])
             for i, r in enumerate(corpus)]
    benign_items = [it for it, r in zip(items, corpus) if r["source"] != "hostile"]
    with ScoringService(rewards, workers=1) as service:
        service.score(items[:5])  # warm the worker (imports) outside the timed run
        start = time.perf_counter()
        outcomes = service.score(items)
        elapsed = time.perf_counter() - start
    with ScoringService(rewards, workers=1) as service:  # a fresh worker: no gold cached
        service.score(items[:5])
        start = time.perf_counter()
        service.score(benign_items)
        benign = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[o.status.value] = statuses.get(o.status.value, 0) + 1
    return [o.status is Status.CORRECT for o in outcomes], elapsed, benign, statuses


def run_ours_in_process(corpus: list[dict]) -> tuple[list[bool], float, float]:
    from grpo_env_math.check import check_answer, parse_gold

    from grpo_env.types import Status

    parse_gold.cache_clear()
    got, benign = [], 0.0
    start = time.perf_counter()
    for r in corpus:
        t0 = time.perf_counter()
        got.append(check_answer(r["completion"], r["gold"]).status is Status.CORRECT)
        if r["source"] != "hostile":
            benign += time.perf_counter() - t0
    return got, time.perf_counter() - start, benign


def run_math_verify(corpus: list[dict]) -> tuple[list[bool], float, float]:
    """Verdicts, total seconds, and seconds spent on the rows that are not hostile."""
    from math_verify import parse, verify

    verify(parse("$1$"), parse("$1$"))  # warm up (imports, grammar) outside the timed run
    golds: dict[str, list] = {}
    got = []
    benign = 0.0
    start = time.perf_counter()
    for r in corpus:
        t0 = time.perf_counter()
        if r["gold"] not in golds:
            golds[r["gold"]] = parse(f"${r['gold']}$")
        try:
            got.append(bool(verify(golds[r["gold"]], parse(r["completion"]))))
        except Exception:  # noqa: BLE001 - a crash of the compared library counts as "not equal"
            got.append(False)
        if r["source"] != "hostile":
            benign += time.perf_counter() - t0
    return got, time.perf_counter() - start, benign


# ---- metrics and report ------------------------------------------------------------------------


def metrics(corpus: list[dict], got: list[bool], elapsed: float, benign: float | None = None) -> dict:
    fp = sum(g and not r["equal"] for r, g in zip(corpus, got))
    fn = sum(r["equal"] and not g for r, g in zip(corpus, got))
    n = len(corpus)
    n_benign = sum(r["source"] != "hostile" for r in corpus)
    out = {"accuracy": round((n - fp - fn) / n, 4), "false_positives": fp, "false_negatives": fn,
           "seconds": round(elapsed, 3), "answers_per_second": round(n / elapsed, 1)}
    if benign is not None:
        out["answers_per_second_without_hostile"] = round(n_benign / benign, 1)
    return out


def _misses(corpus: list[dict], got: list[bool]) -> list[dict]:
    return [{"form": r["form"], "gold": r["gold"], "completion": r["completion"][:160], "equal": r["equal"]}
            for r, g in zip(corpus, got) if g != r["equal"]]


def main() -> int:
    corpus = build_corpus()
    n_equal = sum(r["equal"] for r in corpus)
    print(f"corpus: {len(corpus)} pairs ({n_equal} equal, {len(corpus) - n_equal} not equal)", flush=True)
    ours, t_ours, b_ours, statuses = run_ours(corpus)
    ours_ip, t_ours_ip, b_ours_ip = run_ours_in_process(corpus)
    try:
        mv, t_mv, b_mv = run_math_verify(corpus)
    except ImportError:
        print("math-verify is not installed: pip install math-verify", file=sys.stderr)
        return 2
    from importlib.metadata import version

    results = {
        "grpo-env math (scoring service, 1 worker, hard deadline)": metrics(corpus, ours, t_ours, b_ours),
        "grpo-env math (in-process, no isolation)": metrics(corpus, ours_ip, t_ours_ip, b_ours_ip),
        f"Math-Verify {version('math-verify')} (in-process)": metrics(corpus, mv, t_mv, b_mv),
    }
    header = ("| checker | accuracy | false positives | false negatives | answers/s | answers/s without hostile rows |\n"
              "|---|---|---|---|---|---|")
    lines = [header] + [
        f"| {name} | {m['accuracy']:.1%} | {m['false_positives']} | {m['false_negatives']} | "
        f"{m['answers_per_second']:,.0f} | {m.get('answers_per_second_without_hostile', float('nan')):,.0f} |"
        for name, m in results.items()
    ]
    table = "\n".join(lines)
    print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "corpus_size": len(corpus), "equal": n_equal, "not_equal": len(corpus) - n_equal,
        "forms": sorted({r["form"] for r in corpus}),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": __import__("os").cpu_count()},
        "results": results, "our_statuses": statuses, "table_markdown": table,
        "misses": {"ours": _misses(corpus, ours), "math_verify": _misses(corpus, mv)},
    }, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
