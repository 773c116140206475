"""Writes the offline math sets next to this file (run: python tasks/data/math/build.py).

- gsm8k_mini/{train,test}.jsonl: GSM8K format (``question``; ``answer`` = worked steps + ``#### n``),
  hand-written problems plus seeded word problems from the plugin's generator.
- math_mini/{train,test}.jsonl: MATH format (``problem``; ``solution`` with ``\\boxed{}``; ``level``,
  ``type``), hand-written, covering the answer forms the checker reads.
Every problem here was written for this project.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from grpo_env_math.generators import word_row

HERE = Path(__file__).resolve().parent

GSM8K_HAND = {
    "train": [
        ("A bakery makes 24 muffins in each batch. On Saturday it bakes 5 batches and sells 97 muffins. "
         "How many muffins are left?", "24 * 5 = 120 muffins\n120 - 97 = 23", "23"),
        ("Lena reads 15 pages every weekday and 25 pages on each weekend day. How many pages does she read in "
         "one week?", "5 * 15 = 75\n2 * 25 = 50\n75 + 50 = 125", "125"),
        ("A train ticket costs $12.50. How much do 6 tickets cost, in dollars?", "12.50 * 6 = 75", "75"),
        ("Omar has 3 times as many marbles as Ivy. Together they have 84 marbles. How many marbles does Omar "
         "have?", "Ivy has 84 / 4 = 21\nOmar has 3 * 21 = 63", "63"),
        ("A rectangular garden is 18 meters long and 7 meters wide. Lamps stand every 2 meters along its "
         "edge, starting at a corner. How many lamps are there?", "perimeter 2 * (18 + 7) = 50\n50 / 2 = 25", "25"),
    ],
    "test": [
        ("A school orders 14 boxes of pencils with 36 pencils in each box. It gives out 450 pencils. How many "
         "pencils are left?", "14 * 36 = 504\n504 - 450 = 54", "54"),
        ("Maria saves $35 each week. How many weeks does she need to save $560?", "560 / 35 = 16", "16"),
        ("A recipe needs 3/4 cup of sugar per batch. How many cups of sugar are needed for 6 batches?",
         "3/4 * 6 = 4.5", "4.5"),
        ("A car travels at 60 miles per hour for 2.5 hours and then at 45 miles per hour for 2 hours. How "
         "many miles does it travel in total?", "60 * 2.5 = 150\n45 * 2 = 90\n150 + 90 = 240", "240"),
        ("Tom buys 4 notebooks at $3 each and 2 pens at $1.50 each. He pays with a $20 bill. How many "
         "dollars of change does he get?", "4 * 3 = 12\n2 * 1.50 = 3\n20 - 12 - 3 = 5", "5"),
    ],
}

MATH_HAND = {
    "train": [
        ("Simplify $\\sqrt{72}$.", "$\\sqrt{72}=\\sqrt{36\\cdot 2}=\\boxed{6\\sqrt{2}}$.", 1, "Algebra"),
        ("What is $\\frac{2}{3}+\\frac{3}{4}$?", "$\\frac{8}{12}+\\frac{9}{12}=\\boxed{\\frac{17}{12}}$.", 1, "Prealgebra"),
        ("Solve $x^2-5x+6=0$. Enter all solutions, separated by commas.",
         "$(x-2)(x-3)=0$, so $x=\\boxed{2, 3}$.", 2, "Algebra"),
        ("Find the midpoint of the segment with endpoints $(2, 5)$ and $(8, -1)$.",
         "Average the coordinates: $\\boxed{(5, 2)}$.", 2, "Algebra"),
        ("For which $x$ is $2x - 3 > 7$? Express your answer in interval notation.",
         "$2x > 10$, so $x > 5$: $\\boxed{(5, \\infty)}$.", 2, "Algebra"),
        ("Compute $\\begin{pmatrix} 1 & 2 \\\\ 0 & 1 \\end{pmatrix}\\begin{pmatrix} 3 \\\\ 4 \\end{pmatrix}$.",
         "$\\boxed{\\begin{pmatrix} 11 \\\\ 4 \\end{pmatrix}}$.", 2, "Precalculus"),
        ("Expand $(x+3)(x-2)$.", "$x^2-2x+3x-6=\\boxed{x^2+x-6}$.", 1, "Algebra"),
        ("What is the value of $\\log_3 81$?", "$3^4=81$, so the value is $\\boxed{4}$.", 1, "Algebra"),
        ("Evaluate $\\binom{7}{3}$.", "$\\frac{7\\cdot 6\\cdot 5}{6}=\\boxed{35}$.", 1, "Counting & Probability"),
        ("What is $15\\%$ of $80$?", "$0.15\\cdot 80=\\boxed{12}$.", 1, "Prealgebra"),
        ("Find the domain of $f(x)=\\sqrt{x-4}$. Express your answer in interval notation.",
         "We need $x\\ge 4$: $\\boxed{[4, \\infty)}$.", 2, "Algebra"),
        ("What is the area of a circle of radius 3?", "$\\pi r^2=\\boxed{9\\pi}$.", 1, "Geometry"),
        ("Rationalize the denominator of $\\frac{1}{\\sqrt{3}}$.", "$\\boxed{\\frac{\\sqrt{3}}{3}}$.", 2, "Algebra"),
        ("What is the sum of the interior angles of a hexagon, in degrees?",
         "$180^\\circ(6-2)=\\boxed{720^\\circ}$.", 1, "Geometry"),
        ("Let $f(x) = 3x - 1$. Find $f^{-1}(8)$.", "$3x-1=8$ gives $x=\\boxed{3}$.", 2, "Algebra"),
        ("Write $0.\\overline{3}$ as a common fraction.", "$\\boxed{\\frac{1}{3}}$.", 2, "Number Theory"),
        ("Find all real $x$ with $|x - 2| = 5$. Enter the solutions separated by commas.",
         "$x-2=\\pm 5$, so $x=\\boxed{-3, 7}$.", 2, "Algebra"),
        ("What is the remainder when $2^{10}$ is divided by 7?", "$1024 = 7\\cdot 146 + 2$: $\\boxed{2}$.", 2,
         "Number Theory"),
        ("Simplify $\\frac{x^2-9}{x-3}$ for $x \\neq 3$.", "$\\frac{(x-3)(x+3)}{x-3}=\\boxed{x+3}$.", 2, "Algebra"),
        ("List the integers $n$ with $n^2 < 5$ as a set.", "$\\boxed{\\{-2, -1, 0, 1, 2\\}}$.", 2, "Number Theory"),
    ],
    "test": [
        ("Simplify $\\sqrt{50}+\\sqrt{8}$.", "$5\\sqrt{2}+2\\sqrt{2}=\\boxed{7\\sqrt{2}}$.", 1, "Algebra"),
        ("What is $\\frac{5}{6}-\\frac{1}{4}$?", "$\\frac{10}{12}-\\frac{3}{12}=\\boxed{\\frac{7}{12}}$.", 1, "Prealgebra"),
        ("Solve $x^2 = 2x + 8$. Enter all solutions, separated by commas.",
         "$(x-4)(x+2)=0$, so $x=\\boxed{-2, 4}$.", 2, "Algebra"),
        ("At which point do the lines $y = 2x + 1$ and $y = -x + 7$ meet?",
         "$2x+1=-x+7$ gives $x=2$, $y=5$: $\\boxed{(2, 5)}$.", 2, "Algebra"),
        ("Solve $-3 \\le 2x + 1 < 5$. Express your answer in interval notation.",
         "$-4\\le 2x<4$: $\\boxed{[-2, 2)}$.", 2, "Algebra"),
        ("Compute $\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}^2$.",
         "$\\boxed{\\begin{pmatrix} 4 & 0 \\\\ 5 & 9 \\end{pmatrix}}$.", 2, "Precalculus"),
        ("Expand $(2x-1)^2$.", "$\\boxed{4x^2-4x+1}$.", 1, "Algebra"),
        ("What is $\\log_2 \\frac{1}{8}$?", "$2^{-3}=\\frac18$: $\\boxed{-3}$.", 1, "Algebra"),
        ("What is the circumference of a circle with diameter 7?", "$\\pi d=\\boxed{7\\pi}$.", 1, "Geometry"),
        ("If $\\tan\\theta = 1$ and $0 < \\theta < \\frac{\\pi}{2}$, find $\\theta$.",
         "$\\boxed{\\frac{\\pi}{4}}$.", 2, "Precalculus"),
    ],
}


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    for split, count in (("train", 40), ("test", 15)):
        rng = random.Random(f"gsm8k-mini|{split}")
        rows = [{"question": q, "answer": f"{steps}\n#### {a}"} for q, steps, a in GSM8K_HAND[split]]
        rows += [word_row(rng, 1 + k % 5) for k in range(count)]
        _write(HERE / "gsm8k_mini" / f"{split}.jsonl", rows)
        _write(HERE / "math_mini" / f"{split}.jsonl",
               [{"problem": p, "solution": s, "level": f"Level {lv}", "type": t} for p, s, lv, t in MATH_HAND[split]])


if __name__ == "__main__":
    main()
