"""Environments that fail during training, made visible: their errors written down, their failure
rates warned about, and a run whose environment never works stopped.

An environment whose ``make`` raises, or whose every step runs past its deadline, gives episodes
with no training signal (``error``: excluded; ``timeout``: 0); without this a run of them ends
"done" with no reward and the exception nowhere. :class:`EpisodeWatch` sees every judged episode
(it wraps the episode host, so it sees the groups dynamic sampling drops too: a failing
environment's groups have no reward spread) and, once per step (:meth:`EpisodeWatch.finish`):

- writes the first :data:`MAX_ERRORS` distinct failures (environment, phase, message) to
  ``RUN/environment_errors.jsonl`` (step, environment, ended_by, phase, turn, message, traceback: the
  frames the episode's process sent, count: how many episodes of that step failed so), and prints
  each to stderr once;
- warns once per environment and kind when more than ``[train] env_warn_share`` of its episodes in a
  step ended in ``error``, ``timeout`` or a turn cut at ``max_new_tokens`` (``truncated``); the step's
  record holds them under ``env_alarms``;
- warns once per environment when most of its episodes in a step ended with their *first* turn cut at
  ``max_new_tokens`` (the model never got an answer from the environment), saying the fix: more
  tokens per turn, a system prompt asking for short turns, or ``on_truncated = "step"``;
- stops the run (:class:`EnvironmentFailing`, exit 2) when every episode of an environment failed
  (``error`` or ``timeout``) in ``[train] env_failed_steps`` steps in a row in which it was played.

The engine knows nothing of plugins: the host's judgements (``Scored``, the environment's outcome
under its own name, whose details hold ``error`` or ``reason``, ``traceback``, ``phase`` and ``turn``)
and episode stats (``ended_by``) are all it reads. Every rank records its own episodes; they are
gathered, so every rank takes the same decision, and only the main rank writes and prints.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from grpo_env.engine.distributed import Dist

ERRORS_FILE = "environment_errors.jsonl"
MAX_ERRORS = 10  # distinct failures written down and printed; the rest are counted in the metrics
FAILED = ("error", "timeout")  # how an episode ends when its environment failed
WARNED = ("error", "timeout", "truncated")  # endings whose share is warned about
ENDED = {"error": "ended in an environment error", "timeout": "timed out",
         "truncated": "had a turn cut at max_new_tokens"}
MAX_MESSAGE, MAX_TRACEBACK = 2_000, 8_000  # characters kept of each


class EnvironmentFailing(RuntimeError):
    """Every episode of an environment failed for ``env_failed_steps`` steps in a row."""


class EpisodeWatch:
    """Call :meth:`observe` on the episode host once, then :meth:`finish` and :meth:`check` each step.

    ``resume_step``: the step a resumed run continues from (the errors file keeps its earlier
    lines); None for a fresh run (an earlier attempt's file is removed)."""

    def __init__(self, cfg, out_dir: str | Path, dist: Dist = Dist(), resume_step: int | None = None, out=None):
        self.warn_share = cfg.env_warn_share
        self.max_new_tokens = getattr(cfg, "max_new_tokens", None)
        self.stop_after = cfg.env_failed_steps
        self.dist = dist
        self.out = out  # where messages go (None: sys.stderr at the time)
        self.path = Path(out_dir) / ERRORS_FILE
        self.watching = False
        self.seen: set[tuple] = set()  # distinct failures written down
        self.warned: set[tuple[str, str]] = set()  # (environment, ended_by) already warned about
        self.failing: dict[str, tuple[int, int]] = {}  # environment -> (first step, steps) of its run of failed steps
        self._rows: list[dict[str, Any]] = []  # this step's judged episodes on this rank
        self._stop = ""
        if dist.main and self.path.exists():
            self._reload(resume_step)

    def observe(self, host):
        """The host the rollout uses: ``host``, reporting every episode it judges to the watch."""
        if host is None:
            return None
        self.watching = True
        return _WatchedHost(host, self)

    # -- each step ---------------------------------------------------------------------------

    def finish(self, step: int) -> dict[str, Any]:
        """The step's episodes (every rank's): failures written and printed, rates warned about, the
        stop decided. Returns what goes into the step's record (``env_alarms``, when any)."""
        if not self.watching:
            return {}
        rows, self._rows = self._rows, []
        if self.dist.active:  # every rank the same rows, so every rank decides alike
            rows = [r for part in self.dist.gather(rows) for r in part]
        by_env: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            by_env[r["env"]][r["ended_by"]] += 1
            by_env[r["env"]]["episodes"] += 1
            by_env[r["env"]]["first_turn_cut"] += bool(r.get("first_turn_cut"))
        self._write_down(step, [r for r in rows if r["ended_by"] in FAILED])
        alarms = []
        for env, c in sorted(by_env.items()):
            n = c["episodes"]
            if c["first_turn_cut"] > n / 2 and (env, "first_turn_cut") not in self.warned:
                self.warned.add((env, "first_turn_cut"))
                limit = f" (now {self.max_new_tokens})" if self.max_new_tokens else ""
                self._say(f"warning: environment {env!r}: {c['first_turn_cut']} of {n} episodes ended with their "
                          f"first turn cut at max_new_tokens at step {step}: the model never heard back from the "
                          f"environment, and these episodes train on no interaction. Give turns more tokens "
                          f"([train] max_new_tokens{limit}), or a system prompt that asks for short turns "
                          "([train] system_prompt); an environment with on_truncated = \"step\" is handed cut "
                          "turns and can answer them")
            for kind in WARNED:
                share = c[kind] / n
                if share <= self.warn_share:
                    continue
                alarms.append({"environment": env, "ended_by": kind, "share": round(share, 4), "episodes": n,
                               "threshold": self.warn_share})
                if (env, kind) not in self.warned:
                    self.warned.add((env, kind))
                    self._say(f"warning: environment {env!r}: {c[kind]} of {n} episodes {ENDED[kind]} at step {step} "
                              f"(more than [train] env_warn_share = {self.warn_share:g}); {self._why(kind)}")
            if c["error"] + c["timeout"] == n:
                first, count = self.failing.get(env, (step, 0))
                self.failing[env] = (first, count + 1)
            else:
                self.failing.pop(env, None)
            first, count = self.failing.get(env, (step, 0))
            if self.stop_after and count >= self.stop_after and not self._stop:
                last = next((r for r in reversed(rows) if r["env"] == env and r["ended_by"] in FAILED), {})
                self._stop = (f"every episode of environment {env!r} failed (error or timeout) in {count} steps "
                              f"in a row (steps {first}-{step}); the last: {last.get('message', '?')}. The "
                              f"first errors, with their tracebacks, are in {self.path}. Try the environment with "
                              f"`grpo-env check {env}` or `grpo-env play {env}`; [train] env_failed_steps = 0 "
                              "never stops")
        return {"env_alarms": alarms} if alarms else {}

    def check(self) -> None:
        """Raise :class:`EnvironmentFailing` when an environment failed too many steps in a row (every
        rank alike: they decided on the same rows)."""
        if self._stop:
            raise EnvironmentFailing(self._stop)

    # -- what the host reports ------------------------------------------------------------------

    def _record(self, examples: Sequence, judged: Sequence, stats: Sequence) -> None:
        for ex, scored, st in zip(examples, judged, stats):
            if scored is None or st is None:
                continue  # a single-turn row
            row: dict[str, Any] = {"env": ex.task, "ended_by": st.get("ended_by", ""), "example": ex.id}
            # the host's stats count the turns its environment played: none, for an episode cut at turn 1
            row["first_turn_cut"] = row["ended_by"] == "truncated" and not st.get("turns")
            if row["ended_by"] in FAILED:
                o = scored.components.get(ex.task)
                details = o.details if o is not None else {}
                message = details.get("error") or details.get("reason") or f"{row['ended_by']} ({details})"
                row.update(message=str(message)[:MAX_MESSAGE], phase=details.get("phase"), turn=details.get("turn"),
                           traceback=str(details.get("traceback") or "")[:MAX_TRACEBACK])
            self._rows.append(row)

    # -- the errors file and stderr ---------------------------------------------------------------

    @staticmethod
    def _key(r: dict[str, Any]) -> tuple:
        return (r["env"] if "env" in r else r["environment"]), r["ended_by"], r.get("phase"), r["message"]

    def _write_down(self, step: int, failed: list[dict[str, Any]]) -> None:
        counts = Counter(self._key(r) for r in failed)
        new = []
        for r in failed:
            key = self._key(r)
            if key in self.seen or len(self.seen) >= MAX_ERRORS:
                continue
            self.seen.add(key)
            new.append({"step": step, "environment": r["env"], "ended_by": r["ended_by"], "phase": r.get("phase"),
                        "turn": r.get("turn"), "example": r.get("example"), "message": r["message"],
                        "traceback": r.get("traceback", ""), "count": counts[key]})
        if not new or not self.dist.main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for rec in new:
                f.write(json.dumps(rec) + "\n")
        for rec in new:
            tb = "".join(f"\n    {line}" for line in rec["traceback"].rstrip().splitlines())
            self._say(f"environment {rec['ended_by']} at step {step} ({rec['count']} episode(s) of "
                      f"{rec['environment']!r}): {rec['message']}{tb}")
        more = f" (the first {MAX_ERRORS} distinct ones are kept)" if len(self.seen) >= MAX_ERRORS else ""
        self._say(f"  written to {self.path}{more}")

    def _reload(self, resume_step: int | None) -> None:
        """A fresh run: an earlier attempt's file goes. A resumed one keeps the lines up to its step."""
        if resume_step is None:
            self.path.unlink()
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
                if rec["step"] <= resume_step:
                    kept.append(line)
                    self.seen.add(self._key(rec))
            except (json.JSONDecodeError, KeyError, TypeError):
                break  # a torn last line from a kill
        self.path.write_text("".join(k + "\n" for k in kept))

    def _say(self, text: str) -> None:
        if self.dist.main:
            print(text, file=self.out or sys.stderr, flush=True)

    def _why(self, kind: str) -> str:
        if kind == "truncated":
            return "the core stopped them: raise max_new_tokens, or ask for shorter turns"
        what = "they are left out of training" if kind == "error" else "they score 0"
        return f"{what}; the errors are in {self.path}"


class _WatchedHost:
    """An episode host whose batches report each episode they judge to the watch."""

    def __init__(self, host, watch: EpisodeWatch):
        self._host, self._watch = host, watch

    def __getattr__(self, name: str):
        return getattr(self._host, name)

    def open(self, examples):
        return _WatchedBatch(self._host.open(examples), list(examples), self._watch)


class _WatchedBatch:
    def __init__(self, batch, examples: list, watch: EpisodeWatch):
        self._batch, self._examples, self._watch = batch, examples, watch

    def __getattr__(self, name: str):
        return getattr(self._batch, name)

    def judge(self):
        judged = self._batch.judge()
        self._watch._record(self._examples, judged, self._batch.stats)
        return judged
