"""The answer inside a completion's last ``<answer>...</answer>`` block, in linear time.

reasoning-gym's ``extract_answer`` gives the same result with a lazy regex over ``finditer``, which
rescans the rest of the text from every unclosed ``<answer>``: quadratic on hostile model text. This
walks the text once with ``str.find``: each search starts where the previous one ended.
"""

from __future__ import annotations

OPEN, CLOSE = "<answer>", "</answer>"


def extract_answer(completion: str) -> str | None:
    """The stripped text of the last complete answer block, or None when there is none.

    Blocks pair as reasoning-gym pairs them: an opening tag with the first closing tag after it,
    scanning left to right, blocks not overlapping.
    """
    answer, pos = None, 0
    while True:
        start = completion.find(OPEN, pos)
        if start < 0:
            return answer
        end = completion.find(CLOSE, start + len(OPEN))
        if end < 0:
            return answer
        answer = completion[start + len(OPEN):end].strip()
        pos = end + len(CLOSE)
