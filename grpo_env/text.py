"""Untrusted text made safe to cross into the engine: valid UTF-8, no invisible control characters.

Text that an environment, a tool, a sandboxed run or a third-party scorer hands back is model text:
the policy chose what it says. Before it reaches a tokenizer, a terminal or a log it goes through
:func:`plain`, which escapes what a tokenizer, a terminal or a JSON writer cannot take as it is:

- lone surrogates (``chr(0xD800)``: Python strings may hold them, UTF-8 cannot) become ``\\ud800``;
- C0 and C1 control characters other than newline and tab (NUL, ESC, ...) become ``\\x00``-style
  escapes, so text cannot move a terminal's cursor or hide a NUL from a C library.

Everything else (every printable character, in any script) is kept. Special-token text such as
``<|im_start|>`` is kept too: it is neutralised where text is tokenised
(:func:`grpo_env.engine.chat.increment_ids` tokenises observation text with special tokens split),
so that only the chat template makes control tokens. Linear time in the text's length.
"""

from __future__ import annotations

_KEEP = {"\n", "\t"}
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in _KEEP}


def plain(text: str) -> str:
    """``text`` with lone surrogates and control characters (but newline and tab) escaped."""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():  # the common case: nothing to escape (newline and tab are not printable)
        return text
    text = text.translate(_CONTROLS)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: only they fail to encode
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
