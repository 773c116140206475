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


def _enc(x, depth):
    if depth > MAX_DEPTH:
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
        return [_enc(v, depth + 1) for v in x]
    if t is tuple:
        return {"$t": [_enc(v, depth + 1) for v in x]}
    if t is set or t is frozenset:
        items = [_enc(v, depth + 1) for v in x]
        items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return {"$s" if t is set else "$f": items}
    if t is dict:
        if all(type(k) is str and not k.startswith("$") for k in x):
            return {k: _enc(v, depth + 1) for k, v in x.items()}
        return {"$d": [[_enc(k, depth + 1), _enc(v, depth + 1)] for k, v in x.items()]}
    if t is bytes:
        return {"$b": x.hex()}
    raise NotPlainData(f"a value of type {t.__name__} is not plain data")


def encode(x) -> object:
    """A JSON-ready tagged form of plain data ``x``; raises :class:`NotPlainData` otherwise."""
    try:
        return _enc(x, 0)
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
            try:
                return set(items) if tag == "$s" else frozenset(items)
            except TypeError:
                raise NotPlainData("set of unhashable values") from None
        if tag == "$d":
            try:
                return {decode(k): decode(v) for k, v in body}
            except TypeError:
                raise NotPlainData("dict with unhashable keys") from None
        if tag == "$x":
            return float(body)
        if tag == "$b":
            return bytes.fromhex(body)
        if tag == "$i":
            return int(body, 16)
    return {k: decode(v) for k, v in j.items()}


def loads(text: str) -> object:
    return decode(json.loads(text))


def equal(a, b, *, rel_tol: float = 1e-9, abs_tol: float = 0.0, strict_bool: bool = True) -> bool:
    """Type-strict equality of two decoded values.

    - ``bool`` equals only ``bool`` when ``strict_bool`` (Python says ``True == 1``; a model that
      returns ``1`` for ``True`` is wrong here);
    - ``int`` and ``float`` compare by value, floats within ``rel_tol``/``abs_tol``; NaN equals NaN;
    - ``list`` and ``tuple`` are different types (as in Python); ``set`` and ``frozenset`` compare
      like Python does (exactly);
    - ``dict``: same keys, equal values.
    """
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        if strict_bool:
            return ta is tb and a == b
        return (ta in (bool, int, float) and tb in (bool, int, float)) and _num_eq(a, b, rel_tol, abs_tol)
    if ta in (int, float) and tb in (int, float):
        return _num_eq(a, b, rel_tol, abs_tol)
    if ta is not tb:
        if {ta, tb} <= {set, frozenset}:
            return a == b
        return False
    if ta in (list, tuple):
        return len(a) == len(b) and all(equal(x, y, rel_tol=rel_tol, abs_tol=abs_tol, strict_bool=strict_bool) for x, y in zip(a, b))
    if ta is dict:
        if len(a) != len(b):
            return False
        for k, v in a.items():
            if k not in b or not equal(v, b[k], rel_tol=rel_tol, abs_tol=abs_tol, strict_bool=strict_bool):
                return False
        return True
    return a == b  # None, str, bytes, sets of plain values: built-in equality only


def _num_eq(a, b, rel_tol, abs_tol):
    if type(a) in (int, bool) and type(b) in (int, bool):
        return a == b
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def truthy(v) -> bool:
    """Python truthiness of a decoded value (plain data only, so it runs no model code)."""
    return bool(v)
