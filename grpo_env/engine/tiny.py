"""A tiny character-level Llama and tokenizer built from a config (no download): for tests and demos."""

from __future__ import annotations

import string
from pathlib import Path

import torch

CHARS = string.ascii_lowercase + string.digits + " .,:?!+-*/=<>\n"
TOOL_CHARS = '{}"_[]'  # what tagged-JSON tool calls need besides CHARS (tiny_tokenizer(extra=TOOL_CHARS))
SPECIALS = ["<pad>", "<eos>", "<bos>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}a:{% endif %}"
)
# the same, offering tools by name in a first line (a template that renders tools, as Qwen's or SmolLM3's do)
TOOLS_TEMPLATE = (
    "{% if tools %}s:tools{% for t in tools %} {{ t['function']['name'] }}{% endfor %}\n{% endif %}" + CHAT_TEMPLATE
)


def tiny_tokenizer(extra: str = "", tools_template: bool = False):
    """A character-level fast tokenizer with pad/eos/bos and a minimal chat template; ``extra``
    characters are added to the vocabulary (after the default ones, so their ids stay put), and
    ``tools_template`` gives it a template that renders tools."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + list(CHARS) + [c for c in extra if c not in CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", padding_side="left"
    )
    fast.chat_template = TOOLS_TEMPLATE if tools_template else CHAT_TEMPLATE
    return fast


def tiny_model(vocab_size: int, hidden: int = 48, layers: int = 2, seed: int = 0, heads: int = 4, context: int = 256):
    """A randomly initialised 2-layer Llama (about 100k parameters); ``heads`` attention heads (half
    as many key/value heads). vLLM's kernels want a head size of at least 32: hidden 128, 2 heads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=context,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def write_tiny(directory: str | Path, hidden: int = 48, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny model and its tokenizer to ``directory`` (loadable as ``[model] name = directory``)."""
    directory = Path(directory)
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), hidden, layers, seed)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
