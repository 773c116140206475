"""verl's custom reward function, called the way verl's reward managers call it (verl not installed):
rows in verl's parquet format read back, then ``compute_score(data_source=..., solution_str=...,
ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])`` per response."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from grpo_env_code.tasks import DATA_DIR as CODE_DATA

from grpo_env.integrations import verl
from grpo_env.plugins import PluginError, get_registry


def _through_parquet(rows, tmp_path):
    """verl reads its RL data from parquet files: round-trip the rows the same way."""
    import datasets

    from grpo_env.data import quiet_progress

    with quiet_progress():
        datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
        return [dict(r) for r in datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"),
                                                       split="train")]


def naive_reward_manager(rows, responses):
    """What verl's NaiveRewardManager does with each decoded response: one call per item, a dict
    result split into the reward and the reward extra info."""
    rewards, extra = [], defaultdict(list)
    for row, response in zip(rows, responses):
        result = verl.compute_score(data_source=row["data_source"], solution_str=response,
                                    ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
        reward = result["score"] if isinstance(result, dict) else result
        if isinstance(result, dict):
            for k, v in result.items():
                extra[k].append(v)
        rewards.append(reward)
    return rewards, dict(extra)


def test_math_and_code_rows_route_by_data_source(tmp_path):
    reg = get_registry()
    arith = verl.verl_rows(reg.task("math_arith"), "train", 2, seed=5)
    code = verl.verl_rows(reg.task("code"), "test", 1)
    rows = _through_parquet(arith + code, tmp_path)
    assert rows[0]["data_source"] == "math_arith" and rows[0]["reward_model"]["style"] == "rule"
    gold = json.loads(arith[0]["reward_model"]["ground_truth"])["answer"]
    src = json.loads((CODE_DATA / "functions" / "test.jsonl").read_text().splitlines()[0])
    solution = "```python\n" + src["prompt"] + src["canonical_solution"] + "```"
    rewards, extra = naive_reward_manager(rows, [f"\\boxed{{{gold}}}", "no idea", solution])
    assert rewards == [1.0, 0.0, 1.0]
    assert extra["status"] == ["correct", "unparsable", "correct"] and extra["excluded"] == [False] * 3


def test_verl_gsm8k_rows_with_plain_answers():
    """verl's own GSM8K preprocessing writes data_source 'openai/gsm8k' and the bare answer."""
    rows = [{"data_source": "openai/gsm8k", "reward_model": {"style": "rule", "ground_truth": "72"},
             "extra_info": {"split": "train", "index": i}} for i in range(3)]
    rewards, extra = naive_reward_manager(rows, ["so #### 72", "The answer is 72.", "#### 70"])
    assert rewards == [1.0, 1.0, 0.0] and extra["status"] == ["correct", "correct", "incorrect"]


def test_batch_calling_convention_and_excluded_judgements():
    """verl's batch manager passes lists; an unusable gold is a typed, counted, excluded judgement."""
    before = verl.COUNTS.copy()
    out = verl.compute_score(data_sources=["math", "math", "code"], solution_strs=["\\boxed{4}", "\\boxed{4}", "x"],
                             ground_truths=["4", "\\overline{AB}", "a bare string is no code problem"],
                             extra_infos=[{"index": 0}, {"index": 1}, {"index": 2}])
    assert out[0] == {"score": 1.0, "status": "correct", "excluded": False}
    assert out[1] == {"score": 0.0, "status": "not_applicable", "excluded": True}  # the gold does not parse
    assert out[2] == {"score": 0.0, "status": "error", "excluded": True}  # no example can be built: verl goes on
    assert verl.COUNTS["error"] == before["error"] + 1
    assert verl.COUNTS["not_applicable"] == before["not_applicable"] + 1


def test_unknown_data_source_is_named():
    with pytest.raises(PluginError, match="no task named 'gsm9k'"):
        verl.compute_score("gsm9k", "x", "1", {})


def test_an_environment_is_refused_with_the_reason():
    """verl cannot drop a row: an environment's rows scored 0.0 'error' with no reason and trained on
    0. An environment is played as episodes, which verl does not play: rows are refused when they are
    made, and so is a data_source naming one when it is scored, with the reason."""
    reg = get_registry()
    for make in (lambda: verl.verl_rows("games.guess", "train", 2), lambda: verl.verl_rows(reg.task("games.guess"),
                                                                                              "train", 2)):
        with pytest.raises(verl.EnvironmentRefused) as refused:
            make()
        why = str(refused.value)
        assert "'games.guess' is an environment" in why and "verl bridge plays no episodes" in why, why
        assert "cannot drop a row" in why and "grpo-env train" in why, why
    with pytest.raises(verl.EnvironmentRefused, match="'games.guess' is an environment"):
        verl.compute_score("games.guess", "4", json.dumps({"secret": 4}), {"index": 0})
    with pytest.raises(verl.EnvironmentRefused, match="'games.guess' is an environment"):
        verl.compute_score(data_sources=["math", "games.guess"], solution_strs=["\\boxed{4}", "4"],
                           ground_truths=["4", json.dumps({"secret": 4})], extra_infos=[{}, {}])
