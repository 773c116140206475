"""Tool calls in model text: find them, parse them, check their arguments. Trusted code on hostile text.

A call is tagged JSON, the format of the Hermes / Qwen / SmolLM3 chat templates and of our fallback
(tools listed in the system prompt, :mod:`grpo_env.engine.chat`)::

    <tool_call>{"name": "python", "arguments": {"code": "print(2**10)"}}</tool_call>

Everything here runs in linear time in the text: the tags are found with ``str.find`` from a moving
position (no regular expression), at most :data:`MAX_CALLS` calls are read per turn, a call's JSON is
at most :data:`MAX_CALL_CHARS` characters, and nesting deeper than :data:`MAX_DEPTH` is refused.
Each malformed call becomes a :class:`CallError` (shown to the model as the call's result), never an
exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grpo_env.environment import Tool, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_CALLS = 8  # calls read per turn; more are one error
MAX_CALL_CHARS = 20_000  # characters of one call's JSON
MAX_DEPTH = 32  # nesting of a call's arguments


@dataclass(frozen=True)
class CallError:
    """A call the core could not run: why, in words the model can act on."""

    message: str
    name: str = ""


def find_calls(text: str) -> list[str | CallError]:
    """The raw JSON of each ``<tool_call>`` block in ``text``, in order (an unclosed one is an error)."""
    out: list[str | CallError] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            return out
        if len(out) == MAX_CALLS:
            out.append(CallError(f"too many tool calls in one turn (at most {MAX_CALLS} are run)"))
            return out
        body = start + len(OPEN)
        end = text.find(CLOSE, body)
        if end < 0:
            out.append(CallError(f"a {OPEN} is not closed by {CLOSE}"))
            return out
        out.append(text[body:end])
        pos = end + len(CLOSE)


def _depth(value: Any, limit: int) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (iterative: no recursion on model data)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return True


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
    "object": (dict,), "null": (type(None),),
}


def _type_ok(value: Any, kind: Any) -> bool:
    kinds = kind if isinstance(kind, list) else [kind]
    for k in kinds:
        if k not in _TYPES:
            return True  # a type we do not check: the tool checks it
        if isinstance(value, bool) and k in ("integer", "number"):
            continue  # JSON true is not a number
        if isinstance(value, _TYPES[k]):
            return True
    return False


def check_arguments(tool: Tool, args: dict[str, Any]) -> str | None:
    """Why ``args`` do not fit ``tool``'s schema (top-level: required, unknown, types, enums), or None."""
    props: dict[str, Any] = tool.parameters.get("properties", {})
    missing = [r for r in tool.parameters.get("required", []) if r not in args]
    if missing:
        return f"missing required argument(s) {missing}"
    if tool.parameters.get("additionalProperties", True) is False or props:
        unknown = [k for k in args if k not in props]
        if unknown:
            return f"unknown argument(s) {unknown[:5]}; {tool.name} takes {sorted(props)}"
    for k, v in args.items():
        schema = props.get(k, {})
        if "type" in schema and not _type_ok(v, schema["type"]):
            return f"argument {k!r} must be of type {schema['type']}"
        if "enum" in schema and v not in schema["enum"]:
            return f"argument {k!r} must be one of {schema['enum']}"
    return None


def parse_call(raw: str, tools: dict[str, Tool]) -> ToolCall | CallError:
    """One call's JSON -> a checked :class:`ToolCall`, or the reason it is not one."""
    if len(raw) > MAX_CALL_CHARS:
        return CallError(f"a tool call is longer than {MAX_CALL_CHARS} characters")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return CallError(f"the tool call is not valid JSON ({str(e)[:120]})")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return CallError('a tool call is a JSON object {"name": ..., "arguments": {...}}')
    name = data["name"]
    tool = tools.get(name)
    if tool is None:
        return CallError(f"unknown tool {name[:64]!r}; the tools are {sorted(tools)}", name=name[:64])
    args = data.get("arguments", {})
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args) if len(args) <= MAX_CALL_CHARS else None
        except (ValueError, RecursionError):
            args = None
    if not isinstance(args, dict):
        return CallError(f"the arguments of {name} must be a JSON object", name=name)
    if not _depth(args, MAX_DEPTH):
        return CallError(f"the arguments of {name} nest deeper than {MAX_DEPTH}", name=name)
    why = check_arguments(tool, args)
    if why is not None:
        return CallError(f"{name}: {why}", name=name)
    return ToolCall(name=name, arguments=args)


def parse_calls(text: str, tools: list[Tool]) -> list[ToolCall | CallError]:
    """Every tool call of an assistant turn, parsed and checked, in order."""
    table = {t.name: t for t in tools}
    return [raw if isinstance(raw, CallError) else parse_call(raw, table) for raw in find_calls(text)]
