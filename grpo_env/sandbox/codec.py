"""Plain-data codec shared by the trusted parent and the sandboxed child (standard library only).

Values cross the sandbox boundary as JSON. Types JSON cannot tell apart are tagged so a tuple
stays a tuple and a set stays a set: ``{"$t": [...]}`` tuple, ``{"$s": [...]}`` set,
``{"$f": [...]}`` frozenset, ``{"$d": [[k, v], ...]}`` dict with non-string keys, ``{"$x": "nan"}``
non-finite float, ``{"$b": "hex"}`` bytes, ``{"$i": "hex"}`` huge int. A dict whose keys start
with ``$`` is tagged as ``$d`` too, so no user dict can pose as a tag.

``encode`` accepts only exact built-in types (``type(x) is int``, never ``isinstance``): an object
whose ``__eq__`` always says True is not plain data and cannot be encoded. ``equal`` compares two
*decoded* values, which are built from JSON alone, so no model-defined method can ever run in it.
This file is loaded by path inside the sandbox, so it must import nothing outside the stdlib.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 100
_BIG_INT_DIGITS = 4000  # below the interpreter's int->str limit (4300)


class NotPlainData(TypeError):
    """A value is not plain data (a model-defined class, a function, a cycle, too deep ...)."""


def _enc(x, depth, limit=MAX_DEPTH):
    if depth > limit:
        raise NotPlainData("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        if x.bit_length() > _BIG_INT_DIGITS * 3:
            return {"$i": hex(x)}
        return x
    if t is float:
        return x if math.isfinite(x) else {"$x": repr(x)}
    if t is list:
        return [_enc(v, depth + 1, limit) for v in x]
    if t is tuple:
        return {"$t": [_enc(v, depth + 1, limit) for v in x]}
    if t is set or t is frozenset:
        items = [_enc(v, depth + 1, limit) for v in x]
        items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return {"$s" if t is set else "$f": items}
    if t is dict:
        if all(type(k) is str and not k.startswith("$") for k in x):
            return {k: _enc(v, depth + 1, limit) for k, v in x.items()}
        return {"$d": [[_enc(k, depth + 1, limit), _enc(v, depth + 1, limit)] for k, v in x.items()]}
    if t is bytes:
        return {"$b": x.hex()}
    raise NotPlainData(f"a value of type {t.__name__} is not plain data")


def encode(x, max_depth: int = MAX_DEPTH) -> object:
    """A JSON-ready tagged form of plain data ``x``; raises :class:`NotPlainData` otherwise."""
    try:
        return _enc(x, 0, max_depth)
    except RecursionError:
        raise NotPlainData("value nested too deeply") from None


def dumps(x) -> str:
    return json.dumps(encode(x), separators=(",", ":"), allow_nan=False)


def _freeze(v):
    """A hashable stand-in for a decoded value, used to build sets and dict keys."""
    if type(v) is list:
        return ("$list", tuple(_freeze(i) for i in v))
    if type(v) is dict:
        return ("$dict", tuple(sorted((repr(_freeze(k)), _freeze(i)) for k, i in v.items())))
    return v


def decode(j) -> object:
    """The value a tagged JSON form stands for (tuples, sets and all)."""
    if type(j) is list:
        return [decode(v) for v in j]
    if type(j) is not dict:
        return j
    if len(j) == 1:
        (tag, body), = j.items()
        if tag == "$t":
            return tuple(decode(v) for v in body)
        if tag in ("$s", "$f"):
            items = [decode(v) for v in body]
            _check_hashes(items, "set of unhashable values")
            return set(items) if tag == "$s" else frozenset(items)
        if tag == "$d":
            pairs = [(decode(k), decode(v)) for k, v in body]
            _check_hashes([k for k, _ in pairs], "dict with unhashable keys")
            return dict(pairs)
        if tag == "$x":
            return float(body)
        if tag == "$b":
            return bytes.fromhex(body)
        if tag == "$i":
            return int(body, 16)
    return {k: decode(v) for k, v in j.items()}


def _check_hashes(items: list, unhashable: str) -> None:
    """Refuse set elements or dict keys built to collide in a hash table: ints (and floats, and
    tuples of them) hash deterministically, so N chosen values can share one hash and cost O(N^2)
    to insert. Distinct values almost never share a hash; a value repeated is not what encode
    writes either."""
    try:
        distinct = len({hash(i) for i in items})
    except TypeError:
        raise NotPlainData(unhashable) from None
    if len(items) > 64 and distinct < len(items) * 0.9:
        raise NotPlainData(f"{len(items)} set elements or keys with only {distinct} distinct hashes")


def loads(text: str) -> object:
    return decode(json.loads(text))


def equal(value, expected, *, rel_tol: float = 1e-9, abs_tol: float = 0.0, strict_bool: bool = True) -> bool:
    """Whether ``value`` (a decoded result) matches ``expected`` (the decoded gold); the gold's type rules.

    - a ``float`` expectation accepts an ``int`` or a ``float`` within ``rel_tol``/``abs_tol``
      (NaN matches NaN); it is the only place a tolerance applies;
    - an ``int`` expectation accepts only an equal ``int`` (``1000000005.0`` is not ``1000000006``,
      nor is ``3.0`` ``3``);
    - ``bool`` and ``int`` are different types when ``strict_bool`` (Python says ``True == 1``; a
      model that returns ``1`` for ``True`` is wrong here);
    - ``list`` and ``tuple`` are different types (as in Python); a ``set`` and a ``frozenset`` of
      the same elements are equal (as in Python), elements compared exactly and type-strictly;
    - ``dict``: the same keys (exactly and type-strictly: ``{1.0: x}`` is not ``{1: x}``), equal values.
    """
    tv, te = type(value), type(expected)
    if not strict_bool:  # True may stand for 1, and 1 for True
        if tv is bool:
            value, tv = int(value), int
        if te is bool:
            expected, te = int(expected), int
    if te is float:
        return tv in (int, float) and _close(value, expected, rel_tol, abs_tol)
    if tv is not te:
        return {tv, te} <= {set, frozenset} and _same_set(value, expected, strict_bool)
    if te in (list, tuple):
        return len(value) == len(expected) and all(
            equal(v, e, rel_tol=rel_tol, abs_tol=abs_tol, strict_bool=strict_bool) for v, e in zip(value, expected))
    if te is dict:
        if len(value) != len(expected):
            return False
        got = {_key(k, strict_bool): v for k, v in value.items()}
        for k, e in expected.items():
            key = _key(k, strict_bool)
            if key not in got or not equal(got[key], e, rel_tol=rel_tol, abs_tol=abs_tol, strict_bool=strict_bool):
                return False
        return True
    if te in (set, frozenset):
        return _same_set(value, expected, strict_bool)
    return value == expected  # None, bool, int, str, bytes of the same type: exact


def _close(value, expected: float, rel_tol: float, abs_tol: float) -> bool:
    """A number against a float expectation, within tolerance; NaN matches only NaN."""
    try:
        value = float(value)
    except OverflowError:  # an int too big for a float is not close to any float
        return False
    if math.isnan(value) or math.isnan(expected):
        return math.isnan(value) and math.isnan(expected)
    return value == expected or math.isclose(value, expected, rel_tol=rel_tol, abs_tol=abs_tol)


def _key(x, strict_bool: bool):
    """A hashable form of a set element or dict key that equals another only for the same type and
    value (Python's own ``1 == 1.0 == True`` would let one stand for the other); all NaNs are one."""
    t = type(x)
    if t is bool and not strict_bool:
        return int, int(x)
    if t is tuple:
        return tuple, tuple(_key(i, strict_bool) for i in x)
    if t is frozenset:
        return frozenset, frozenset(_key(i, strict_bool) for i in x)
    if t is float and math.isnan(x):
        return float, "nan"
    return t, x


def _same_set(value, expected, strict_bool: bool) -> bool:
    if len(value) != len(expected):
        return False
    return {_key(i, strict_bool) for i in value} == {_key(i, strict_bool) for i in expected}


def truthy(v) -> bool:
    """Python truthiness of a decoded value (plain data only, so it runs no model code)."""
    return bool(v)
