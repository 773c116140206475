"""Loading rows of a data set through `datasets`: a local file (JSON/JSONL/parquet/CSV) or a hub id.

Tasks that train on a data set (GSM8K-, MATH-, HumanEval-format ...) call :func:`load_rows`. A
local path never touches the network; a hub id needs one (and fails with a clear message offline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(ValueError):
    """A data set could not be loaded; the message names the source."""


def load_rows(source: str | Path, split: str = "train", *, config: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``source`` as plain dicts, in file order.

    ``source`` is a local file, a local directory holding ``<split>.jsonl``/``.json``/``.parquet``,
    or a hub data set id such as ``openai/gsm8k`` (with ``config``, e.g. ``main``).
    """
    import datasets

    path = Path(source).expanduser()
    if path.is_dir():
        found = [path / f"{split}{ext}" for ext in _BUILDERS if (path / f"{split}{ext}").exists()]
        if not found:
            raise DataError(f"{path}: no file for split {split!r} (looked for {split}.jsonl/.json/.parquet/.csv)")
        path = found[0]
    if path.exists():
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(_BUILDERS)})")
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as e:  # a malformed file: say which one
            raise DataError(f"{path}: could not be read as {builder}: {e}") from None
        return [dict(r) for r in ds]
    if str(source).startswith((".", "/", "~")) or Path(source).suffix.lower() in _BUILDERS:
        raise DataError(f"{source}: no such file")
    try:
        ds = datasets.load_dataset(str(source), config, split=split)
    except Exception as e:
        raise DataError(f"hub data set {source!r} (split {split!r}) could not be loaded: {e}") from None
    return [dict(r) for r in ds]
