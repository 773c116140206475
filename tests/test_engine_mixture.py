"""The task-mix sampler: weights, determinism, cycling of finite streams, exact resume."""

from collections import Counter

import pytest

from grpo_env.mixture import MixEntry, MixtureError, TaskMixture, epoch_seed
from grpo_env.types import Example, Task


def finite(n):
    def examples(split, seed, options):
        for i in range(n):
            yield Example(id=f"{split}:{seed}:{i}", prompt="p")

    return examples


def endless(split, seed, options):
    i = 0
    while True:
        yield Example(id=f"{seed}:{i}:{options.get('k', 0)}", prompt="p")
        i += 1


def mix(seed=0):
    return TaskMixture(
        [MixEntry(Task(name="a", rewards={"r": 1.0}, examples=endless), weight=1.0, options={"k": 5}),
         MixEntry(Task(name="b", rewards={"r": 1.0}, examples=finite(3)), weight=3.0)],
        seed=seed,
    )


def test_draws_follow_the_weights_and_tag_the_task():
    exs = mix().sample(4000)
    c = Counter(e.task for e in exs)
    assert c["b"] / 4000 == pytest.approx(0.75, abs=0.03)
    assert all(e.id.endswith(":5") for e in exs if e.task == "a")  # options reach the stream


def test_deterministic_for_a_seed_and_different_across_seeds():
    assert [e.id for e in mix(1).sample(50)] == [e.id for e in mix(1).sample(50)]
    assert [e.id for e in mix(1).sample(50)] != [e.id for e in mix(2).sample(50)]


def test_finite_streams_cycle_with_a_new_seed_per_epoch():
    m = TaskMixture([MixEntry(Task(name="b", rewards={"r": 1.0}, examples=finite(3)))], seed=10)
    ids = [e.id for e in m.sample(7)]
    s0, s1, s2 = (epoch_seed(10, 0, k) for k in range(3))
    assert ids == [f"train:{s0}:0", f"train:{s0}:1", f"train:{s0}:2",
                   f"train:{s1}:0", f"train:{s1}:1", f"train:{s1}:2", f"train:{s2}:0"]


def test_state_dict_resumes_exactly():
    m = mix(3)
    m.sample(37)
    state = m.state_dict()
    expected = [e.id for e in m.sample(40)]
    fresh = mix(3)
    fresh.load_state_dict(state)
    assert [e.id for e in fresh.sample(40)] == expected


def test_bad_mixes_are_refused_by_name():
    with pytest.raises(MixtureError, match="empty"):
        TaskMixture([])
    with pytest.raises(MixtureError, match="'a' has no split 'dev'"):
        TaskMixture([MixEntry(Task(name="a", rewards={"r": 1.0}, examples=endless))], split="dev")
    m = TaskMixture([MixEntry(Task(name="e", rewards={"r": 1.0}, examples=finite(0)))])
    with pytest.raises(MixtureError, match="'e' yields no 'train' examples"):
        m.sample(1)
