"""Optional TensorBoard mirror of metrics.jsonl (``[train] tensorboard = true``).

Each step's record becomes one scalar per numeric value, nested dicts flattened into "/"-joined tags
(``time/total``, ``reward_by_task/<task>/mean``), at ``global_step = record["step"]``. Event files go
to ``<run_dir>/tensorboard/``; a resumed run purges the events past its checkpoint, the way
metrics.jsonl is truncated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

INSTALL_HINT = 'pip install "grpo-env[tensorboard]"'


class TensorBoardMissing(RuntimeError):
    """``tensorboard = true`` but the tensorboard package is not installed."""


def require() -> None:
    """Fail early, with the install command, when TensorBoard logging cannot work."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it, and imports it lazily)
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise TensorBoardMissing(
            f"[train] tensorboard = true needs the tensorboard package ({e}); install it with: {INSTALL_HINT}"
        ) from None


def scalars(record: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every finite number in ``record``, nested dicts joined by "/" (bools as 0/1;
    None and strings skipped; ``step`` is the x axis, not a scalar)."""
    for key, value in record.items():
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from scalars(value, tag + "/")
        elif isinstance(value, (int, float)) and tag != "step":  # bool is an int
            if math.isfinite(value):
                yield tag, float(value)


class TBLog:
    """A SummaryWriter under ``run_dir/tensorboard``, opened at the first record (so no writer
    thread exists before the training loop) and closed by :meth:`close`."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        require()
        self.dir = Path(run_dir) / "tensorboard"
        # resuming from step k redoes k+1...: TensorBoard drops the old events from k+1 on
        self.purge_step = None if resume_step is None else resume_step + 1
        self._writer = None

    def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.dir), purge_step=self.purge_step)
        for tag, value in scalars(record):
            self._writer.add_scalar(tag, value, global_step=record["step"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()  # joins the writer thread
            self._writer = None
