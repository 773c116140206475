"""Atomic checkpoints: temp dir, fsync, rename, then the pointer; crashes leave the last good one."""

import random

import torch

from grpo_env.engine import checkpoint


def test_save_then_latest_and_load(tmp_path):
    d = checkpoint.save(tmp_path, 3, {"step": 3, "w": torch.arange(4)}, lambda p: p.mkdir() or (p / "m.txt").write_text("x"))
    assert d.name == "step-000003"
    assert checkpoint.latest(tmp_path) == d
    assert (tmp_path / "latest").read_text().strip() == "step-000003"
    assert torch.equal(checkpoint.load(d)["w"], torch.arange(4))
    assert (d / "model" / "m.txt").read_text() == "x"
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_crash_mid_write_leaves_the_previous_checkpoint_current(tmp_path):
    checkpoint.save(tmp_path, 1, {"step": 1})

    def crash(path):
        raise KeyboardInterrupt("killed while writing the model")

    try:
        checkpoint.save(tmp_path, 2, {"step": 2}, crash)
    except KeyboardInterrupt:
        pass
    assert checkpoint.latest(tmp_path).name == "step-000001"
    assert checkpoint.load(checkpoint.latest(tmp_path))["step"] == 1
    assert not (tmp_path / "step-000002").exists()
    # the next successful save cleans the leftover temporary directory
    checkpoint.save(tmp_path, 2, {"step": 2})
    assert checkpoint.latest(tmp_path).name == "step-000002"
    assert not list(tmp_path.glob(".tmp-*"))


def test_pointer_to_an_incomplete_directory_is_ignored(tmp_path):
    assert checkpoint.latest(tmp_path) is None
    (tmp_path / "step-000009").mkdir()
    (tmp_path / "latest").write_text("step-000009\n")
    assert checkpoint.latest(tmp_path) is None


def test_old_checkpoints_are_pruned(tmp_path):
    for s in range(1, 6):
        checkpoint.save(tmp_path, s, {"step": s}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000004", "step-000005"]


def test_rng_state_round_trips():
    state = checkpoint.rng_state()
    a = (random.random(), torch.rand(3))
    checkpoint.set_rng_state(state)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
