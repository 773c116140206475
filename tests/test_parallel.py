"""The parallel strategy (grpo_env/engine/parallel.py): the engine's modules import each other in no
circle (``distributed.py`` below ``sharding.py`` and ``zero.py``), and the factory picks the plain
strategy for a plain model, whose passes, step and checkpoint state are those of one process.
(FSDP and DeepSpeed strategies run in tests/test_distributed.py and tests/test_deepspeed.py.)"""

import ast
import contextlib
from pathlib import Path

import torch

import grpo_env.engine
from grpo_env.engine import parallel
from grpo_env.engine.distributed import Dist
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer

ENGINE = Path(grpo_env.engine.__file__).parent


def engine_imports(path: Path) -> set[str]:
    """The ``grpo_env.engine`` modules that the file imports, anywhere in it (imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "grpo_env.engine":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("grpo_env.engine."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("grpo_env.engine.")}
    return found


def test_engine_modules_import_each_other_in_no_circle():
    graph = {p.stem: engine_imports(p) - {p.stem} for p in ENGINE.glob("*.py")}
    assert {"distributed", "zero", "sharding", "parallel", "errors"} <= graph.keys()
    assert not graph["distributed"] & {"zero", "sharding", "parallel"}  # the launch modules import it, not back
    assert graph["errors"] == set()  # DistributedError's leaf

    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:  # depth-first; a module on the current path again is a circle
        assert name not in path, f"import circle: {' -> '.join(path + [name])}"
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            visit(dep, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_old_import_paths_still_work():
    from grpo_env.engine.distributed import DistributedError
    from grpo_env.engine.errors import DistributedError as leaf
    from grpo_env.engine.sharding import ShardingError, sync_from_rank0  # noqa: F401
    from grpo_env.engine.zero import ZeroError

    assert DistributedError is leaf and issubclass(ShardingError, leaf) and issubclass(ZeroError, leaf)


def test_factory_picks_plain_for_a_plain_model():
    model = tiny_model(len(tiny_tokenizer()), seed=0)
    par = parallel.strategy(model, Dist())
    assert type(par) is parallel.Plain and par.model is model and not par.lockstep
    assert isinstance(par.gathered(), contextlib.nullcontext) and par.idle_passes(3) == 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    assert type(parallel.start(model, opt, sched, None)) is parallel.Plain  # no DeepSpeed mark: no engine


def test_plain_step_clips_steps_and_skips_a_non_finite_one():
    model = tiny_model(len(tiny_tokenizer()), seed=0)
    par = parallel.strategy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    ids = torch.tensor([[1, 2, 3]])
    before = {k: v.clone() for k, v in model.state_dict().items()}

    par.backward(par.forward(lambda m, x: m(input_ids=x).logits.sum(), ids))
    assert par.step(opt, sched, False, 1.0) != par.step(opt, sched, False, 1.0)  # NaN: skipped
    assert sched.last_epoch == 0 and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    par.backward(par.forward(lambda m, x: m(input_ids=x).logits.sum(), ids))
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    norm = par.step(opt, sched, True, 1e-3)
    assert norm == torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() > 1e-3
    assert sched.last_epoch == 1 and all(p.grad is None for p in model.parameters())

    # checkpoint state: the single-process format, loaded back into a fresh model and optimiser
    weights, optimizer = par.full_state(opt)
    assert par.plain_copy(weights) is model
    other = parallel.strategy(tiny_model(len(tiny_tokenizer()), seed=1))
    other_opt = torch.optim.SGD(other.model.parameters(), lr=0.5)
    assert other.load_full_state(other_opt, weights, optimizer) == []
    assert all(torch.equal(weights[k], v) for k, v in other.model.state_dict().items())
    assert other_opt.param_groups[0]["lr"] == 0.1
    assert other.load_full_state(other_opt, {"nope": torch.zeros(1)}, optimizer) == ["nope"]
