"""`[train] tensorboard = true`: event files under <run>/tensorboard mirror metrics.jsonl step for step,
a resume purges the redone steps, the default writes none, and a missing package fails at start."""

import json
import sys
import threading

import pytest
import torch

from grpo_env.engine.config import TrainConfig
from grpo_env.engine.tblog import INSTALL_HINT, TensorBoardMissing, scalars
from grpo_env.engine.tiny import tiny_model, tiny_tokenizer
from grpo_env.engine.trainer import train
from grpo_env.mixture import MixEntry, TaskMixture
from grpo_env.cli.train import main_train
from grpo_env.types import Example, Outcome, Scored, Task


def _examples(split, seed, options):
    for i in range(5):
        yield Example(id=f"{seed}-{i}", prompt=f"say {(seed + i) % 10}")


def _score(exs, comps):
    outs = [Outcome.partial(sum(ch in "aeiou" for ch in c) / 4) for c in comps]
    return [Scored(total=o.score, status=o.status, components={"vowels": o}) for o in outs]


def _run(out, steps, resume=False, score=_score, **kw):
    """A few real GRPO steps of a tiny model on two tasks, with a KL term (so `kl` is logged)."""
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    tasks = [MixEntry(Task(name=n, rewards={"vowels": 1.0}, examples=_examples)) for n in ("one", "two")]
    cfg = TrainConfig(steps=steps, group_size=4, prompts_per_step=2, max_new_tokens=4, lr=1e-2, save_every=2,
                      progress=False, beta=0.05, **kw)
    ref = tiny_model(len(tok)).requires_grad_(False)
    return train(tiny_model(len(tok)), tok, TaskMixture(tasks, seed=7), score, cfg, out, ref_model=ref,
                 resume=resume)


def _records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={SCALARS: 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _writer_threads():
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    return [t for t in threading.enumerate() if isinstance(t, _AsyncWriterThread)]


def test_scalars_flatten_nested_records_and_skip_non_numbers():
    rec = {"step": 3, "kl": 0.5, "skipped": False, "clip": None, "skipped_reason": "x",
           "time": {"total": 1.25}, "reward_by_task": {"one": {"mean": 0.5, "std": float("nan")}}}
    assert dict(scalars(rec)) == {"kl": 0.5, "skipped": 0.0, "time/total": 1.25, "reward_by_task/one/mean": 0.5}


def test_event_scalars_equal_metrics_jsonl(tmp_path):
    _run(tmp_path, 3, tensorboard=True)
    recs, events = _records(tmp_path), _events(tmp_path)
    assert [r["step"] for r in recs] == [1, 2, 3]
    for tag in ("reward_mean", "kl", "lr", "completion_len_mean", "time/total", "time/generation",
                "reward_by_task/one/mean", "reward_by_component/vowels"):
        assert [s for s, _ in events[tag]] == [1, 2, 3], tag
        assert [v for _, v in events[tag]] == pytest.approx([_get(r, tag) for r in recs], rel=1e-6), tag
    # every numeric value of every record is there, and nothing else
    expected = {(tag, r["step"]) for r in recs for tag, _ in scalars(r)}
    assert {(tag, s) for tag, series in events.items() for s, _ in series} == expected
    assert not _writer_threads()  # closed at the end


def _get(record, tag):
    for part in tag.split("/"):
        record = record[part]
    return record


def test_resume_after_a_crash_purges_the_redone_steps(tmp_path):
    calls = 0

    def crash_at_step_4(exs, comps):  # checkpoint at step 2, steps 3 logged, then the run dies
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("boom")
        return _score(exs, comps)

    with pytest.raises(RuntimeError, match="boom"):
        _run(tmp_path, 4, score=crash_at_step_4, tensorboard=True)
    assert [s for s, _ in _events(tmp_path)["reward_mean"]] == [1, 2, 3]
    assert not _writer_threads()  # closed on the exception too

    _run(tmp_path, 4, resume=True, tensorboard=True)
    recs, events = _records(tmp_path), _events(tmp_path)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    for tag in ("reward_mean", "kl", "time/total"):
        assert [s for s, _ in events[tag]] == [1, 2, 3, 4], tag  # step 3 once: the first attempt's is purged
        assert [v for _, v in events[tag]] == pytest.approx([_get(r, tag) for r in recs], rel=1e-6), tag


def test_off_by_default_writes_no_event_files(tmp_path):
    assert TrainConfig().tensorboard is False
    _run(tmp_path, 1)
    assert (tmp_path / "metrics.jsonl").exists()
    assert not (tmp_path / "tensorboard").exists()


def test_missing_package_fails_at_start_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    with pytest.raises(TensorBoardMissing, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        _run(tmp_path / "engine", 2, tensorboard=True)
    assert not (tmp_path / "engine" / "metrics.jsonl").exists()  # before the first step

    # the CLI fails before loading the model (it does not exist) or looking up the task (unknown)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[model]\nname = "{tmp_path / "no-model"}"\n[[tasks]]\nname = "no_task"\n'
                      f'[train]\noutput_dir = "{tmp_path / "cli"}"\n')
    assert main_train(str(recipe), ["--train.tensorboard=true"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "grpo-env[tensorboard]"' in err and "Traceback" not in err
    assert not (tmp_path / "cli").exists()
