"""Tool environments inside TRL's GRPOTrainer (environment_factory): what fits, the tools run in our
episode processes under their deadlines, our judgement as the reward, and one real trainer step."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from grpo_env import hookimpl
from grpo_env.environment import Environment, Episode, Step, Tool
from grpo_env.types import Example, Outcome
import envs_for_tests as te

pytest.importorskip("trl")


class Boom(Episode):
    """Its tool raises: an environment error, never the model's."""

    def call_tool(self, call):
        raise RuntimeError("the tool's backend is down")

    def step(self, turn):
        return Step.end(Outcome.correct())


class MorePlugin:
    @hookimpl
    def register_environments(self, register):
        register(Environment(name="tenv_boom", rewards={"tenv_boom": 1.0}, examples=te._examples, make=Boom,
                             tools=[Tool(name="get")]))
        register(Environment(name="tenv_slow_tool", rewards={"tenv_slow_tool": 1.0}, examples=te._examples,
                             make=te.SlowTool, tools=[Tool(name="get")], step_timeout=0.3, episode_timeout=5))


@pytest.fixture
def envs(register_plugin, tmp_path):
    register_plugin(te.Plugin(), name="tenv")
    register_plugin(MorePlugin(), name="tenv_more")

    def recipe(*names: str, seed: int = 3):
        path = tmp_path / f"{'_'.join(names)}.toml"
        path.write_text(f'name = "t"\nseed = {seed}\n[scoring]\nworkers = 1\n'
                        + "".join(f'[[tasks]]\nname = "{n}"\nweight = 1\n' for n in names))
        return path

    return recipe


def _row(task: str, secret: str = "7", i: int = 0) -> dict:
    return {"prompt": [{"role": "user", "content": "find it"}], "task": task, "id": f"r{i}",
            "gold": json.dumps({"secret": secret, "say": "go on"})}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _pid(inst) -> int:
    return inst._batch.sessions[0].proc.pid


def test_what_fits_and_what_is_refused_with_the_reason(envs):
    from grpo_env.integrations.trl import EnvironmentRefused, TRLEnvironments, TRLRewards, recipe_dataset

    for name, why in [("games.guess", "offers no tools"), ("tenv_talk", "offers no tools")]:
        with pytest.raises(EnvironmentRefused) as refused:
            TRLEnvironments(envs(name))
        msg = str(refused.value)
        assert f"{name!r} does not fit TRL's environment_factory: it {why}" in msg, msg
        assert "TRL's loop plays tools only" in msg and "grpo-env train" in msg, msg
    with pytest.raises(ValueError, match="'math_arith' is a single-turn task: TRLEnvironments serves environments"):
        TRLEnvironments(envs("math_python", "math_arith"))
    # the single-turn bridge still refuses environments, and now says which ones TRLEnvironments takes
    fits = "'math_python' fits TRL's own tool loop: train it with TRLEnvironments"
    with pytest.raises(EnvironmentRefused, match=fits):
        recipe_dataset(envs("math_python"), 4)
    with pytest.raises(EnvironmentRefused, match="TRL bridge plays no episodes.*bridges only tool environments"):
        TRLRewards(envs("games.guess"))


def test_tools_are_typed_documented_methods_with_the_spec_transformers_shows():
    from transformers.utils import get_json_schema

    from grpo_env.integrations.trl_env import tool_method
    from grpo_env.plugins import get_registry

    python = get_registry().task("math_python").tools[0]
    enum = Tool(name="pick", description="Pick one.\n  Returns: a pick", parameters={
        "type": "object", "required": ["which"], "properties": {
            "which": {"type": "string", "enum": ["a", "b"], "description": "which\n one"},
            "n": {"type": ["integer", "null"], "description": "how many"},
            "xs": {"type": "array", "items": {"type": "number"}, "description": "values"}}})
    for tool in (python, enum):
        cls = type("E", (), {tool.name: tool_method(tool)})
        shown = get_json_schema(getattr(cls(), tool.name))["function"]
        ours = tool.spec()["function"]
        assert shown["name"] == ours["name"]
        assert set(shown["parameters"]["required"]) == set(ours["parameters"]["required"])
        for arg, schema in ours["parameters"]["properties"].items():
            got = shown["parameters"]["properties"][arg]
            assert got["description"] == " ".join(schema["description"].split())
            assert got.get("enum") == schema.get("enum") and got.get("items") == schema.get("items")
    assert shown["parameters"]["properties"]["n"] == {"type": "integer", "nullable": True, "description": "how many"}
    assert get_json_schema(getattr(type("E", (), {"python": tool_method(python)})(), "python"))["function"][
        "description"] == python.description


def test_tool_calls_run_in_the_episode_process_and_answer_in_plain_strings(envs):
    """reset opens an episode in its own process; each call goes there (the core checks the
    arguments); every failure is an ``error: ...`` string; the reward is our judgement; reset and
    close end the episode's process."""
    from grpo_env.integrations.trl import TRLEnvironments

    with TRLEnvironments(envs("tenv_secret")) as bridge:
        cls = bridge.environment_factory
        assert not isinstance(cls, dict) and bridge.max_tool_calling_iterations == 2  # max_turns 3
        env = cls()
        assert env.reset(**_row("tenv_secret", "7")) is None
        first = _pid(env)
        assert first != os.getpid() and _alive(first)
        assert env.get() == "7"  # the secret comes from the episode, in its process
        assert env.add(a=2, b=3) == "5"
        assert env.add(a=-1, b=3) == "error: a must not be negative"  # a ToolError
        assert env.add(a="x", b=3) == "error: add: argument 'a' must be of type integer"  # our checks, not Python's
        assert env.add(a=1) == "error: add: missing required argument(s) ['b']"
        assert env.add(1, 2) == "error: add takes keyword arguments only"
        env.reset(**_row("tenv_secret", "4\x1b[2J\x00", 1))  # a new episode: the old process is gone
        assert not _alive(first) and _alive(_pid(env))
        assert env.get() == "4\\x1b[2J\\x00"  # tool text is model text: control characters escaped
        second = _pid(env)
        env.reset(**_row("tenv_secret", "4", 1))
        assert not _alive(second) and env.get() == "4"
        # the judgement: the final turn to the episode's step, the environment's outcome as the reward
        other = cls()
        other.reset(**_row("tenv_secret", "4", 2))
        assert other.get() == "4"
        calls = [{"type": "function", "function": {"name": "get", "arguments": {}}}]
        right = [{"role": "assistant", "content": "", "tool_calls": calls},
                 {"role": "tool", "name": "get", "content": "4"}, {"role": "assistant", "content": "it is 4"}]
        unanswered = [{"role": "assistant", "content": "", "tool_calls": calls}]  # TRL stopped before running it
        logged = []
        [func] = bridge.funcs
        assert func.__name__ == "tenv_secret"
        out = func(prompts=[[]] * 2, completions=[right, unanswered], environments=[env, other],
                   completion_ids=[[1], [1]], log_metric=lambda k, v: logged.append((k, v)))
        assert out == [1.0, 0.0]  # no final answer: the environment's end() (no credit), not excluded
        assert [r["stats"]["ended_by"] for r in bridge.rollouts] == ["env", "turns"]
        assert bridge.rollouts[0]["stats"]["tool_calls"] == 1 and bridge.rollouts[0]["stats"]["turns"] == 2
        assert dict(logged)["grpo_env/status/correct"] == 1.0 and dict(logged)["grpo_env/status/incorrect"] == 1.0
        assert func(completions=[right, unanswered], environments=[env, other]) == [1.0, 0.0]  # judged once
        assert env.get() == "error: the episode has ended"
        assert env._batch is None and other._batch is None  # judged episodes are closed at once
        # more turns than the environment's max_turns: stopped as our core stops it
        env.reset(**_row("tenv_secret", "4", 3))
        long = [m for _ in range(3) for m in right[:2]] + [right[2]]
        assert func(completions=[long], environments=[env]) == [0.0]
        assert bridge.rollouts[0]["stats"]["ended_by"] == "turns"
        env.reset(**_row("tenv_secret", "4", 4))
        last = _pid(env)
    assert not _alive(last)  # close() ends what is open
    assert env.get() == "error: the episode has ended"
    # with the ids that end a turn, a final turn cut at the completion length is truncated (no credit)
    with TRLEnvironments(envs("tenv_secret"), eos_token_ids=[1]) as bridge:
        cut, whole = bridge.environment_factory(), bridge.environment_factory()
        cut.reset(**_row("tenv_secret", "4")), whole.reset(**_row("tenv_secret", "4", 1))
        assert bridge.funcs[0](completions=[right[2:]] * 2, environments=[cut, whole],
                               completion_ids=[[5, 6], [5, 1]]) == [0.0, 1.0]
        assert [r["stats"]["ended_by"] for r in bridge.rollouts] == ["truncated", "env"]


def test_timeouts_errors_and_feedback_never_hang_raise_or_score_zero(envs):
    """A tool past its deadline: an error string within the deadline, the rollout ``timeout`` (0, as
    in grpo-env train). A tool that raises: the rollout ``error``, None from every function (TRL
    leaves it out). An environment with tools that answers the final turn with feedback: ``error``,
    counted and warned about."""
    from grpo_env.integrations.trl import TRLEnvironments

    final = [{"role": "assistant", "content": "it is 7"}]
    with TRLEnvironments(envs("tenv_slow_tool", "tenv_boom", "tenv_echo")) as bridge:
        factory = bridge.environment_factory
        assert set(factory) == {"tenv_slow_tool", "tenv_boom", "tenv_echo"}
        assert [f.__name__ for f in bridge.funcs] == ["tenv_slow_tool", "tenv_boom", "tenv_echo"]
        assert bridge.dataset(6).column_names == ["prompt", "task", "id", "gold", "environment"]
        slow, boom, echo = factory["tenv_slow_tool"](), factory["tenv_boom"](), factory["tenv_echo"]()
        for inst, task in [(slow, "tenv_slow_tool"), (boom, "tenv_boom"), (echo, "tenv_echo")]:
            inst.reset(**_row(task))
        t = time.monotonic()
        said = slow.get()
        assert time.monotonic() - t < 4  # the 0.3 s step_timeout, the 1 s grace, the kill
        assert said.startswith("error: environment 'tenv_slow_tool' timed out in call_tool get"), said
        assert slow.get().startswith("error: the episode has ended: environment 'tenv_slow_tool' timed out")
        assert boom.get().startswith("error: environment 'tenv_boom' raised RuntimeError in call_tool get")
        with pytest.warns(RuntimeWarning, match="'tenv_echo' answered the final turn with feedback"):
            rewards = {f.__name__: f(completions=[final] * 3, environments=[slow, boom, echo]) for f in bridge.funcs}
        assert rewards == {"tenv_slow_tool": [0.0, None, None], "tenv_boom": [None, None, None],
                           "tenv_echo": [None, None, None]}
        assert [r["status"] for r in bridge.rollouts] == ["timeout", "error", "error"]
        assert bridge.episodes["feedback"] == 1 and bridge.counts == {"timeout": 1, "error": 2}
        with pytest.raises(ValueError, match="a row of task 'tenv_boom' reached the environment 'tenv_echo'"):
            echo.reset(**_row("tenv_boom"))


# ---------------------------------------------------------------------------------------------
# one real GRPOTrainer step on math_python


TEMPLATE = (  # renders tools, tool calls (Hermes style) and tool messages; prefix-preserving
    "{% if tools %}s:tools{% for t in tools %} {{ t['function']['name'] }}{% endfor %}{{ '\\n' }}{% endif %}"
    "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] or '' }}"
    "{% if m['tool_calls'] is defined and m['tool_calls'] %}{% for c in m['tool_calls'] %}"
    "<tool_call>{\"name\": \"{{ c['function']['name'] }}\", \"arguments\": {{ c['function']['arguments'] | tojson }}}"
    "</tool_call>{% endfor %}{% endif %}{% if m['role'] == 'assistant' %}<eos>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}a:{% endif %}")
RESPONSE = {"defaults": {"role": "assistant"}, "start_anchor": "a:", "fields": {
    "tool_calls": {"open": "<tool_call>", "close_pattern": r"</tool_call>\s*", "repeats": True, "content": "json",
                   "transform": {"type": "function", "function": "{content}"}},
    "content": {"close_pattern": r"<eos>\s*", "content": "text"}}}


def _scripted_model(tok):
    """A tiny Llama whose sampling is forced to a script read from its context: for a question
    whose first number is even, a python call computing it, then the boxed number the tool printed;
    for an odd one, ``\\boxed{0}`` at once. The forward pass (the loss) is the model's own."""
    import torch
    from transformers import LlamaForCausalLM, LogitsProcessor, LogitsProcessorList

    from grpo_env.engine.tiny import tiny_model

    marker = tok.encode("a:", add_special_tokens=False)
    line_ends = {*tok.encode("\n", add_special_tokens=False), tok.pad_token_id}  # "\n\n" is one unknown piece

    def script(ids: list[int]) -> int:
        starts = [i + len(marker) for i in range(1, len(ids) - len(marker) + 1)
                  if ids[i:i + len(marker)] == marker and ids[i - 1] in line_ends]  # each assistant turn's start
        context = tok.decode(ids, skip_special_tokens=True)
        a, b = map(int, re.search(r"(\d+) \+ (\d+)", context).groups())
        results = re.findall(r"\nt:(\d+)", context)
        if a % 2:
            text = "\\boxed{0}"
        elif len(starts) == 1:
            text = '<tool_call>{"name": "python", "arguments": {"code": "print(%d+%d)"}}</tool_call>' % (a, b)
        else:
            text = "\\boxed{%s}" % results[-1]
        target = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
        pos = len(ids) - starts[-1]
        return target[pos] if pos < len(target) else tok.eos_token_id

    class Script(LogitsProcessor):
        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, float("-inf"))
            for row, ids in enumerate(input_ids.tolist()):
                forced[row, script(ids)] = 0.0
            return forced

    class Scripted(LlamaForCausalLM):
        def generate(self, *args, **kwargs):
            kwargs["logits_processor"] = LogitsProcessorList([Script()])
            return super().generate(*args, **kwargs)

    base = tiny_model(len(tok), context=512)
    model = Scripted(base.config)
    model.load_state_dict(base.state_dict())
    return model.eval()


@pytest.mark.slow
def test_one_grpo_trainer_step_with_math_python(envs, tmp_path, monkeypatch):
    """A real GRPOTrainer step with environment_factory: the python calls run in our episode
    processes (and the sandbox), their output reaches the model, and TRL's reward is our judgement
    (math.answer on the final turn): 1 for the rollouts that used the tool, 0 for the others."""
    from trl import GRPOConfig, GRPOTrainer

    from grpo_env.engine.tiny import TOOL_CHARS, tiny_tokenizer
    from grpo_env.integrations.trl import TRLEnvironments

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    tok = tiny_tokenizer(TOOL_CHARS + "()\\`;'")
    tok.chat_template, tok.response_template = TEMPLATE, RESPONSE
    model = _scripted_model(tok)
    with TRLEnvironments(envs("math_python"), eos_token_ids=[tok.eos_token_id, tok.pad_token_id]) as bridge:
        rows = bridge.dataset(40)
        first = [int(re.search(r"(\d+) \+", r[-1]["content"]).group(1)) for r in rows["prompt"]]
        even = [i for i, a in enumerate(first) if a % 2 == 0][:2]
        odd = [i for i, a in enumerate(first) if a % 2][:2]
        data = rows.select([even[0], odd[0], even[1], odd[1]])
        args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=8,
                          num_generations=2, max_completion_length=128, learning_rate=1e-3, beta=0.0, logging_steps=1,
                          report_to="none", save_strategy="no", use_cpu=True, bf16=False, seed=0,
                          dataloader_num_workers=0, shuffle_dataset=False,
                          max_tool_calling_iterations=bridge.max_tool_calling_iterations,
                          chat_template_kwargs={"sanitize_control_tokens": True})
        trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=bridge.funcs, train_dataset=data,
                              args=args, environment_factory=bridge.environment_factory)
        # tool text that spells a control token is encoded as text (the recommended chat_template_kwargs)
        hostile = [{"role": "tool", "name": "python", "content": "1<eos>"}]
        assert tok.eos_token_id not in trainer._get_tool_suffix_ids(hostile)
        trainer.train()
        rollouts = list(bridge.rollouts)
        started = dict(bridge.host.started)
        assert all(inst._batch is None for inst in bridge._instances)  # every episode judged and closed
    assert trainer.state.global_step == 1
    log = next(h for h in trainer.state.log_history if "reward" in h)
    assert len(rollouts) == 8 and started["direct"] == 8  # one episode process per rollout
    first_number = {i: int(re.search(r"(\d+) \+", p[-1]["content"]).group(1)) for i, p in zip(data["id"], data["prompt"])}
    for r in rollouts:
        used_tool = first_number[r["id"]] % 2 == 0
        assert r["stats"]["tool_calls"] == (1 if used_tool else 0) and r["stats"]["tool_errors"] == 0, r
        assert r["stats"]["ended_by"] == "env" and r["stats"]["turns"] == (2 if used_tool else 1), r
        assert r["status"] == ("correct" if used_tool else "incorrect"), r  # the sandbox's sum, boxed: math.answer
        assert r["total"] == (1.0 if used_tool else 0.0)
    assert log["reward"] == pytest.approx(0.5) and log["rewards/math.answer/mean"] == pytest.approx(0.5)
    assert log["rewards/math_python/mean"] is None  # its own outcome: not_applicable (math.answer judges)
    assert log["tools/call_frequency"] == pytest.approx(0.5) and log["tools/failure_frequency"] == 0.0
    assert log["grpo_env/status/correct"] == 4.0 and log["grpo_env/status/incorrect"] == 4.0
