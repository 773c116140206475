"""Writes the offline code sets next to this file (run: python tasks/data/code/build.py).

- functions/{train,test}.jsonl: function tasks in our data format: HumanEval's ``task_id``,
  ``prompt`` (signature + docstring), ``entry_point``, ``canonical_solution`` (a body continuing the
  prompt), and ``tests`` as data: ``{"args": [...], "expected": ...}`` with tuples and sets tagged
  (``{"$t": [...]}``, ``{"$s": [...]}``) as in grpo_env/sandbox/codec.py.
- stdio/{train,test}.jsonl: stdin/stdout tasks: ``task_id``, ``description``, ``cases`` of
  ``{"stdin", "stdout"}``, ``canonical_solution`` (a whole program).
Every problem, solution and expected value here was written for this project.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def T(*items):  # a tuple, as the codec tags it
    return {"$t": list(items)}


def S(*items):  # a set
    return {"$s": sorted(items)}


# (entry point, signature + docstring, canonical body, [(args, expected), ...])
FUNCTIONS = [
    ("sum_of_squares", "def sum_of_squares(nums: list[int]) -> int:\n    \"\"\"Return the sum of the squares of nums.\"\"\"\n",
     "    return sum(n * n for n in nums)\n",
     [([[1, 2, 3]], 14), ([[]], 0), ([[-4]], 16), ([[0, 0, 5]], 25), ([[10, -10]], 200)]),
    ("reverse_words", "def reverse_words(s: str) -> str:\n    \"\"\"Return the words of s (split on whitespace) in reverse order, joined by single spaces.\"\"\"\n",
     "    return ' '.join(reversed(s.split()))\n",
     [(["hello world"], "world hello"), (["  a  b   c "], "c b a"), ([""], ""), (["one"], "one")]),
    ("is_palindrome", "def is_palindrome(s: str) -> bool:\n    \"\"\"True when s reads the same backwards, ignoring case and every non-alphanumeric character.\"\"\"\n",
     "    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n",
     [(["Racecar"], True), (["A man, a plan, a canal: Panama"], True), (["hello"], False), ([""], True), (["ab"], False)]),
    ("count_vowels", "def count_vowels(s: str) -> int:\n    \"\"\"Count the vowels (a, e, i, o, u; either case) in s.\"\"\"\n",
     "    return sum(1 for c in s.lower() if c in 'aeiou')\n",
     [(["hello"], 2), (["AEIOU xyz"], 5), ([""], 0), (["rhythm"], 0), (["Queueing"], 5)]),
    ("fizzbuzz", "def fizzbuzz(n: int) -> list[str]:\n    \"\"\"For 1..n: 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for both, else the number as text.\"\"\"\n",
     "    out = []\n    for i in range(1, n + 1):\n        s = ('Fizz' if i % 3 == 0 else '') + ('Buzz' if i % 5 == 0 else '')\n        out.append(s or str(i))\n    return out\n",
     [([5], ["1", "2", "Fizz", "4", "Buzz"]), ([0], []),
      ([15], ["1", "2", "Fizz", "4", "Buzz", "Fizz", "7", "8", "Fizz", "Buzz", "11", "Fizz", "13", "14", "FizzBuzz"])]),
    ("running_max", "def running_max(nums: list[int]) -> list[int]:\n    \"\"\"Element i of the result is the largest of nums[0..i].\"\"\"\n",
     "    out, best = [], None\n    for n in nums:\n        best = n if best is None or n > best else best\n        out.append(best)\n    return out\n",
     [([[1, 3, 2, 5, 4]], [1, 3, 3, 5, 5]), ([[]], []), ([[-1, -2, -3]], [-1, -1, -1]), ([[7]], [7])]),
    ("flatten", "def flatten(nested: list) -> list:\n    \"\"\"Flatten arbitrarily nested lists into one list, keeping order.\"\"\"\n",
     "    out = []\n    for x in nested:\n        if isinstance(x, list):\n            out.extend(flatten(x))\n        else:\n            out.append(x)\n    return out\n",
     [([[1, [2, [3, [4]]], 5]], [1, 2, 3, 4, 5]), ([[]], []), ([[[], [[]]]], []), ([["a", ["b"]]], ["a", "b"])]),
    ("char_histogram", "def char_histogram(s: str) -> dict[str, int]:\n    \"\"\"Count each character of s, leaving out spaces.\"\"\"\n",
     "    out = {}\n    for c in s:\n        if c != ' ':\n            out[c] = out.get(c, 0) + 1\n    return out\n",
     [(["aab"], {"a": 2, "b": 1}), (["a a"], {"a": 2}), ([""], {}), (["xyz"], {"x": 1, "y": 1, "z": 1})]),
    ("gcd_list", "def gcd_list(nums: list[int]) -> int:\n    \"\"\"The greatest common divisor of all numbers (0 for an empty list); always non-negative.\"\"\"\n",
     "    import math\n    g = 0\n    for n in nums:\n        g = math.gcd(g, n)\n    return g\n",
     [([[12, 18, 24]], 6), ([[]], 0), ([[7]], 7), ([[-4, 6]], 2), ([[0, 0]], 0), ([[17, 34, 51]], 17)]),
    ("is_prime", "def is_prime(n: int) -> bool:\n    \"\"\"True when n is a prime number.\"\"\"\n",
     "    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n",
     [([2], True), ([1], False), ([0], False), ([-7], False), ([97], True), ([91], False), ([7919], True)]),
    ("primes_below", "def primes_below(n: int) -> list[int]:\n    \"\"\"All primes p with p < n, ascending.\"\"\"\n",
     "    return [p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]\n",
     [([10], [2, 3, 5, 7]), ([2], []), ([0], []), ([30], [2, 3, 5, 7, 11, 13, 17, 19, 23, 29])]),
    ("rotate_left", "def rotate_left(items: list, k: int) -> list:\n    \"\"\"Rotate items left by k places (k may exceed the length; an empty list stays empty).\"\"\"\n",
     "    if not items:\n        return []\n    k %= len(items)\n    return items[k:] + items[:k]\n",
     [([[1, 2, 3, 4, 5], 2], [3, 4, 5, 1, 2]), ([[1, 2, 3], 3], [1, 2, 3]), ([[], 4], []), ([[1, 2, 3], 4], [2, 3, 1])]),
    ("chunk", "def chunk(items: list, size: int) -> list[list]:\n    \"\"\"Split items into consecutive lists of length size (the last may be shorter).\"\"\"\n",
     "    return [items[i:i + size] for i in range(0, len(items), size)]\n",
     [([[1, 2, 3, 4, 5], 2], [[1, 2], [3, 4], [5]]), ([[], 3], []), ([[1, 2], 5], [[1, 2]]), ([["a", "b", "c"], 1], [["a"], ["b"], ["c"]])]),
    ("dedupe", "def dedupe(items: list) -> list:\n    \"\"\"Remove repeated items, keeping the first occurrence of each, in order.\"\"\"\n",
     "    seen, out = set(), []\n    for x in items:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out\n",
     [([[3, 1, 3, 2, 1]], [3, 1, 2]), ([[]], []), ([["a", "a"]], ["a"]), ([[1, 2, 3]], [1, 2, 3])]),
    ("roman_to_int", "def roman_to_int(s: str) -> int:\n    \"\"\"The value of a Roman numeral such as 'XIV' (uppercase, 1..3999).\"\"\"\n",
     "    v = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n    total = 0\n    for a, b in zip(s, s[1:] + ' '):\n        total += -v[a] if b != ' ' and v[a] < v[b] else v[a]\n    return total\n",
     [(["III"], 3), (["XIV"], 14), (["MCMXCIV"], 1994), (["XL"], 40), (["MMMCMXCIX"], 3999)]),
    ("to_binary", "def to_binary(n: int) -> str:\n    \"\"\"n in base 2 without a prefix: '0' for 0, a leading '-' for negative numbers.\"\"\"\n",
     "    if n < 0:\n        return '-' + to_binary(-n)\n    return bin(n)[2:]\n",
     [([0], "0"), ([5], "101"), ([-6], "-110"), ([1024], "10000000000"), ([1], "1")]),
    ("caesar_shift", "def caesar_shift(s: str, k: int) -> str:\n    \"\"\"Shift each ASCII letter of s by k places in the alphabet (wrapping, keeping case); other characters stay.\"\"\"\n",
     "    out = []\n    for c in s:\n        if 'a' <= c <= 'z':\n            out.append(chr((ord(c) - 97 + k) % 26 + 97))\n        elif 'A' <= c <= 'Z':\n            out.append(chr((ord(c) - 65 + k) % 26 + 65))\n        else:\n            out.append(c)\n    return ''.join(out)\n",
     [(["abc", 1], "bcd"), (["xyz", 3], "abc"), (["Hello, World!", 13], "Uryyb, Jbeyq!"), (["abc", -1], "zab"), (["", 5], "")]),
    ("transpose", "def transpose(m: list[list[int]]) -> list[list[int]]:\n    \"\"\"The transpose of a rectangular matrix given as a list of rows ([] stays []).\"\"\"\n",
     "    return [list(r) for r in zip(*m)]\n",
     [([[[1, 2, 3], [4, 5, 6]]], [[1, 4], [2, 5], [3, 6]]), ([[]], []), ([[[7]]], [[7]]), ([[[1], [2]]], [[1, 2]])]),
    ("second_largest", "def second_largest(nums: list[int]) -> int | None:\n    \"\"\"The second largest distinct value, or None when there are fewer than two distinct values.\"\"\"\n",
     "    d = sorted(set(nums))\n    return d[-2] if len(d) >= 2 else None\n",
     [([[1, 5, 3]], 3), ([[4, 4, 4]], None), ([[]], None), ([[2, 9, 9, 7]], 7), ([[-1, -5]], -5)]),
    ("min_max", "def min_max(nums: list[int]) -> tuple[int, int]:\n    \"\"\"The pair (smallest, largest) of a non-empty list, as a tuple.\"\"\"\n",
     "    return (min(nums), max(nums))\n",
     [([[3, 1, 2]], T(1, 3)), ([[5]], T(5, 5)), ([[-2, 8, 0]], T(-2, 8))]),
    ("merge_sorted", "def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n    \"\"\"Merge two ascending lists into one ascending list.\"\"\"\n",
     "    out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n    return out + a[i:] + b[j:]\n",
     [([[1, 3, 5], [2, 4]], [1, 2, 3, 4, 5]), ([[], [1]], [1]), ([[], []], []), ([[1, 1], [1]], [1, 1, 1])]),
    ("balanced", "def balanced(s: str) -> bool:\n    \"\"\"True when the brackets (), [] and {} in s are balanced and properly nested; other characters are ignored.\"\"\"\n",
     "    pairs, stack = {')': '(', ']': '[', '}': '{'}, []\n    for c in s:\n        if c in '([{':\n            stack.append(c)\n        elif c in pairs:\n            if not stack or stack.pop() != pairs[c]:\n                return False\n    return not stack\n",
     [(["([]{})"], True), (["([)]"], False), ([""], True), (["(("], False), (["a(b)c"], True), (["}"], False)]),
    ("word_lengths", "def word_lengths(sentence: str) -> dict[str, int]:\n    \"\"\"Map each whitespace-separated word of sentence to its length.\"\"\"\n",
     "    return {w: len(w) for w in sentence.split()}\n",
     [(["the quick fox"], {"the": 3, "quick": 5, "fox": 3}), ([""], {}), (["a a"], {"a": 1})]),
    ("digit_sum", "def digit_sum(n: int) -> int:\n    \"\"\"The sum of the decimal digits of n (the sign is ignored).\"\"\"\n",
     "    return sum(int(c) for c in str(abs(n)))\n",
     [([123], 6), ([0], 0), ([-45], 9), ([99999], 45)]),
    ("collatz_steps", "def collatz_steps(n: int) -> int:\n    \"\"\"How many Collatz steps (n -> n/2 if even, else 3n+1) take n >= 1 to 1.\"\"\"\n",
     "    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps\n",
     [([1], 0), ([2], 1), ([6], 8), ([27], 111)]),
    ("common_prefix", "def common_prefix(words: list[str]) -> str:\n    \"\"\"The longest common prefix of all words ('' for an empty list).\"\"\"\n",
     "    if not words:\n        return ''\n    p = words[0]\n    for w in words[1:]:\n        while not w.startswith(p):\n            p = p[:-1]\n    return p\n",
     [([["flower", "flow", "flight"]], "fl"), ([[]], ""), ([["dog", "car"]], ""), ([["same", "same"]], "same")]),
    ("run_length", "def run_length(s: str) -> str:\n    \"\"\"Run-length encode s: each run of a character becomes the character followed by the run's length.\"\"\"\n",
     "    out, i = [], 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out.append(f'{s[i]}{j - i}')\n        i = j\n    return ''.join(out)\n",
     [(["aaabcc"], "a3b1c2"), ([""], ""), (["z"], "z1"), (["aaaaaaaaaaaa"], "a12")]),
    ("mean", "def mean(nums: list[float]) -> float:\n    \"\"\"The arithmetic mean of nums, as a float (0.0 for an empty list).\"\"\"\n",
     "    return sum(nums) / len(nums) if nums else 0.0\n",
     [([[1, 2, 3, 4]], 2.5), ([[]], 0.0), ([[0.1, 0.2]], 0.15000000000000002), ([[-3]], -3.0)]),
    ("pascal_row", "def pascal_row(n: int) -> list[int]:\n    \"\"\"Row n of Pascal's triangle (row 0 is [1]).\"\"\"\n",
     "    row = [1]\n    for _ in range(n):\n        row = [a + b for a, b in zip([0] + row, row + [0])]\n    return row\n",
     [([0], [1]), ([1], [1, 1]), ([4], [1, 4, 6, 4, 1]), ([6], [1, 6, 15, 20, 15, 6, 1])]),
    ("are_anagrams", "def are_anagrams(a: str, b: str) -> bool:\n    \"\"\"True when a and b use the same letters the same number of times, ignoring case and spaces.\"\"\"\n",
     "    norm = lambda s: sorted(s.replace(' ', '').lower())\n    return norm(a) == norm(b)\n",
     [(["listen", "silent"], True), (["Dormitory", "dirty room"], True), (["abc", "abd"], False), (["", ""], True)]),
    ("common_elements", "def common_elements(a: list[int], b: list[int]) -> set[int]:\n    \"\"\"The set of values found in both lists.\"\"\"\n",
     "    return set(a) & set(b)\n",
     [([[1, 2, 3], [2, 3, 4]], S(2, 3)), ([[], [1]], {"$s": []}), ([[5, 5], [5]], S(5))]),
    ("fibonacci", "def fibonacci(n: int) -> int:\n    \"\"\"The n-th Fibonacci number, with fibonacci(0) == 0 and fibonacci(1) == 1.\"\"\"\n",
     "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
     [([0], 0), ([1], 1), ([10], 55), ([50], 12586269025), ([90], 2880067194370816120)]),
    ("count_words", "def count_words(text: str) -> dict[str, int]:\n    \"\"\"How often each word occurs in text: words are lowercased and split on whitespace.\"\"\"\n",
     "    out = {}\n    for w in text.lower().split():\n        out[w] = out.get(w, 0) + 1\n    return out\n",
     [(["a b A"], {"a": 2, "b": 1}), ([""], {}), (["Hi hi HI"], {"hi": 3})]),
    ("safe_divide", "def safe_divide(a: float, b: float) -> float | None:\n    \"\"\"a / b, or None when b is zero.\"\"\"\n",
     "    return None if b == 0 else a / b\n",
     [([1, 2], 0.5), ([3, 0], None), ([-9, 3], -3.0), ([1, 3], 0.3333333333333333)]),
]

# (task id, description, canonical program, [(stdin, stdout), ...])
STDIO = [
    ("stdio/add_two", "Read two integers a and b on one line and print a + b.",
     "a, b = map(int, input().split())\nprint(a + b)\n",
     [("1 2\n", "3\n"), ("-5 5\n", "0\n"), ("1000000000 1000000000\n", "2000000000\n")]),
    ("stdio/max_of_n", "The first line holds n; the next n lines hold one integer each. Print the largest.",
     "n = int(input())\nprint(max(int(input()) for _ in range(n)))\n",
     [("3\n1\n9\n4\n", "9\n"), ("1\n-7\n", "-7\n")]),
    ("stdio/reverse_lines", "Print every input line reversed, in the same order.",
     "import sys\nfor line in sys.stdin.read().splitlines():\n    print(line[::-1])\n",
     [("abc\nhello\n", "cba\nolleh\n"), ("x\n", "x\n")]),
    ("stdio/word_count", "Print the number of whitespace-separated words in the whole input.",
     "import sys\nprint(len(sys.stdin.read().split()))\n",
     [("the quick brown fox\njumps\n", "5\n"), ("", "0\n")]),
    ("stdio/fib_lines", "Read n and print the first n Fibonacci numbers (starting 0, 1), one per line.",
     "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    print(a)\n    a, b = b, a + b\n",
     [("5\n", "0\n1\n1\n2\n3\n"), ("1\n", "0\n")]),
    ("stdio/sort_lines", "Print the input lines sorted in ascending (code point) order.",
     "import sys\nfor line in sorted(sys.stdin.read().splitlines()):\n    print(line)\n",
     [("pear\napple\nfig\n", "apple\nfig\npear\n"), ("b\na\n", "a\nb\n")]),
    ("stdio/fizzbuzz", "Read n and print FizzBuzz from 1 to n, one item per line.",
     "n = int(input())\nfor i in range(1, n + 1):\n    print(('Fizz' if i % 3 == 0 else '') + ('Buzz' if i % 5 == 0 else '') or i)\n",
     [("5\n", "1\n2\nFizz\n4\nBuzz\n"), ("15\n", "1\n2\nFizz\n4\nBuzz\nFizz\n7\n8\nFizz\nBuzz\n11\nFizz\n13\n14\nFizzBuzz\n")]),
    ("stdio/transpose", "The first line holds r and c; then r lines of c integers. Print the c x r transpose, "
     "numbers separated by single spaces.",
     "r, c = map(int, input().split())\nm = [input().split() for _ in range(r)]\nfor col in zip(*m):\n    print(' '.join(col))\n",
     [("2 3\n1 2 3\n4 5 6\n", "1 4\n2 5\n3 6\n"), ("1 1\n7\n", "7\n")]),
]

TEST_FUNCTIONS = {"second_largest", "min_max", "balanced", "pascal_row", "are_anagrams", "common_elements",
                  "fibonacci", "safe_divide"}
TEST_STDIO = {"stdio/fizzbuzz", "stdio/transpose"}


def function_row(entry, prompt, body, tests):
    return {"task_id": f"grpo/{entry}", "prompt": prompt, "entry_point": entry, "canonical_solution": body,
            "tests": [{"args": args, "expected": expected} for args, expected in tests]}


def stdio_row(task_id, description, program, cases):
    return {"task_id": task_id, "description": description, "canonical_solution": program,
            "cases": [{"stdin": i, "stdout": o} for i, o in cases]}


def write(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    rows = [function_row(*f) for f in FUNCTIONS]
    write(HERE / "functions" / "train.jsonl", [r for r in rows if r["entry_point"] not in TEST_FUNCTIONS])
    write(HERE / "functions" / "test.jsonl", [r for r in rows if r["entry_point"] in TEST_FUNCTIONS])
    rows = [stdio_row(*s) for s in STDIO]
    write(HERE / "stdio" / "train.jsonl", [r for r in rows if r["task_id"] not in TEST_STDIO])
    write(HERE / "stdio" / "test.jsonl", [r for r in rows if r["task_id"] in TEST_STDIO])
    print(f"{len(FUNCTIONS)} function tasks, {len(STDIO)} stdio tasks written under {HERE}")


if __name__ == "__main__":
    main()
