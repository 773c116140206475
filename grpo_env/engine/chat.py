"""Chat rendering for episodes: tools in the prompt, and the environment's tokens between turns.

Tools go through the tokenizer's chat template when it renders them (``tools=`` in
``apply_chat_template``); otherwise (SmolLM2's template ignores them) the *fallback*: the tool specs
and the call format are written into the system message. Either way a call is tagged JSON,
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (:mod:`grpo_env.tools` parses it).

Between two assistant turns the training sequence holds exactly what the model saw when it sampled
the next turn: its own sampled ids (never re-tokenised), then the environment's increment, the text
the chat template puts after the assistant's end-of-turn token and before the next assistant turn
(the observation messages and the new assistant header), tokenised once. The increment is rendered
against a fixed two-message context, so it does not depend on how the template would re-render
earlier turns (some templates rewrite them, e.g. drop a reasoning block).
"""

from __future__ import annotations

import json
from typing import Any

FALLBACK_TOOLS = (
    "You can call tools. Each tool, as a JSON function spec:\n{specs}\n\n"
    "To call a tool, write a line of this form, and nothing after it in that turn:\n"
    '<tool_call>{{"name": "TOOL_NAME", "arguments": {{...}}}}</tool_call>\n'
    "The result comes back in the next message. When you are done, answer without a tool call."
)
_PROBE_TOOL = {"type": "function", "function": {"name": "grpo_env_probe_tool", "description": "probe",
                                                "parameters": {"type": "object", "properties": {}}}}
_MARK = "GRPO_ENV_MARK_7f3a"
_CTX = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _MARK}]


class TemplateError(ValueError):
    """The chat template cannot render an episode the way the engine needs (said in the message)."""


def _apply(tokenizer, messages: list[dict[str, Any]], **kw: Any) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def has_template(tokenizer, chat_template: bool = True) -> bool:
    return bool(chat_template and getattr(tokenizer, "chat_template", None))


_probed: dict[str, tuple[bool, bool]] = {}


def probe(tokenizer) -> tuple[bool, bool]:
    """(renders tools, renders the ``tool`` role) for the tokenizer's template; cached per template."""
    key = tokenizer.chat_template
    if key not in _probed:
        _probed[key] = _probe(tokenizer)
    return _probed[key]


def _probe(tokenizer) -> tuple[bool, bool]:
    try:
        takes_tools = "grpo_env_probe_tool" in _apply(tokenizer, [{"role": "user", "content": "u"}], tools=[_PROBE_TOOL])
    except Exception:
        takes_tools = False
    try:
        tool_role = _MARK + "T" in _apply(tokenizer, [*_CTX, {"role": "tool", "content": _MARK + "T"}])
    except Exception:
        tool_role = False
    return takes_tools, tool_role


def fallback_system(specs: list[dict[str, Any]]) -> str:
    """The system-prompt text that offers ``specs`` when the template does not render tools."""
    return FALLBACK_TOOLS.format(specs="\n".join(json.dumps(s, sort_keys=True) for s in specs))


def render(tokenizer, messages: list[dict[str, Any]], tools: list[dict[str, Any]], chat_template: bool = True,
           tools_in_template: bool = True) -> str:
    """The prompt text with the assistant turn opened, tools offered (template or fallback)."""
    messages = [dict(m) for m in messages]
    if not has_template(tokenizer, chat_template):
        if tools:
            messages.insert(0, {"role": "system", "content": fallback_system(tools)})
        return "\n\n".join(m["content"] for m in messages) + "\n\n"
    if tools and tools_in_template and probe(tokenizer)[0]:
        return _apply(tokenizer, messages, tools=tools, add_generation_prompt=True)
    if tools:
        text = fallback_system(tools)
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = messages[0]["content"] + "\n\n" + text
        else:
            messages.insert(0, {"role": "system", "content": text})
    return _apply(tokenizer, messages, add_generation_prompt=True)


def observation_messages(tokenizer, observations: list[Any]) -> list[dict[str, str]]:
    """Observations as template messages; ``tool`` results become user messages wrapped in
    ``<tool_response>`` tags when the template has no tool role."""
    tool_role = probe(tokenizer)[1]
    out = []
    for m in observations:
        if m.role == "tool" and not tool_role:
            out.append({"role": "user", "content": f"<tool_response>\n{m.content}\n</tool_response>"})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def increment(tokenizer, observations: list[Any], chat_template: bool = True) -> str:
    """The text between the model's end-of-turn token and its next turn: the rest of the closed
    assistant turn, the observations, and the opened assistant turn."""
    if not has_template(tokenizer, chat_template):
        return "\n\n" + "\n\n".join(m.content for m in observations) + "\n\n"
    base = _apply(tokenizer, _CTX)
    full = _apply(tokenizer, [*_CTX, *observation_messages(tokenizer, observations)], add_generation_prompt=True)
    if not full.startswith(base):
        raise TemplateError("the chat template does not render a conversation as a prefix of its continuation; "
                            "episodes need one that does (render turns one after another)")
    after = base[base.rindex(_MARK) + len(_MARK):]  # what closes an assistant turn, e.g. "<|im_end|>\n"
    eos = getattr(tokenizer, "eos_token", None) or ""
    tail = after[len(eos):] if eos and after.startswith(eos) else after  # the part after the sampled end token
    return tail + full[len(base):]


def increment_ids(tokenizer, observations: list[Any], chat_template: bool = True) -> list[int]:
    """The increment's token ids, with only the template making control tokens: each observation's
    text is tokenised on its own with special tokens split (``<|im_start|>`` in a tool's output is
    the characters, never the control token), the template's text around it as usual. Raises
    :class:`TemplateError` when the template does not place an observation's text verbatim."""
    marks = [f"{_MARK}O{i}." for i in range(len(observations))]
    masked = [m.model_copy(update={"content": k}) for m, k in zip(observations, marks)]
    text = increment(tokenizer, masked, chat_template)
    ids: list[int] = []
    for mark, obs in zip(marks, observations):
        head, sep, text = text.partition(mark)
        if not sep or mark in text:
            raise TemplateError("the chat template does not render an observation's text verbatim")
        ids += _ids(tokenizer, head, split_special=False) + _ids(tokenizer, obs.content, split_special=True)
    return ids + _ids(tokenizer, text, split_special=False)


def _ids(tokenizer, text: str, split_special: bool) -> list[int]:
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)["input_ids"]
