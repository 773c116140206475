"""fp32 products through the library this machine runs fastest (grpo_env/engine/cpu_matmul.py).

oneDNN's routed linear: same values and gradients as torch's ``linear``, routed only where eligible,
and really routed (so these tests can fail). The per-machine choice: calibrated once, kept in its
cache file, forced by GRPO_ENV_CPU_MATMUL, pinned by a checkpoint on resume. The decode loop's
kernels: the same tokens and log-probs as torch's ``linear``, each path really taken, every
forward restored afterwards."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from grpo_env.engine import checkpoint, cpu_matmul
from grpo_env.engine.config import TrainConfig
from grpo_env.engine.cpu_matmul import MatmulConfigError, decode_linears, mm_nt, onednn_linear
from grpo_env.engine.decode import decode
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import train

pytestmark = pytest.mark.skipif(not cpu_matmul.has_onednn(), reason="this torch has no oneDNN linear")


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch, tmp_path):
    """Each test starts with no choice made, a cache file of its own, and oneDNN forced for training
    products (so the routed-linear tests route whatever this machine would choose)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "onednn")
    cpu_matmul.pin(None)
    yield
    cpu_matmul.pin(None)


def _grads(fn, x0, w0, b0, g):
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    b = None if b0 is None else b0.clone().requires_grad_()
    y = fn(x, w, b)
    y.backward(g)
    return [y.detach(), x.grad, w.grad] + ([] if b is None else [b.grad]), y.grad_fn.name()


@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24), (2, 3, 4, 24)])
@pytest.mark.parametrize("bias", [False, True])
def test_routed_linear_matches_torch_values_and_gradients(shape, bias):
    torch.manual_seed(0)
    x, w = torch.randn(*shape), torch.randn(40, 24)
    b = torch.randn(40) if bias else None
    g = torch.randn(*shape[:-1], 40)
    with onednn_linear():
        routed, name = _grads(F.linear, x, w, b, g)
    plain, plain_name = _grads(F.linear, x, w, b, g)
    assert "_Linear" in name and "_Linear" not in plain_name  # really routed inside, and only there
    for a, r in zip(routed, plain):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_non_contiguous_input_and_modules():
    """A transposed input, and nn.Linear modules (which call F.linear), take the routed path."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(16, 6).t()  # (6, 16), not contiguous
    with onednn_linear():
        y = lin(x)
    assert "_Linear" in y.grad_fn.name()
    torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-5)


def test_only_eligible_calls_are_routed(monkeypatch):
    torch.manual_seed(2)
    x, w = torch.randn(4, 8), torch.randn(3, 8, requires_grad=True)
    with onednn_linear():
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps its own bf16 kernels
            y = F.linear(x, w)
        assert y.dtype == torch.bfloat16 and "_Linear" not in y.grad_fn.name()
        y64 = F.linear(x.double(), w.double())  # not float32
        assert "_Linear" not in y64.grad_fn.name()
        v = F.linear(torch.randn(8), w)  # a 1-D input
        assert "_Linear" not in v.grad_fn.name()
    monkeypatch.setattr(cpu_matmul, "ENABLED", False)  # the switch (bench/step.py's lever)
    with onednn_linear():
        assert "_Linear" not in F.linear(x, w).grad_fn.name()
    monkeypatch.setattr(cpu_matmul, "ENABLED", True)
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "mkl")  # MKL chosen for training: nothing routed either
    with onednn_linear():
        assert "_Linear" not in F.linear(x, w).grad_fn.name()


def test_mm_nt():
    torch.manual_seed(3)
    a, w = torch.randn(5, 12), torch.randn(9, 12)
    torch.testing.assert_close(mm_nt(a, w), a @ w.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mm_nt(a.t().contiguous().t(), w.t().contiguous().t()), a @ w.T, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the per-machine choice


def test_the_choice_is_calibrated_once_per_machine_and_read_back(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "auto")
    chosen = cpu_matmul.choice()
    assert set(chosen) == set(cpu_matmul.ROLES) and set(chosen.values()) <= set(cpu_matmul.LIBRARIES)
    path = cpu_matmul.cache_path()
    assert path.parent.parent == tmp_path / "cache"
    key = cpu_matmul.machine_key()
    assert json.loads(path.read_text()) == {key: chosen}
    assert "torch " in key and "threads" in key and "family" in key

    flipped = {role: "mkl" if lib == "onednn" else "onednn" for role, lib in chosen.items()}
    path.write_text(json.dumps({key: flipped, "another machine": chosen}))
    cpu_matmul.pin(None)
    assert cpu_matmul.choice() == flipped  # read from the file, not timed again

    for bad in ("not json", json.dumps([1, 2]), json.dumps({key: {"train": "blas"}})):
        path.write_text(bad)
        cpu_matmul.pin(None)
        again = cpu_matmul.choice()  # calibrated again, and the file made whole
        assert set(again) == set(cpu_matmul.ROLES) and set(again.values()) <= set(cpu_matmul.LIBRARIES)
        assert json.loads(path.read_text())[key] == again


def test_a_cache_that_cannot_be_written_only_means_calibrating(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # mkdir under a regular file fails
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "auto")
    assert set(cpu_matmul.choice().values()) <= set(cpu_matmul.LIBRARIES)
    assert blocker.read_text() == ""


def test_calibration_times_both_libraries_for_every_role():
    out = cpu_matmul.calibrate()
    for role in cpu_matmul.ROLES:
        s = out["seconds"][role]
        assert 0 < s["mkl"] < 5 and 0 < s["onednn"] < 5
        assert out["choice"][role] == ("onednn" if s["onednn"] <= cpu_matmul.MARGIN * s["mkl"] else "mkl")


def test_forcing_and_pinning(monkeypatch):
    for lib in cpu_matmul.LIBRARIES:
        monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", lib)
        assert cpu_matmul.choice() == dict.fromkeys(cpu_matmul.ROLES, lib)
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "blas")
    with pytest.raises(MatmulConfigError, match="GRPO_ENV_CPU_MATMUL must be auto, mkl or onednn, got 'blas'"):
        cpu_matmul.choice()
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "auto")
    pinned = {"train": "onednn", "decode": "mkl", "decode_head": "onednn"}
    cpu_matmul.pin(pinned)
    assert cpu_matmul.choice() == pinned and cpu_matmul.available()
    for bad in ({"train": "mkl"}, {**pinned, "decode": "cublas"}):
        with pytest.raises(MatmulConfigError):
            cpu_matmul.pin(bad)
    monkeypatch.setattr(cpu_matmul, "ENABLED", False)
    assert cpu_matmul.choice() == dict.fromkeys(cpu_matmul.ROLES, "mkl") and not cpu_matmul.available()


def test_a_checkpoint_records_the_choice_and_a_resume_pins_it(monkeypatch, tmp_path):
    from tests.test_engine_learns import TASK, score_starts_with_target
    from grpo_env.mixture import MixEntry, TaskMixture

    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "auto")
    first = {"train": "mkl", "decode": "onednn", "decode_head": "mkl"}
    cpu_matmul.pin(first)
    tok = tiny_tokenizer()

    def run(steps, resume):
        cfg = TrainConfig(steps=steps, group_size=2, prompts_per_step=1, max_new_tokens=2, progress=False, save_every=1)
        train(tiny_model(len(tok)), tok, TaskMixture([MixEntry(TASK)]), score_starts_with_target, cfg, tmp_path / "run",
              resume=resume)

    run(1, False)
    assert checkpoint.load(checkpoint.latest(tmp_path / "run" / "checkpoints"))["cpu_matmul"] == first
    cpu_matmul.pin({"train": "onednn", "decode": "mkl", "decode_head": "onednn"})  # another process's choice
    run(2, True)
    assert cpu_matmul.choice() == first


# ---------------------------------------------------------------------------------------------
# the decode loop's kernels


def _decode(model, tok, logprobs):
    enc = tok(["u:a\na:", "u:a much longer prompt\na:"], return_tensors="pt", padding=True, add_special_tokens=False)
    return decode(model, enc["input_ids"], enc["attention_mask"], 3, max_new_tokens=6, eos=[1], pad_id=0,
                  temperature=0, logprobs=logprobs)


@pytest.mark.parametrize("lib", cpu_matmul.LIBRARIES)
def test_decode_kernels_give_the_tokens_and_logprobs_of_torch_linear(monkeypatch, lib):
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", lib)
    monkeypatch.setattr(cpu_matmul, "HEAD_COLUMNS", 8)  # the tiny vocabulary counts as a head: its kernel runs too
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed=3).eval()
    plain_lp: list = []
    with torch.no_grad():
        plain = _decode(model, tok, plain_lp)
        seen = []
        real = cpu_matmul._decode_forward

        def spy(module, small, large, row_major):
            fn = real(module, small, large, row_major)
            seen.append(module)
            return fn

        monkeypatch.setattr(cpu_matmul, "_decode_forward", spy)
        fast_lp: list = []
        with decode_linears(model):
            fast = _decode(model, tok, fast_lp)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert seen == linears and not any("forward" in m.__dict__ for m in linears)  # all patched, all restored
    assert torch.equal(plain, fast)
    torch.testing.assert_close(torch.stack(fast_lp), torch.stack(plain_lp), rtol=0, atol=1e-5)


def test_decode_paths_are_really_taken_and_restored_after_an_error(monkeypatch):
    """MKL at few rows: the weight as the long side (a transposed result), made row-major for the
    attention's query; the training choice above SMALL_ROWS; nothing patched with gradients on."""
    monkeypatch.setenv("GRPO_ENV_CPU_MATMUL", "mkl")
    torch.manual_seed(0)
    layers = torch.nn.ModuleDict({"q_proj": torch.nn.Linear(16, 24), "up_proj": torch.nn.Linear(16, 24, bias=False)})
    x_small, x_large = torch.randn(2, 3, 16), torch.randn(cpu_matmul.SMALL_ROWS + 1, 16)
    with torch.no_grad():
        want = {n: (m(x_small), m(x_large)) for n, m in layers.items()}
        with decode_linears(layers):
            got = {n: (m(x_small), m(x_large)) for n, m in layers.items()}
        with pytest.raises(KeyError), decode_linears(layers):
            assert all("forward" in m.__dict__ for m in layers.values())
            raise KeyError("boom")
    assert not any("forward" in m.__dict__ for m in layers.values())
    for n in layers:
        torch.testing.assert_close(got[n][0], want[n][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[n][1], want[n][1], rtol=1e-5, atol=1e-5)
    assert got["q_proj"][0].is_contiguous()  # the query: row-major
    assert got["up_proj"][0].stride()[-1] != 1  # the others: the transposed result as it is
    assert got["up_proj"][1].is_contiguous()  # a prefill: plain linear
    with decode_linears(layers):  # gradients on: nothing patched
        assert not any("forward" in m.__dict__ for m in layers.values())
    with torch.no_grad(), decode_linears(layers.double()):  # not fp32: nothing patched
        assert not any("forward" in m.__dict__ for m in layers.values())


def test_a_model_with_nothing_eligible_never_calibrates(monkeypatch):
    """A bf16 (or GPU) model's decode patches nothing, so it never times this machine's CPU kernels
    nor writes the cache."""
    monkeypatch.delenv("GRPO_ENV_CPU_MATMUL")
    calls, real = [], cpu_matmul.calibrate
    monkeypatch.setattr(cpu_matmul, "calibrate", lambda: calls.append(1) or real())
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Linear(24, 8)).to(torch.bfloat16)
    with torch.no_grad(), decode_linears(model):
        assert not any("forward" in m.__dict__ for m in model)
    assert calls == [] and not cpu_matmul.cache_path().exists()
    with torch.no_grad(), decode_linears(model.float()):  # the control: fp32 weights do calibrate
        assert all("forward" in m.__dict__ for m in model)
    assert calls == [1] and cpu_matmul.cache_path().exists()


def test_doctor_names_the_choice_and_a_bad_setting_stops_doctor_and_train(monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "GRPO_ENV_CPU_MATMUL": "mkl"}
    ok = subprocess.run([sys.executable, "-m", "grpo_env.cli", "doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "training mkl, decode mkl, decode LM head mkl" in " ".join(ok.stdout.split())
    env["GRPO_ENV_CPU_MATMUL"] = "blas"
    bad = subprocess.run([sys.executable, "-m", "grpo_env.cli", "doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 1 and "GRPO_ENV_CPU_MATMUL must be auto, mkl or onednn" in " ".join(bad.stdout.split())
    train_bad = subprocess.run([sys.executable, "-m", "grpo_env.cli", "train", str(Path(__file__).parents[1] / "tasks" / "quickstart.toml"),
                                f"--train.output_dir={tmp_path / 'runs'}"], capture_output=True, text=True, timeout=120, env=env)
    assert train_bad.returncode == 2, train_bad.stdout + train_bad.stderr
    assert "error: GRPO_ENV_CPU_MATMUL must be auto, mkl or onednn, got 'blas'" in train_bad.stderr
    assert "Traceback" not in train_bad.stderr and not (tmp_path / "runs").exists()
