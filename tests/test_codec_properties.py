"""The verdict codec as a property: plain values survive encode/decode exactly and equal themselves;
a value changed in any one place (a number off by one or beyond tolerance, a type swapped, an element
dropped or added) never equals the expectation it came from (security review #10, item 10)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo_env.sandbox import codec

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- values ------------------------------------------------------------------------------------

big_ints = (st.sampled_from([2**63, -(2**64) - 1, 10**400, 2**53 + 1, 10**16 + 1])
            | st.integers(12_001, 12_100).map(lambda bits: -(2**bits)))  # sent tagged as $i (hex)
leaves = (st.none() | st.booleans() | st.integers() | big_ints | st.floats(allow_nan=True, allow_infinity=True)
          | st.text(max_size=8) | st.binary(max_size=8))
hashables = st.recursive(leaves, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6)
values = st.recursive(
    leaves,
    lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
                   | st.sets(hashables, max_size=4) | st.frozensets(hashables, max_size=3)
                   | st.dictionaries(st.text(max_size=4), inner, max_size=3)
                   | st.dictionaries(hashables, inner, max_size=3)),
    max_leaves=12,
)


def same(a, b) -> bool:
    """Exactly the same plain value: same types all the way down, floats bit-for-bit (NaN matches
    NaN, -0.0 does not match 0.0), dicts in the same order."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(same(k, l) and same(v, w) for (k, v), (l, w) in zip(a.items(), b.items()))
    if type(a) in (set, frozenset):
        rest = list(b)
        for x in a:
            match = next((i for i, y in enumerate(rest) if same(x, y)), None)
            if match is None:
                return False
            rest.pop(match)
        return not rest
    return a == b


def wire(v):
    """``v`` as the parent sees it after crossing the sandbox boundary."""
    return codec.loads(codec.dumps(v))


@SETTINGS
@given(values)
def test_round_trip_is_exact_and_equal(v):
    back = wire(v)
    assert same(back, v), (back, v)
    assert codec.equal(back, v) and codec.equal(v, back) and codec.equal(back, wire(v))


# -- perturbations -------------------------------------------------------------------------------


def _leaf_changes(v):
    """Values that differ from the leaf ``v``: off by one or beyond tolerance, another type, longer/shorter."""
    t = type(v)
    if t is bool:
        yield not v
        yield int(v)  # True -> 1: strict_bool says a bool expectation wants a bool
        yield float(v)
    elif t is int:
        yield v + 1
        yield v - 1
        if abs(v) < 2**1000:
            yield float(v)  # an int expectation accepts only an int
        if v in (0, 1):
            yield bool(v)
        yield str(v)[:50]
    elif t is float:
        if math.isfinite(v):
            yield v + max(abs(v), 1.0) * 1e-6  # far outside the default rel_tol 1e-9
            if v == int(v) and abs(v) < 1e6:
                yield int(v) + 1  # an int off by one, where 1 is far beyond the tolerance
        else:
            yield 1e308 if v > 0 else (-1e308 if v < 0 else 0.0)
        yield str(v)
    elif t is str:
        yield v + "x"
        if v:
            yield v[:-1]
        yield v.encode("utf-8", "surrogatepass")
    elif t is bytes:
        yield v + b"x"
        if v:
            yield v[:-1]
        yield v.decode("latin-1")
    elif v is None:
        yield 0
        yield False
        yield ""


def changes(v):
    """Every value that differs from ``v`` in exactly one place (recursively)."""
    t = type(v)
    if t in (list, tuple):
        yield (tuple if t is list else list)(v)  # list <-> tuple: different types, as in Python
        yield t([*v, 0])
        for i in range(len(v)):
            yield t([*v[:i], *v[i + 1:]])
            for c in changes(v[i]):
                yield t([*v[:i], c, *v[i + 1:]])
    elif t in (set, frozenset):
        yield t([*v, "added element"]) if "added element" not in v else t(x for x in v if x != "added element")
        items = list(v)
        for i, x in enumerate(items):
            rest = items[:i] + items[i + 1:]
            yield t(rest)
            for c in changes(x):
                try:
                    yield t([*rest, c])
                except TypeError:  # a change made the element unhashable (tuple -> list)
                    pass
        yield list(v)
    elif t is dict:
        items = list(v.items())
        yield {**v, "added key": 0} if "added key" not in v else {k: x for k, x in items if k != "added key"}
        for i, (k, x) in enumerate(items):
            rest = items[:i] + items[i + 1:]
            yield dict(rest)
            for c in changes(x):
                yield dict([*rest, (k, c)])
            for c in changes(k):
                try:
                    yield dict([*rest, (c, x)])
                except TypeError:
                    pass
    else:
        yield from _leaf_changes(v)


@SETTINGS
@given(values)
def test_a_value_changed_in_one_place_never_equals_the_expectation(v):
    expected = wire(v)
    for changed in changes(v):
        got = wire(changed)
        if same(got, expected):
            continue  # the change was no change (a set element dropped then re-added, ...)
        assert not codec.equal(got, expected), (got, expected)
        if codec.equal(got, expected, strict_bool=False):
            assert _bool_int_swap(got, expected), (got, expected)


def _bool_int_swap(a, b) -> bool:
    """Whether ``a`` and ``b`` differ only by bools standing for the ints 0 and 1 (or back)."""
    def norm(x):
        t = type(x)
        if t is bool:
            return int(x)
        if t in (list, tuple):
            return t(norm(i) for i in x)
        if t in (set, frozenset):
            return t(norm(i) for i in x)
        if t is dict:
            return {norm(k): norm(i) for k, i in x.items()}
        return x
    return same(norm(a), norm(b)) or codec.equal(norm(a), norm(b))


@SETTINGS
@given(st.sets(hashables, max_size=4))
def test_set_and_frozenset_compare_as_in_python(v):
    """A set expectation accepts the frozenset of the same elements (``{1} == frozenset({1})`` in
    Python, and docs/code.md says so), and the other way round."""
    assert codec.equal(wire(frozenset(v)), wire(v)) and codec.equal(wire(v), wire(frozenset(v)))


# -- the cases the review named, by hand ---------------------------------------------------------


@pytest.mark.parametrize(
    "got, expected",
    [
        (1000000005.0, 1000000006),  # within rel 1e-9 of the int: the review's example
        (1000000006.0, 1000000006),  # an int expectation accepts only an int, even an equal float
        (3.0, 3),
        ([1.0, 2, 3], [1, 2, 3]),
        ((1, 2.0), (1, 2)),
        ({"a": 1.0}, {"a": 1}),
        ({1.0: "x"}, {1: "x"}),  # dict keys: exact type
        ({True: "x"}, {1: "x"}),
        ({1: "x"}, {True: "x"}),
        ({1.0, 2.0}, {1, 2}),  # set elements: exact type
        ({True}, {1}),
        (frozenset({(1.0,)}), {(1,)}),
        (True, 1),
        (1, True),
        (1.0, True),
        (-0.0, 0),
        (float(10**20), 10**20),
        (10**20 + 1, 10**20),
        (2**53 + 1, 2**53),  # equal as floats, not as ints
        (float("nan"), 0),
        (float("inf"), 10**400),
        (10**400, 1e308),
        (None, 0),
        (0, None),
        ("1", 1),
        (b"a", "a"),
        ([1, 2], (1, 2)),
        ([1, 2, 3], [1, 2]),
        ([1, 2], [1, 2, 3]),
        ({"a": 1, "b": 2}, {"a": 1}),
    ],
)
def test_not_equal(got, expected):
    assert not codec.equal(wire(got), wire(expected))


@pytest.mark.parametrize(
    "got, expected, kwargs",
    [
        (0.1 + 0.2, 0.3, {}),  # a float expectation: within rel_tol
        (3, 3.0, {}),  # an int where a float is expected: compared by value
        (-0.0, 0.0, {}),
        (float("nan"), float("nan"), {}),
        (float("inf"), float("inf"), {}),
        (10**400, 10**400, {}),
        ({float("nan")}, {float("nan")}, {}),
        ([1, [2.0000000001]], [1, [2.0]], {}),
        (1.05, 1.0, {"rel_tol": 0.1}),
        (True, 1, {"strict_bool": False}),
        (1, True, {"strict_bool": False}),
        ({True: [1]}, {1: [True]}, {"strict_bool": False}),
        (frozenset({1}), {1}, {}),
    ],
)
def test_equal(got, expected, kwargs):
    assert codec.equal(wire(got), wire(expected), **kwargs)


def test_int_expectation_ignores_any_tolerance():
    assert not codec.equal(1000000005.0, 1000000006, rel_tol=0.5, abs_tol=10.0)
    assert codec.equal(1000000005.0, 1000000006.0, rel_tol=1e-9)  # a float expectation keeps its tolerance
    assert not codec.equal(10**400, 1e308, rel_tol=1.0)  # too big for a float: no OverflowError, not equal
