"""The run report: plots and a markdown summary regenerated from a run directory's logs."""

import json
import random

import pytest

from grpo_env.cli import main
from grpo_env.cli.report import ReportError, read_metrics, status_rates, write_report


def fake_run(tmp_path, steps=30, torn=False):
    rng = random.Random(0)
    lines = []
    for s in range(1, steps + 1):
        r = min(1.0, s / steps + rng.uniform(-0.1, 0.1))
        lines.append(json.dumps({
            "step": s, "reward_mean": r, "reward_std": 0.3, "kl": 0.001 * s,
            "reward_by_task": {"a": {"mean": r, "std": 0.1, "n": 8}, "b": {"mean": None, "std": None, "n": 0}},
            "reward_by_component": {"x.answer": r, "x.format": 0.5},
            "status_by_task": {"a": {"correct": s % 8, "incorrect": 8 - s % 8, "x.answer:timeout": 1}},
            "completion_len_mean": 30.0, "completion_len_max": 64, "truncated_frac": 0.1, "zero_spread_frac": 0.25,
            "time": {"generate": 2.0, "score": 0.5, "update": 1.5, "total": 4.0}, "skipped": s == 3,
        }))
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + ("\n{\"step\": 9" if torn else "\n"))
    (tmp_path / "recipe.json").write_text(json.dumps({"name": "demo", "seed": 0}))
    (tmp_path / "eval_base.json").write_text(json.dumps({"model": "m", "results": {"a": {"accuracy": 0.25, "n": 40}}}))
    (tmp_path / "eval_final.json").write_text(json.dumps({"model": "ck", "results": {"a": {"accuracy": 0.5, "n": 40}}}))
    return tmp_path


def test_report_writes_every_plot_and_summary(tmp_path):
    run = fake_run(tmp_path)
    md = write_report(run)
    names = sorted(p.name for p in (run / "report").glob("*.png"))
    assert names == sorted(f"{n}.png" for n in ("reward", "components", "status", "length", "kl", "zero_spread", "time"))
    for p in (run / "report").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    text = md.read_text()
    records = read_metrics(run)
    head = sum(r["reward_mean"] for r in records[:3]) / 3
    tail = sum(r["reward_mean"] for r in records[-3:]) / 3
    assert f"{head:.3f} -> {tail:.3f}" in text
    assert "| base | m | a | 0.250 | 40 |" in text and "| final | ck | a | 0.500 | 40 |" in text
    assert "skipped steps 1" in text and "![reward](reward.png)" in text


def test_status_rates_count_completions_not_components(tmp_path):
    rates = status_rates(read_metrics(fake_run(tmp_path)))
    assert set(rates) == {"correct", "incorrect"}
    assert rates["correct"][0] == pytest.approx(1 / 8)


def test_torn_last_line_is_ignored_and_missing_run_is_an_error(tmp_path, capsys):
    run = fake_run(tmp_path / "r", torn=True) if (tmp_path / "r").mkdir() is None else None
    assert len(read_metrics(run)) == 30
    with pytest.raises(ReportError, match="no metrics.jsonl"):
        write_report(tmp_path / "nowhere")
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert main(["report", str(run)]) == 0
    assert "report.md" in capsys.readouterr().out
