"""Atomic checkpoints: write to a temporary directory, fsync, rename, then update the ``latest`` pointer.

A checkpoint directory ``step-000012/`` holds the model (``save_pretrained`` format, loadable by
``grpo-env eval --model``) and ``state.pt``: optimiser, scheduler, RNG states, the prompt sampler's
position and the step. Each tensor is stored once: the trained weights are the saved model's
(safetensors keep them bit for bit), except for LoRA, whose saved model is merged, so ``state.pt``
keeps the adapters. A crash at any moment leaves either the previous checkpoint or the new one,
never a half-written one behind ``latest``.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

POINTER = "latest"


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pointer(root: Path, name: str) -> None:
    """Point ``root/latest`` at checkpoint ``name`` atomically (write a temp file, fsync, replace)."""
    tmp = root / f".{POINTER}.tmp"
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / POINTER)
    _fsync_dir(root)


def latest(root: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` points at, or None when there is none."""
    root = Path(root)
    p = root / POINTER
    if not p.exists():
        return None
    d = root / p.read_text().strip()
    return d if (d / "state.pt").exists() else None


def save(
    root: str | os.PathLike,
    step: int,
    state: dict[str, Any],
    write_model: Callable[[Path], None] | None = None,
    keep: int = 2,
) -> Path:
    """Atomically write checkpoint ``step`` under ``root``; returns its directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    if write_model is not None:
        write_model(tmp / "model")
    _fsync_tree(tmp)
    if final.exists():  # a rerun of this step after a crash past the rename: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    write_pointer(root, name)
    _prune(root, keep, current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    ckpts = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in ckpts[:-keep]:
        if p.name != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-step-*"):  # leftovers of a crash mid-write
        shutil.rmtree(p, ignore_errors=True)


def load(path: str | os.PathLike) -> dict[str, Any]:
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)


def weights(path: str | os.PathLike, state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The trained weights of checkpoint ``path``, by name in parameter order: from ``state.pt``
    when it holds them (LoRA, older checkpoints), else the names ``state.pt`` lists
    (``weight_names``) from the saved model's safetensors files (every shard)."""
    if "weights" in state:
        return state["weights"]
    from safetensors.torch import load_file

    files = sorted((Path(path) / "model").glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint {path} holds no weights: neither state.pt nor model/*.safetensors")
    saved: dict[str, torch.Tensor] = {}
    for f in files:
        saved.update(load_file(f))
    missing = [n for n in state["weight_names"] if n not in saved]
    if missing:
        raise KeyError(f"checkpoint {path}: the saved model lacks trained weights {missing[:3]}")
    return {n: saved[n] for n in state["weight_names"]}


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
