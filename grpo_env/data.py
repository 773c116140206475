"""Loading rows of a data set through `datasets`: a local file, a local copy of a hub data set, or a hub id.

Tasks that train on a data set (GSM8K-, MATH-, HumanEval-format ...) call :func:`load_rows`. A
local path never touches the network; a hub id needs one (and fails with a clear message offline).

A local directory may be laid out three ways: ours (``train.jsonl``, ``test.parquet`` ...), a hub
repository's own files (``main/train-00000-of-00001.parquet`` plus the README that names its
configurations, as ``huggingface-cli download`` leaves it), or a ``save_to_disk`` directory. A hub
layout is read with the very call a hub id gets, ``load_dataset(source, config, split=split)``, so
testing it offline tests the online path too.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict, Dataset)


class DataError(ValueError):
    """A data set could not be loaded; the message names the source."""


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """`datasets`' progress bars off while reading local files, as they were afterwards.

    A local file takes milliseconds to read; its "Generating train split" bars are noise in a run's
    output. The switch is restored so the user's own `datasets` calls keep their bars.
    """
    import datasets

    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def load_rows(source: str | Path, split: str = "train", *, config: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``source`` as plain dicts, in file order.

    ``source`` is a local file, a local directory (ours, a hub repository's layout, or a
    ``save_to_disk`` directory), or a hub data set id such as ``openai/gsm8k`` (with ``config``,
    e.g. ``main``).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        found = [path / f"{split}{ext}" for ext in _BUILDERS if (path / f"{split}{ext}").exists()]
        if found:
            return _read_file(found[0])
        with quiet_progress():
            return _read_directory(path, split, config)
    if path.exists():
        return _read_file(path)
    if str(source).startswith((".", "/", "~")) or Path(source).suffix.lower() in _BUILDERS:
        raise DataError(f"{source}: no such file or directory")
    return _read_hub(str(source), split, config)


def _read_file(path: Path) -> list[dict[str, Any]]:
    import datasets

    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(_BUILDERS)})")
    try:
        with quiet_progress():
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as e:  # a malformed file: say which one
        raise DataError(f"{path}: could not be read as {builder}: {e}") from None
    return [dict(r) for r in ds]


def _read_directory(path: Path, split: str, config: str | None) -> list[dict[str, Any]]:
    """A save_to_disk directory, or a hub repository's files (the hub id's own call)."""
    import datasets

    if any((path / m).exists() for m in _SAVED_MARKERS):
        return _read_saved(path, split)
    where = path
    if config and not (path / "README.md").exists() and (path / config).is_dir():
        where, config = path / config, None  # one configuration's folder copied without the README naming it
    try:
        ds = datasets.load_dataset(str(where), config, split=split)
    except Exception as e:
        what = f"split {split!r}" + (f", config {config!r}" if config else "")
        raise DataError(f"{path}: could not be read as a data set directory ({what}): {e}. A directory holds "
                        f"{split}.jsonl/.json/.parquet/.csv, a hub repository's files, or a save_to_disk copy"
                        ) from None
    return [dict(r) for r in ds]


def _read_saved(path: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(f"{path}: could not be read as a save_to_disk directory: {e}") from None
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise DataError(f"{path}: the saved data set has no split {split!r} (it has {sorted(saved)})")
        saved = saved[split]
    elif saved.split is not None and str(saved.split) != split:  # one split saved: never serve it as another
        raise DataError(f"{path}: the saved data set is split {str(saved.split)!r}, not {split!r}")
    return [dict(r) for r in saved]


def _read_hub(source: str, split: str, config: str | None) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(source, config, split=split)
    except Exception as e:
        raise DataError(f"hub data set {source!r} (split {split!r}) could not be loaded: {e}") from None
    return [dict(r) for r in ds]
