"""``games.guess``: find a secret whole number from 1 to ``high`` with higher/lower hints.

Each assistant turn is one guess. The environment reads the turn's numbers (runs of ASCII digits,
found with one linear scan; a run longer than :data:`MAX_DIGITS` is no number) and answers

- the guess is the secret: the episode ends, ``correct`` (score 1);
- a wrong guess: ``Higher.`` or ``Lower.``;
- no number, or more than one *distinct* number (``"5, I say 5"`` is one guess; ``"1 2 3"`` is
  none: listing candidates must never win), more than :data:`MAX_NUMBERS` numbers at all, or a
  number outside 1..high: a request for exactly one whole number.

Every turn counts against ``max_turns`` guesses, the malformed ones too; after the last one the
episode ends ``incorrect`` (as does one the core stops). Secrets are a deterministic stream per
(split, seed): train draws from the even stream numbers, test from the odd ones, so a split's
stream never equals the other's. With the defaults (1..8, 4 guesses) binary search always wins.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grpo_env.environment import Environment, Episode, EpisodeFixture, Step, Turn
from grpo_env.types import Example, Message, Outcome, Status

NAME = "games.guess"
TURN_CAP = 16  # the environment's turn limit; the ``max_turns`` option ends episodes sooner
HIGH, TURNS = 8, 4  # the defaults of the ``high`` and ``max_turns`` options
MAX_DIGITS = 12  # a longer run of digits is not a guess (and is never converted)
MAX_NUMBERS = 16  # runs of digits read per turn; a turn with more is no guess
DIGITS = re.compile(r"[0-9]+")  # one character class, greedy: each character is read once, no backtracking

PROMPT = ("I am thinking of a whole number from 1 to {high}. Find it: reply with one number per turn and I "
          "will tell you whether my number is higher or lower. You have {turns} guesses; a reply with no "
          "number or more than one number wastes a guess.")


class GuessOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    high: int = Field(HIGH, ge=2, le=1_000_000, description="the secret is a whole number from 1 to high")
    max_turns: int = Field(TURNS, ge=1, le=TURN_CAP, description="guesses per episode")
    count: int = Field(1000, ge=1, le=1_000_000, description="episodes per split")


def _stream(split: str, seed: int) -> random.Random:
    if split not in ("train", "test"):
        raise ValueError(f"games.guess has splits 'train' and 'test', not {split!r}")
    stream = 2 * seed + (0 if split == "train" else 1)  # disjoint: train even, test odd
    digest = hashlib.sha256(f"{NAME}|{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def guess_example(ex_id: str, secret: int, high: int = HIGH, turns: int = TURNS) -> Example:
    prompt = [Message(role="user", content=PROMPT.format(high=high, turns=turns))]
    return Example(id=ex_id, prompt=prompt, gold={"secret": secret, "high": high, "max_turns": turns})


def examples(split: str, seed: int, options: dict[str, Any]) -> Iterator[Example]:
    rng = _stream(split, seed)
    high, turns = options.get("high", HIGH), options.get("max_turns", TURNS)
    for i in range(options.get("count", 1000)):
        yield guess_example(f"{NAME}-{split}-{seed}-{i}", rng.randint(1, high), high, turns)


def read_guess(text: str) -> tuple[int | None, str]:
    """(the guess, "") when ``text`` holds exactly one distinct whole number, else (None, why).
    Linear in ``text``; stops at the second distinct number or after :data:`MAX_NUMBERS` numbers."""
    found: int | None = None
    for k, m in enumerate(DIGITS.finditer(text)):
        if k == MAX_NUMBERS:  # a guess does not need this many numbers, even all the same
            return None, "many"
        if m.end() - m.start() > MAX_DIGITS:
            return None, "too_long"
        value = int(m.group())
        if found is None:
            found = value
        elif value != found:
            return None, "many"
    return (found, "") if found is not None else (None, "none")


class GuessEpisode(Episode):
    def __init__(self, example: Example):
        super().__init__(example)
        self.secret = int(example.gold["secret"])
        self.high = int(example.gold.get("high", HIGH))
        self.turns = turn_limit(example)
        self.guesses: list[int | None] = []

    def step(self, turn: Turn) -> Step:
        guess, why = read_guess(turn.text)
        if guess is not None and not 1 <= guess <= self.high:
            guess, why = None, "range"
        self.guesses.append(guess)
        if guess == self.secret:
            return Step.end(Outcome.correct(guesses=len(self.guesses)))
        if len(self.guesses) >= self.turns:
            return Step.end(self._lost("guesses"))
        if guess is None:
            ask = f"Reply with exactly one whole number from 1 to {self.high}."
            if why == "range":
                ask = f"That is not a number from 1 to {self.high}. " + ask
            return Step.reply(ask)
        return Step.reply("Higher." if self.secret > guess else "Lower.")

    def end(self, reason: str) -> Outcome:
        return self._lost(reason)

    def _lost(self, reason: str) -> Outcome:
        return Outcome.incorrect(reason=reason, guesses=len(self.guesses),
                                 malformed=sum(g is None for g in self.guesses))


def make_episode(example: Example) -> Episode:
    return GuessEpisode(example)


def turn_limit(example: Example) -> int:
    """An episode's guesses: its ``max_turns`` option."""
    return int(example.gold.get("max_turns", TURNS))


def fixtures() -> list[EpisodeFixture]:
    top = guess_example(f"{NAME}-fixture-8", 8)
    low = guess_example(f"{NAME}-fixture-1", 1)
    F = EpisodeFixture
    return [
        F(example=top, turns=["4", "6", "7", "8"], expect="full", turns_played=4,
          note="binary search, found with the last guess"),
        F(example=low, turns=["My guess is 4.", "Then 2.", "It must be 1."], expect="full", turns_played=3,
          note="binary search in words"),
        F(example=top, turns=["Is it 8? I say 8!"], expect="full", turns_played=1,
          note="the same number twice is one guess"),
        F(example=top, turns=["3", "3", "3", "3"], expect="zero", turns_played=4, note="the same wrong guess"),
        F(example=top, turns=["1 2 3 4 5 6 7 8"] * 4, expect="zero", turns_played=4,
          note="listing every number is no guess"),
        F(example=top, turns=["1 2 3 4 5 6 7 8", "4", "6", "7"], expect="zero", turns_played=4,
          note="a list wastes a guess: three are left for a search that needs four"),
        F(example=top, turns=["no idea", "9", "0", "9" * 5000], expect="zero", turns_played=4,
          note="no number, out of range, an absurdly long number"),
        F(example=top, turns=["4", "5"], expect="zero", turns_played=2, note="the script stops early"),
    ]


def guess_environment() -> Environment:
    return Environment(
        name=NAME,
        description="Higher/lower number guessing: a secret from 1 to high (default 8), one number per turn, "
        "4 guesses by default (binary search always wins)",
        rewards={NAME: 1.0},
        examples=examples,
        options=GuessOptions,
        make=make_episode,
        max_turns=TURN_CAP,
        turn_limit=turn_limit,
        step_timeout=5.0,
        episode_timeout=30.0,
        fixtures=fixtures,
        outcome_range=(0.0, 1.0),
        outcome_statuses=(Status.CORRECT, Status.INCORRECT),  # found (1), or not within the guesses (0)
    )
