"""Training across two nodes, on one machine: two launchers started side by side, each with its own
working directory (as two machines would have), rendezvousing on loopback: ``torchrun --nnodes 2``
under plain data parallelism, and ``accelerate launch --num_machines 2 --use_fsdp`` (FSDP2) for a
sharded policy. Each node runs the real CLI (``grpo-env train RECIPE``) on a tiny model, gloo on CPU.

Each rank's process of a launch runs this file, which records the rank's whole weights after the
training loop and hands over to the CLI unchanged (see the bottom of the file): so the test sees that
the two nodes held identical weights, and that they are the checkpoint node 0 wrote. Rank 0 alone
writes the run directory, on its node; so a ``--resume`` whose nodes see different checkpoints (node-local
disks) stops on every rank, saying why. A node that never comes to the rendezvous fails the launch,
non-zero, within a bounded time instead of hanging. The data-parallel launch runs twice: scoring in
each node's local processes, then through a Ray cluster's pool, with the same rewards."""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_distributed import _free_port

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")

NODES = 2
STEPS, GROUP, PROMPTS = 2, 4, 4
LAUNCH_TIMEOUT = 150  # s, for both launchers together (a run takes well under a minute)


def write_recipe(path: Path, model: Path) -> Path:
    """A 2-step recipe on the tiny model; its run directory is relative (``runs/mn``), so each node
    resolves it in its own working directory, as on two machines."""
    path.write_text(f"""
name = "mn"
seed = 1
[model]
name = "{model}"
device = "cpu"  # gloo: two "nodes" of one machine cannot each take its first GPU under NCCL
threads = 1
[[tasks]]
name = "format_demo"  # its overlong penalty on a few characters spreads the rewards of a random model
options = {{ max_len = 12, overlong_buffer = 10 }}
[scoring]
workers = 1
[train]
steps = {STEPS}
group_size = {GROUP}
prompts_per_step = {PROMPTS}
max_new_tokens = 16
beta = 0.04
lr = 1e-2
progress = false
output_dir = "runs/{{name}}"
""")
    return path


def nodes_setup(tmp_path: Path) -> tuple[Path, list[Path]]:
    """The tiny model, and each node's working directory holding the same recipe."""
    from grpo_env.engine.tiny import write_tiny

    model = write_tiny(tmp_path / "tiny")
    dirs = []
    for n in range(NODES):
        d = tmp_path / f"node{n}"
        d.mkdir()
        write_recipe(d / "recipe.toml", model)
        dirs.append(d)
    return model, dirs


def torchrun(node_rank: int, port: int, *cli: str, rdzv_timeout: int | None = None) -> list[str]:
    """One node's ``torchrun``: one process on each of two nodes, static rendezvous at node 0's address
    (``rdzv_timeout``: seconds node 0 waits for the others, default 600); ``cli``: after the recipe."""
    conf = ["--rdzv-conf", f"timeout={rdzv_timeout}"] if rdzv_timeout else []
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES), "--nproc_per_node", "1",
            "--node_rank", str(node_rank), "--master_addr", "127.0.0.1", "--master_port", str(port), *conf,
            __file__, "train", "recipe.toml", *cli]


def accelerate_fsdp(machine_rank: int, port: int) -> list[str]:
    """One node's ``accelerate launch`` of FSDP2: 2 processes in all (accelerate counts over machines)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", str(NODES), "--machine_rank",
            str(machine_rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--num_processes", str(NODES), "--use_fsdp", "--fsdp_version", "2", "--mixed_precision", "no",
            "--dynamo_backend", "no", __file__, "train", "recipe.toml"]


def launch_nodes(cmds: list[list[str]], dirs: list[Path], timeout: float = LAUNCH_TIMEOUT,
                 stop_on_failure: bool = True) -> tuple[list[int | None], float, str]:
    """Start one launcher per node (each in its own directory) and wait for them; once one fails
    (``stop_on_failure``), or ``timeout`` passes, the others are stopped with their workers.
    Returns the exit codes (None: still running at the end, then stopped), the seconds it took, and
    every launcher's output (for assertion messages)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    procs, logs = [], []
    start = time.monotonic()
    try:
        for cmd, d in zip(cmds, dirs):
            out, err = open(d / "launcher.out", "w"), open(d / "launcher.err", "w")
            logs += [out, err]
            procs.append(subprocess.Popen(cmd, cwd=d, stdout=out, stderr=err, env=env))
        while any(p.poll() is None for p in procs) and time.monotonic() - start < timeout:
            if stop_on_failure and any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        codes = [p.poll() for p in procs]
        took = time.monotonic() - start
        for p in procs:
            if p.poll() is None:
                stop(p)
        for f in logs:
            f.close()
    shown = "\n".join(f"--- node {n} (exit {c}, {took:.0f} s) {name}:\n{(d / f'launcher.{name}').read_text()[-4000:]}"
                      for n, (d, c) in enumerate(zip(dirs, codes)) for name in ("out", "err"))
    return codes, took, shown


def stop(launcher: subprocess.Popen) -> None:
    """End a launcher that is still running and every process under it: its workers have sessions of
    their own (torchrun starts them so), so they are found by descent, not by process group. SIGTERM
    first (torchrun passes it on to its workers), SIGKILL for whatever is left after 10 s."""
    import psutil

    try:
        tree = [psutil.Process(launcher.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    launcher.wait(timeout=10)


def check_run(dirs: list[Path], model: Path, fsdp: bool, shown: str) -> None:
    """The run of both nodes: node 0 alone wrote the run directory; its metrics cover 2 steps of both
    ranks' groups; both ranks ended with the same weights, moved by training, which are the checkpoint's."""
    from transformers import AutoModelForCausalLM

    run = dirs[0] / "runs" / "mn"
    for d in dirs[1:]:
        assert not (d / "runs").exists(), f"a node other than node 0 wrote a run directory\n{shown}"
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1)), shown
    assert all(r["sequences"] == PROMPTS * GROUP for r in records), shown  # both ranks' halves
    rollouts = [json.loads(ln) for ln in (run / "rollouts.jsonl").read_text().splitlines()]
    assert [len(r["completions"]) for r in rollouts] == [PROMPTS * GROUP] * STEPS
    out0 = (dirs[0] / "launcher.out").read_text()
    assert out0.count(f"done: {STEPS} steps") == 1, shown  # only rank 0 reports, on node 0
    assert "done:" not in (dirs[1] / "launcher.out").read_text(), shown
    errs = "".join((d / "launcher.err").read_text() for d in dirs)
    for r in range(NODES):
        assert (f"fsdp: rank {r} of {NODES} holds" in errs) == fsdp, shown

    # each rank's whole weights after the loop, written by this file in its node's directory
    got = [torch.load(d / "weights.pt") for d in dirs]
    # rank n on node n, each the first process of its node (LOCAL_RANK 0): only the global rank 0 is main
    seen = [(g["rank"], g["world"], g["node"], g["local_rank"]) for g in got]
    assert seen == [(n, NODES, n, 0) for n in range(NODES)], shown
    assert [g["fsdp"] for g in got] == [fsdp] * NODES
    a, b = got[0]["weights"], got[1]["weights"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the nodes ended with different weights"
    start = AutoModelForCausalLM.from_pretrained(model).state_dict()
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-4  # training moved them
    saved = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / f"step-{STEPS:06d}" / "model").state_dict()
    assert all(torch.equal(saved[k], a[k]) for k in a)


def rewards_of(dirs: list[Path]) -> list[tuple]:
    records = [json.loads(ln) for ln in (dirs[0] / "runs" / "mn" / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["reward_mean"], r["reward_by_task"]) for r in records]


@pytest.mark.slow
def test_torchrun_two_nodes_data_parallel_scoring_locally_or_on_ray(tmp_path):
    """Each node scores its ranks' completions in local processes, then the same launch scores
    through a Ray cluster's pool (issue 20 item 4): the same rewards either way."""
    pytest.importorskip("ray")
    from ray_cluster import RemoteCluster  # a cluster in a process of its own (see tests/ray_cluster.py)

    rewards = {}
    for scoring in ("local", "ray"):
        model, dirs = nodes_setup(tmp_path / scoring)
        port = _free_port()
        cluster = RemoteCluster(0) if scoring == "ray" else None
        try:
            extra = ["--scoring.backend=ray", f"--scoring.address={cluster.address}"] if cluster else []
            codes, _, shown = launch_nodes([torchrun(n, port, *extra) for n in range(NODES)], dirs)
        finally:
            if cluster is not None:
                cluster.shutdown()
        assert codes == [0] * NODES, shown
        check_run(dirs, model, fsdp=False, shown=shown)
        rewards[scoring] = rewards_of(dirs)
    assert rewards["ray"] == rewards["local"], rewards


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_accelerate_two_nodes_fsdp(tmp_path):
    model, dirs = nodes_setup(tmp_path)
    port = _free_port()
    codes, _, shown = launch_nodes([accelerate_fsdp(n, port) for n in range(NODES)], dirs)
    assert codes == [0] * NODES, shown
    check_run(dirs, model, fsdp=True, shown=shown)


@pytest.mark.slow
def test_resume_stops_when_the_nodes_see_different_checkpoints(tmp_path, monkeypatch):
    """--resume with node-local run directories: only node 0 holds the checkpoint (rank 0 alone writes
    it). Every rank stops at once, naming what each saw (rank 0 used to resume while rank 1 started
    afresh, and the two hung out of step)."""
    from grpo_env.cli.train import main_train

    _, dirs = nodes_setup(tmp_path)
    monkeypatch.chdir(dirs[0])
    assert main_train("recipe.toml", ["--train.steps=1"]) == 0  # node 0's run, one process: a checkpoint at step 1
    port = _free_port()
    codes, _, shown = launch_nodes([torchrun(n, port, "--resume") for n in range(NODES)], dirs, timeout=90,
                                      stop_on_failure=False)
    assert None not in codes and all(c != 0 for c in codes), shown  # each ended by itself, failing
    for d in dirs:
        err = (d / "launcher.err").read_text()
        assert "cannot resume: the ranks see different checkpoints under runs/mn/checkpoints (step-000001 on rank " \
               "0; no checkpoint on rank 1)" in err, shown
    lines = (dirs[0] / "runs" / "mn" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1]  # no step ran


RDZV_TIMEOUT = 8


@pytest.mark.slow
def test_a_node_that_never_comes_fails_the_launch_in_bounded_time(tmp_path):
    """The second node never comes: node 0's launcher exits non-zero by itself within the rendezvous
    timeout, saying so; the CLI never started."""
    _, dirs = nodes_setup(tmp_path)
    codes, took, shown = launch_nodes([torchrun(0, _free_port(), rdzv_timeout=RDZV_TIMEOUT)], dirs[:1], timeout=60,
                                      stop_on_failure=False)
    assert codes[0] not in (None, 0), shown
    assert took < RDZV_TIMEOUT + 30, shown  # the timeout and a launcher's start: bounded, no hang
    # torch's "Timed out after N seconds waiting for clients. 1/2 clients joined"
    assert "seconds waiting for clients. 1/2 clients joined" in (dirs[0] / "launcher.err").read_text(), shown
    assert not any((d / "runs").exists() or (d / "weights.pt").exists() for d in dirs), shown


def record_weights(train):
    """``train`` (the engine's loop, as ``grpo_env.cli.train`` calls it), then this rank's whole weights saved
    to ``weights.pt`` in the working directory (a collective under FSDP: every rank gathers)."""
    from grpo_env.engine import sharding

    def run(model, *args, **kwargs):
        state = train(model, *args, **kwargs)
        fsdp = sharding.is_sharded(model)
        weights = sharding.full_state(model) if fsdp else model.state_dict()
        torch.save({"rank": torch.distributed.get_rank(), "world": torch.distributed.get_world_size(), "fsdp": fsdp,
                    "node": int(os.environ["GROUP_RANK"]), "local_rank": int(os.environ["LOCAL_RANK"]),
                    "weights": {k: v.detach().cpu().clone() for k, v in weights.items()}}, "weights.pt")
        return state

    return run


if __name__ == "__main__":  # a rank of a launch above: the CLI, unchanged, recording its weights at the end
    import grpo_env.cli.train
    from grpo_env.cli import main

    grpo_env.cli.train.train = record_weights(grpo_env.cli.train.train)
    sys.exit(main())
