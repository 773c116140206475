"""The format plugin: every reward's rules with hand-computed values, hostile inputs, and discovery."""

from __future__ import annotations

import importlib.metadata
import time
import unicodedata

import pytest
from grpo_env import Example, Outcome, Status
from grpo_env.rewards import call_reward
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_verdict_attacks import run_score_cli  # `grpo-env score` in a subprocess, checked for leftovers

import grpo_env_format
from grpo_env.testing import collect
from grpo_env_format import register_rewards, register_tasks


REWARDS = collect(register_rewards)
TASKS = collect(register_tasks)
MB10 = 10_000_000


def ex(fmt=None) -> Example:
    return Example(id="t", prompt="q", gold={} if fmt is None else {"format": fmt})


def score(name: str, completion: str, example: Example | None = None) -> Outcome:
    """Run a reward through the core's call boundary (an exception would show up as status error)."""
    out = call_reward(REWARDS[f"format.{name}"], completion, example or ex())
    assert out.status is not Status.ERROR, out.details
    return out


GOOD = "<think>a</think><answer>b</answer>"


# -- format.think_answer_strict ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [GOOD, "\n  <think>3 plus 4 is 7</think>\n\n<answer> 7 </answer>\n", "<think>a\x00b</think><answer>7</answer>"],
)
def test_strict_accepts(text):
    out = score("think_answer_strict", text)
    assert (out.score, out.status) == (1.0, Status.CORRECT)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("x" + GOOD, "text before <think>"),
        ("<think>a</think>x<answer>b</answer>", "text between </think> and <answer>"),
        (GOOD + " thanks", "text after </answer>"),
        ("<think></think><answer>b</answer>", "empty <think> block"),
        ("<think>a</think><answer> \n\t</answer>", "empty <answer> block"),
        ("<answer>b</answer><think>a</think>", "tags out of order"),
        ("<think>a<answer>b</think></answer>", "tags out of order"),
        ("<think>a</think><think>a</think><answer>b</answer>", "<think> appears 2 times"),
        ("<think><think>a</think></think><answer>b</answer>", "<think> appears 2 times"),
        ("<think>a</think><answer>b</answer><answer>b</answer>", "<answer> appears 2 times"),
        ("<answer>b</answer>", "missing <think>"),
        ("<think>a</think><answer>b", "missing </answer>"),
        ("<think>a<answer>b</answer>", "missing </think>"),
        ("", "missing <think>"),
    ],
)
def test_strict_rejects_with_reason(text, reason):
    out = score("think_answer_strict", text)
    assert (out.score, out.status) == (0.0, Status.INCORRECT)
    assert out.details["reason"].startswith(reason)


# -- format.think_answer_soft --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        "Sure. <think>a</think> so: <answer>b</answer> done.",
        "<think></think><think>a</think><answer>b</answer>",  # a later think block is filled
        "<think>a</think><answer></answer><answer>b</answer>",  # a later answer block is filled
        "<think><think>a</think></think><answer>b</answer>",  # nested: the innermost pair counts
        GOOD + GOOD,
    ],
)
def test_soft_accepts(text):
    out = score("think_answer_soft", text)
    assert (out.score, out.status) == (1.0, Status.CORRECT)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("<answer>b</answer><think>a</think>", "no non-empty <answer>"),
        ("<think>a</think>", "no non-empty <answer>"),
        ("<think>a<answer>b</answer>", "no non-empty <think>"),
        ("<think> </think><answer>b</answer>", "no non-empty <think>"),
        ("<think>a</think><answer>\u200b</answer>", "no non-empty <answer>"),
        ("plain text", "no non-empty <think>"),
    ],
)
def test_soft_rejects(text, reason):
    out = score("think_answer_soft", text)
    assert (out.score, out.status) == (0.0, Status.INCORRECT)
    assert out.details["reason"].startswith(reason)


# -- format.answer_tag ---------------------------------------------------------------------------


def test_answer_tag():
    assert score("answer_tag", "The sum is <answer>7</answer>, I think.").score == 1.0
    assert score("answer_tag", GOOD).status is Status.CORRECT
    cases = {
        "no tags": "missing <answer>",
        "<answer>7</answer><answer>7</answer>": "<answer> appears 2 times",
        "</answer>7<answer>": "</answer> comes before <answer>",
        "<answer>\u200b\u00a0\ufeff</answer>": "empty <answer> block",
        "<answer>7": "missing </answer>",
    }
    for text, reason in cases.items():
        out = score("answer_tag", text)
        assert (out.score, out.status) == (0.0, Status.INCORRECT), text
        assert out.details["reason"].startswith(reason), text


# -- format.boxed -------------------------------------------------------------------------------


def test_boxed_once():
    for text in ("so \\boxed{7}.", "\\boxed{\\frac{1}{2}} and more text", "\\boxed{ x = {1, 2} }"):
        assert score("boxed", text).status is Status.CORRECT, text
    cases = {
        "7": "no \\boxed{}",
        "\\boxed{1} or \\boxed{2}": "2 \\boxed{}, expected one",
        "\\boxed{}": "empty \\boxed{}",
        "\\boxed{\u200b\u00a0}": "empty \\boxed{}",
        "\\boxed{7": "\\boxed{ is never closed",
        "\\boxed{{7}": "\\boxed{ is never closed",
        "\\fbox{7}": "no \\boxed{}",
    }
    for text, reason in cases.items():
        out = score("boxed", text)
        assert (out.score, out.status, out.details["reason"]) == (0.0, Status.INCORRECT, reason), text


def test_boxed_is_linear_on_hostile_text_through_the_scoring_service():
    from grpo_env.scoring import ScoringService

    hostile = ["\\boxed{" + "{" * 2_000_000, "\\boxed{" * 500_000, "\\boxed{" + "x" * 3_000_000 + "}"]
    with ScoringService({"format.boxed": REWARDS["format.boxed"]}, workers=1) as service:
        t = time.monotonic()
        out = service.score([("format.boxed", ex(), text) for text in hostile])
        assert time.monotonic() - t < 10
    assert [o.status for o in out] == [Status.INCORRECT, Status.INCORRECT, Status.CORRECT]


# -- format.tag_count ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value, status",
    [
        (GOOD, 1.0, Status.CORRECT),
        ("junk <think>a</think> <answer></answer> junk", 1.0, Status.CORRECT),  # counts only
        (GOOD + "<answer>", 0.75, Status.PARTIAL),
        ("<think>a</think>", 0.5, Status.PARTIAL),
        ("<think><think>a</think><answer>b", 0.5, Status.PARTIAL),
        ("<answer>", 0.25, Status.PARTIAL),
        ("", 0.0, Status.INCORRECT),
        (GOOD * 2, 0.0, Status.INCORRECT),
    ],
)
def test_tag_count(text, value, status):
    out = score("tag_count", text)
    assert (out.score, out.status) == (value, status)


def test_tag_count_reports_counts():
    counts = score("tag_count", "<think><think>a</think>").details["counts"]
    assert counts == {"<think>": 2, "</think>": 1, "<answer>": 0, "</answer>": 0}


# -- format.overlong_penalty ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, value, status",
    [
        (0, 0.0, Status.CORRECT),
        (60, 0.0, Status.CORRECT),  # max_len - buffer: still free
        (61, -0.025, Status.PARTIAL),  # (60 - 61) / 40
        (80, -0.5, Status.PARTIAL),
        (99, -0.975, Status.PARTIAL),
        (100, -1.0, Status.INCORRECT),  # reaches max_len
        (101, -1.0, Status.INCORRECT),
        (MB10, -1.0, Status.INCORRECT),
    ],
)
def test_overlong_linear_zone(length, value, status):
    out = score("overlong_penalty", "x" * length, ex({"max_len": 100, "overlong_buffer": 40}))
    assert out.score == pytest.approx(value) and out.status is status
    assert out.details["length"] == length


def test_overlong_defaults_and_counts_characters():
    assert score("overlong_penalty", "x" * 1536).score == 0.0  # 2048 - 512
    assert score("overlong_penalty", "x" * 1537).score == pytest.approx(-1 / 512)
    assert score("overlong_penalty", "x" * 1792).score == pytest.approx(-0.5)
    assert score("overlong_penalty", "x" * 2049).score == -1.0
    # characters, not bytes: 1536 non-ASCII characters are still within the free zone
    assert score("overlong_penalty", "é" * 1536).score == 0.0


def test_overlong_zero_buffer_is_a_step():
    fmt = {"max_len": 10, "overlong_buffer": 0}
    assert score("overlong_penalty", "x" * 10, ex(fmt)).score == 0.0
    assert score("overlong_penalty", "x" * 11, ex(fmt)).score == -1.0


@pytest.mark.parametrize(
    "gold_format",
    [
        "long",
        {"max_len": "2048"},
        {"max_len": True},
        {"max_len": 1.5},
        {"max_len": 0},
        {"overlong_buffer": -1},
        {"max_len": 100, "overlong_buffer": 101},
    ],
)
def test_overlong_bad_parameters_are_not_applicable(gold_format):
    out = score("overlong_penalty", "text", ex(gold_format))
    assert out.status is Status.NOT_APPLICABLE and out.score == 0.0
    assert "format" in out.details["reason"]


# -- format.repetition_penalty -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ngram, value",
    [
        ("a b c d e", 3, 0.0),
        ("a b c a b c", 3, -0.25),  # abc bca cab abc: 1 repeat of 4
        ("a\tb\nc  a b c", 3, -0.25),  # any whitespace separates words
        ("a a a a", 3, -0.5),  # aaa aaa
        ("x " * 1000, 3, -997 / 998),
        ("a b a", 1, -1 / 3),
        ("a b a b", 2, -1 / 3),  # ab ba ab
        ("A b c a b c", 3, 0.0),  # case matters
        ("a b", 3, 0.0),  # fewer words than n
        ("", 3, 0.0),
    ],
)
def test_repetition(text, ngram, value):
    out = score("repetition_penalty", text, ex({"ngram": ngram}))
    assert out.score == pytest.approx(value)
    assert out.status is (Status.CORRECT if value == 0 else Status.PARTIAL)


def test_repetition_default_ngram_and_details():
    out = score("repetition_penalty", "a b c a b c")
    assert out.details == {"ngram": 3, "ngrams": 4, "repeated": 1}


@pytest.mark.parametrize("gold_format", [{"ngram": 0}, {"ngram": "3"}, {"ngram": None}, ["ngram"]])
def test_repetition_bad_parameters_are_not_applicable(gold_format):
    assert score("repetition_penalty", "a b c", ex(gold_format)).status is Status.NOT_APPLICABLE


# -- hostile inputs ------------------------------------------------------------------------------

LOOKALIKES = [
    "<th\u200bink>a</th\u200bink><answer>b</answer>",  # zero-width space inside the tag
    "<th\u0456nk>a</th\u0456nk><answer>b</answer>",  # Cyrillic i
    "\uff1cthink\uff1ea\uff1c/think\uff1e<answer>b</answer>",  # full-width brackets
    "<THINK>a</THINK><answer>b</answer>",  # case
    "<think\x00>a</think\x00><answer>b</answer>",  # NUL inside the tag
    "<\x00think>a<\x00/think><answer>b</answer>",
    "< think>a</ think><answer>b</answer>",
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalike_tags_are_not_tags(text):
    assert score("think_answer_strict", text).details["reason"] == "missing <think>"
    assert score("think_answer_soft", text).status is Status.INCORRECT
    assert score("tag_count", text).score == 0.5  # only the two answer tags count
    assert score("answer_tag", text).score == 1.0


def test_invisible_content_is_empty_and_invisible_prefix_is_text():
    assert score("think_answer_strict", "<think>\x00\u200b</think><answer>7</answer>").details["reason"] == (
        "empty <think> block"
    )
    assert score("think_answer_strict", "<think>a</think><answer>\ufeff</answer>").details["reason"] == (
        "empty <answer> block"
    )
    # invisible characters are not whitespace: before the think block they are text
    assert score("think_answer_strict", "\u200b" + GOOD).details["reason"] == "text before <think>"
    assert score("think_answer_strict", "\x00" + GOOD).details["reason"] == "text before <think>"


def test_unterminated_tags():
    text = "<think>a</think><answer>7"
    assert score("think_answer_strict", text).details["reason"] == "missing </answer>"
    assert score("think_answer_soft", text).status is Status.INCORRECT
    assert score("answer_tag", text).status is Status.INCORRECT
    assert score("tag_count", text).score == 0.75


@pytest.mark.timeout(120)
def test_many_openers():
    openers = "<think>" * 100_000
    closed = openers + "a</think><answer>b</answer>"
    assert score("think_answer_strict", closed).details["reason"] == "<think> appears 100000 times, expected exactly once"
    assert score("think_answer_soft", closed).score == 1.0  # innermost block "a"
    assert score("tag_count", closed).score == 0.75
    assert score("think_answer_soft", openers).status is Status.INCORRECT
    assert score("think_answer_soft", openers + "<answer>b</answer>").status is Status.INCORRECT
    assert score("repetition_penalty", openers).score == 0.0  # one "word"
    many_empty = "<think></think>" * 100_000 + "<answer>b</answer>"
    assert score("think_answer_soft", many_empty).details["reason"].startswith("no non-empty <think>")
    closers_first = "</think>" * 100_000 + "<think>a"
    assert score("think_answer_soft", closers_first).status is Status.INCORRECT


@pytest.mark.timeout(300)
def test_ten_megabyte_inputs():
    big = "x" * MB10
    cases = {
        # (text, reward): (score, status)
        ("think", f"<think>{big}</think><answer>7</answer>"): 1.0,
        ("answer", f"<answer>{big}</answer>"): 1.0,
        ("openers", "<think>" * (MB10 // 7)): 0.0,
        ("alternating", "<think></think><answer></answer>" * (MB10 // 32)): 0.0,
        ("trailing", GOOD + " " * MB10): 1.0,
    }
    for (label, text), value in cases.items():
        for name in ("think_answer_strict", "think_answer_soft", "answer_tag"):
            if label == "answer" and name != "answer_tag":
                continue
            if label == "think" and name == "answer_tag":
                continue
            assert score(name, text).score == value, (label, name)
    assert score("tag_count", "<think>" * (MB10 // 7)).score == 0.0
    assert score("overlong_penalty", big).score == -1.0
    distinct = " ".join(str(i) for i in range(1_500_000))  # ~10 MB of unique words
    assert len(distinct) > 9_000_000
    assert score("repetition_penalty", distinct).score == 0.0
    out = score("repetition_penalty", "to be or not " * (MB10 // 13))
    total = 4 * (MB10 // 13) - 2
    assert out.details["repeated"] == total - 4  # only 4 distinct trigrams in a 4-word cycle
    assert out.score == pytest.approx(-(total - 4) / total)


# -- demo task -----------------------------------------------------------------------------------


def test_demo_examples_are_deterministic_and_carry_options():
    task = TASKS["format_demo"]
    opts = task.parse_options({"count": 5, "max_len": 300})
    a = [e.model_dump() for e in task.examples("train", 1, opts)]
    assert a == [e.model_dump() for e in task.examples("train", 1, opts)]
    assert len(a) == 5 and a[0]["gold"]["format"] == {"max_len": 300, "overlong_buffer": 512}
    assert "<think>" in a[0]["prompt"][0]["content"]
    assert a != [e.model_dump() for e in task.examples("test", 1, opts)]
    with pytest.raises(ValueError, match="splits"):
        list(task.examples("validation", 1, opts))
    with pytest.raises(ValueError):
        task.parse_options({"count": 0})
    with pytest.raises(ValueError):
        task.parse_options({"colour": "red"})


def test_demo_gold_completion_scores_full_marks_on_every_reward():
    task = TASKS["format_demo"]
    example = next(iter(task.examples("train", 0, task.parse_options({}))))
    answer = example.gold["answer"]
    completion = f"<think>Adding the two numbers gives {answer}.</think>\n<answer>{answer}</answer>"
    for name in task.rewards:
        assert call_reward(REWARDS[name], completion, example).score == REWARDS[name].max_score, name


# -- discovery and the real scoring path ---------------------------------------------------------


def test_entry_point_is_installed():
    eps = {e.name: e for e in importlib.metadata.entry_points(group="grpo_env")}
    assert eps["format"].value == "grpo_env_format"
    assert eps["format"].dist.metadata["Name"] == "grpo-env-format"
    module = eps["format"].load()
    assert module is grpo_env_format
    for hook in ("register_rewards", "register_tasks"):
        assert hasattr(getattr(module, hook), "grpo_env_impl")  # marked with @hookimpl


def test_registry_has_the_rewards_and_task():
    from grpo_env.plugins import get_registry

    registry = get_registry()
    assert registry.plugins["format"].status == "loaded", registry.plugins["format"].error
    assert set(REWARDS) <= set(registry.rewards) and all(n.startswith("format.") for n in REWARDS)
    assert len(REWARDS) == 7
    assert "format_demo" in registry.tasks
    assert registry.rewards["format.overlong_penalty"].max_score == 0.0


def test_demo_fixtures_pass_through_the_scoring_service():
    from grpo_env.cli.check import check_task
    from grpo_env.plugins import get_registry
    from grpo_env.scoring import ScoringService

    registry = get_registry()
    with ScoringService(registry.rewards, workers=2) as service:
        result = check_task(registry.tasks["format_demo"], registry, service)
        assert result.ok, result.problems
        assert result.fixtures >= 10
        # the rewards also run in forked workers on a large hostile input
        hostile = "<think>" * 100_000 + "\u200b" * 1_000_000
        outs = service.score([(name, ex(), hostile) for name in REWARDS])
        blank = "<think>a</think><answer>" + "\u3164\u2800\ufe0f\U000e0020\u034f\uffa0" * 1_000_000 + "</answer>"
        blank_outs = service.score([(f"format.{name}", ex(), blank) for name in CONTENT_REWARDS])
        blank_box = "\\boxed{" + "\u3164\u2800\ufe0f\U000e0020\u034f\uffa0" * 1_000_000 + "}"
        blank_outs += service.score([("format.boxed", ex(), blank_box)])
    assert len(outs) == len(REWARDS) == 7 and all(o.status is not Status.ERROR for o in outs)
    assert outs[list(REWARDS).index("format.tag_count")].score == 0.0
    assert [(o.score, o.status) for o in blank_outs] == [(0.0, Status.INCORRECT)] * 4, blank_outs


# -- invisible content (security review #10, item 17) --------------------------------------------

CONTENT_REWARDS = ("think_answer_strict", "think_answer_soft", "answer_tag")
# The six characters the review found scoring full marks as the whole think and answer content.
INVISIBLE = ["\u3164", "\u2800", "\ufe0f", "\U000e0020", "\u034f", "\uffa0"]
BLANK_CATEGORIES = ["Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"]
FILLERS = "\u115f\u1160\u3164\uffa0\u2800"  # Hangul fillers and the Braille blank (letters/symbols by category)


def test_invisible_answers_earn_no_content_credit_through_the_cli(tmp_path):
    good = "<think>3 plus 4 is 7.</think>\n<answer>7</answer>"
    rows = [{"id": "good", "prompt": "What is 3 + 4?", "completion": good}]
    rows += [{"id": f"U+{ord(c):04X}", "prompt": "What is 3 + 4?",
              "completion": f"<think>{c}</think><answer>{c}</answer>"} for c in INVISIBLE]
    rows.append({"id": "answer only", "prompt": "What is 3 + 4?",
                 "completion": "<think>3 plus 4 is 7.</think><answer>" + "".join(INVISIBLE) + "</answer>"})
    out, took = run_score_cli("format_demo", rows, tmp_path)
    assert took < 60, f"took {took:.1f}s"
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert out[0]["score"] == 1.75 and out[0]["status"] == "correct"
    for r in out[1:]:
        for name in CONTENT_REWARDS:
            outcome = r["rewards"][f"format.{name}"]
            assert (outcome["score"], outcome["status"]) == (0.0, "incorrect"), (r["id"], name, outcome)
        assert r["rewards"]["format.think_answer_strict"]["details"]["reason"].startswith("empty <")
        assert r["score"] == 0.25, r  # only tag_count (0.25 x 1.0): the four tags are there, once each


def test_blank_characters_are_blank():
    for c in INVISIBLE + list(FILLERS) + ["\x00", "\x01", "\x7f", "\x1f", "\x85", "\u00a0", "\u061c", "\u180e",
                                          "\u200b", "\u2028", "\u2029", "\u3000", "\ufeff", "\U000e0001", "\U000e01ef"]:
        assert score("answer_tag", f"<answer>{c * 3}</answer>").details["reason"] == "empty <answer> block", hex(ord(c))
    # a visible character carrying combining marks, selectors or format characters is content
    for text in ["7\u0301", "\u200b7", "\ufe0f\u20e37", "\u3164a", "\u2800\u2801"]:
        assert score("answer_tag", f"<answer>{text}</answer>").score == 1.0, ascii(text)


_blank_chars = st.characters(categories=BLANK_CATEGORIES) | st.sampled_from(FILLERS + " \t\n")


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(_blank_chars, max_size=100), st.text(_blank_chars, max_size=100))
def test_any_blank_string_earns_no_content_credit(think, answer):
    assert all(unicodedata.category(c) in BLANK_CATEGORIES or c in FILLERS for c in think + answer)
    both = f"<think>{think}</think><answer>{answer}</answer>"
    only_answer = f"<think>3 plus 4 is 7.</think><answer>{answer}</answer>"
    for text in (both, only_answer):
        for name in CONTENT_REWARDS:
            out = score(name, text)
            assert (out.score, out.status) == (0.0, Status.INCORRECT), (name, ascii(text), out.details)
    # the same blanks around a visible answer do not hide it
    assert score("think_answer_strict", f"<think>a</think><answer>{answer}7{answer}</answer>").score == 1.0


@pytest.mark.timeout(120)
def test_ten_megabytes_of_blanks():
    blanks = "\u3164\u200b\u0301\U000e0020 " * (MB10 // 5)
    start = time.monotonic()
    assert score("think_answer_strict", f"<think>a</think><answer>{blanks}</answer>").details["reason"] == (
        "empty <answer> block")
    assert score("think_answer_soft", f"<think>{blanks}</think><answer>7</answer>").status is Status.INCORRECT
    assert score("answer_tag", f"<answer>{blanks}7</answer>").score == 1.0  # the visible 7 at the very end counts
    assert time.monotonic() - start < 20


# -- red-team round 2: invisible repetition (A4), content that renders empty (A5) ------------------

# characters the blank rules call invisible but that are not whitespace: dropped before words are split
INVISIBLE_IN_WORDS = ["\u200b", "\u2060", "\u00ad", "\ufeff", "\u3164", "\u0301", "\x00", "\U000e0020",
                      "\ue000", "\U0001d159", "\ufffc"]
# rendered empty, yet letters, symbols or code points with no glyph: blank since round 2
EMPTY_RENDERING = ["\U0001d159", "\ufffc", "\ue000", "\U000f0000", "\U00100000", "\u0378", "\uffff", "\U000e0080",
                   "\ud800", "\udfff"]
PLAIN_REPEATS = "<think>" + " ".join(["add them"] * 20) + "</think><answer>7</answer>"
PLAIN_REPEATS_SCORE = -34 / 38  # 38 trigrams, 4 distinct (the tags glue onto the first and last word)


def _varied(ch: str) -> str:
    """The reported evasion: each ``add`` carries a different number of invisible characters."""
    return "<think>" + " ".join("add" + ch * (i + 1) + " them" for i in range(20)) + "</think><answer>7</answer>"


@pytest.mark.parametrize("ch", INVISIBLE_IN_WORDS, ids=lambda c: f"U+{ord(c):04X}")
def test_a4_invisible_characters_do_not_hide_repetition(ch):
    start = time.monotonic()
    out = score("repetition_penalty", _varied(ch))
    assert (out.score, out.status) == (pytest.approx(PLAIN_REPEATS_SCORE), Status.PARTIAL), out.details
    assert out.details == {"ngram": 3, "ngrams": 38, "repeated": 34}
    assert time.monotonic() - start < 2


def test_a4_invisible_characters_join_words_and_real_whitespace_splits_them():
    # an invisible character inside a word is not a space: "a\u200bb" is the one word "ab"
    assert score("repetition_penalty", "a\u200bb c ab c", ex({"ngram": 2})).score == pytest.approx(-1 / 3)
    # Unicode whitespace (no-break space, ideographic space, line separator) still separates words
    assert score("repetition_penalty", "a\u00a0b\u3000c\u2028a b c").score == pytest.approx(-0.25)
    # a visible repeat is not hidden by invisible characters between the words
    assert score("repetition_penalty", "a \u200b b \u200b a \u200b b", ex({"ngram": 2})).score == pytest.approx(-1 / 3)


@pytest.mark.timeout(120)
def test_a4_ten_megabytes_of_invisible_varied_words():
    text = "".join(f"to{chr(0x200b) * (i % 7)} be or not " for i in range(MB10 // 16))
    start = time.monotonic()
    out = score("repetition_penalty", text)
    assert time.monotonic() - start < 20
    total = 4 * (MB10 // 16) - 2
    assert (out.details["repeated"], out.status) == (total - 4, Status.PARTIAL)


@pytest.mark.parametrize("ch", EMPTY_RENDERING, ids=lambda c: f"U+{ord(c):04X}")
def test_a5_empty_rendering_characters_earn_no_content_credit(ch):
    for text in (ch, ch * 3, ch * 200):  # one at a time, and a run long enough for the table lookup
        both = f"<think>{text}</think><answer>{text}</answer>"
        for name in CONTENT_REWARDS:
            out = score(name, both)
            assert (out.score, out.status) == (0.0, Status.INCORRECT), (name, out.details)
        assert score("answer_tag", f"<answer>{text}</answer>").details["reason"] == "empty <answer> block"
    # next to a visible character they hide nothing
    assert score("think_answer_strict", f"<think>{ch}a</think><answer>7{ch}</answer>").score == 1.0


def test_a4_a5_through_the_scoring_service():
    from grpo_env.scoring import ScoringService

    items = [("format.repetition_penalty", ex(), PLAIN_REPEATS), ("format.repetition_penalty", ex(), _varied("\u200b"))]
    items += [(f"format.{name}", ex(), f"<think>{c}</think><answer>{c}</answer>")
              for c in EMPTY_RENDERING for name in CONTENT_REWARDS]
    start = time.monotonic()
    with ScoringService(REWARDS, workers=1) as service:
        outs = service.score(items)
    assert time.monotonic() - start < 60
    assert [(o.score, o.status) for o in outs[:2]] == [(pytest.approx(PLAIN_REPEATS_SCORE), Status.PARTIAL)] * 2
    assert [(o.score, o.status) for o in outs[2:]] == [(0.0, Status.INCORRECT)] * (len(items) - 2)


def test_a4_a5_through_the_cli(tmp_path):
    rows = [{"id": "rep-plain", "prompt": "p", "answer": "7", "completion": PLAIN_REPEATS},
            {"id": "rep-zw", "prompt": "p", "answer": "7", "completion": _varied("\u200b")}]
    rows += [{"id": f"U+{ord(c):04X}", "prompt": "p", "answer": "7",
              "completion": f"<think>{c}</think><answer>{c}</answer>"} for c in EMPTY_RENDERING if not 0xD800 <= ord(c) <= 0xDFFF]
    # lone surrogates are left out here: they go through the service above (grpo-env score cannot
    # yet write them back to its output file)
    out, took = run_score_cli("format_demo", rows, tmp_path)
    assert took < 60, f"took {took:.1f}s"
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for r in out[:2]:
        rep = r["rewards"]["format.repetition_penalty"]
        assert (rep["score"], rep["status"]) == (pytest.approx(PLAIN_REPEATS_SCORE), "partial"), r["id"]
    for r in out[2:]:
        for name in CONTENT_REWARDS:
            outcome = r["rewards"][f"format.{name}"]
            assert (outcome["score"], outcome["status"]) == (0.0, "incorrect"), (r["id"], name, outcome)
        assert r["score"] == 0.25, r  # only tag_count
