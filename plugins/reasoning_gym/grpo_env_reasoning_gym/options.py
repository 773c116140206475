"""Per-dataset option models: the dataset's config fields, ``difficulty``, ``system_prompt`` and,
for the datasets scored by exact match (``datasets.exact_option``), ``lenient_substring`` or
``partial_credit``.

``fields_model(name)`` only parses values (the scoring workers rebuild a config from an example's
stored options with it). ``options_model(name)`` is what the task declares: it also builds the
dataset once to surface a bad config as an options error naming the dataset. (A dataset the
conformance check flags is refused in training by the core: see ``Task.flagged``.)
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

from grpo_env_reasoning_gym import datasets

DOCS = "docs/reasoning_gym.md"


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    system_prompt: Optional[str] = Field(
        "default", description="a reasoning-gym system prompt key (asks for <answer> tags), or null for none")


def _field_type(hint: Any) -> Any:
    """The hint when pydantic can parse it on its own, else Any (the dataset's config checks the value)."""
    try:
        TypeAdapter(hint)
    except Exception:
        return Any
    return hint


@cache
def fields_model(name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for field, (hint, default) in datasets.config_fields(name).items():
        fields[field] = (Optional[_field_type(hint)], Field(None, description=f"dataset default: {default!r:.60}"))
    if datasets.has_curriculum(name):
        top = datasets.max_difficulty(name)
        fields["difficulty"] = (Optional[int], Field(None, ge=0, le=top, description=f"curriculum level 0..{top}"))
    option = datasets.exact_option(name)
    if option == datasets.LENIENT:
        fields[option] = (bool, Field(False, description=(
            "score with upstream's substring rule (len(gold)/len(answer) when the gold appears in the answer) "
            "instead of exact match: hedges such as 'YesNo' earn credit, see docs/reasoning_gym.md")))
    elif option == datasets.PARTIAL:
        fields[option] = (bool, Field(False, description=(
            "score with upstream's partial credit instead of exact match: answers that commit to nothing earn "
            "some of it, see docs/reasoning_gym.md")))
    return create_model(f"RgFields_{name}", __base__=_Base, **fields)


def stored(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options an example carries in its gold: the ones set, as JSON values."""
    model = fields_model(name).model_validate(options)
    return json.loads(model.model_dump_json(exclude_defaults=True, exclude={"system_prompt"}))


@cache
def _builds(name: str, options_json: str) -> bool:
    """Build the dataset once per distinct config (some take a second): raises what its config raises."""
    opts = fields_model(name).model_validate_json(options_json).model_dump()
    datasets.build(name, datasets.config_kwargs(name, opts), seed=0, size=1)
    return True


def _refuse_if_bad(name: str, values: BaseModel) -> None:
    opts = values.model_dump()
    if opts["system_prompt"] is not None and opts["system_prompt"] not in datasets.SYSTEM_PROMPTS:
        raise ValueError(f"system_prompt {opts['system_prompt']!r} is not one of {sorted(datasets.SYSTEM_PROMPTS)}")
    try:
        _builds(name, values.model_dump_json(exclude={"system_prompt"}))
    except Exception as e:
        raise ValueError(f"reasoning-gym dataset {name!r} rejects this config: {type(e).__name__}: {e}") from None


@cache
def options_model(name: str) -> type[BaseModel]:
    def check(self):
        _refuse_if_bad(name, self)
        return self

    return create_model(f"RgOptions_{name}", __base__=fields_model(name),
                        __validators__={"_check": model_validator(mode="after")(check)})
