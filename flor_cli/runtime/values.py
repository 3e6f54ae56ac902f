"""How logged values that are not plain JSON are stored: readable, with their type.

``flor.log`` stores JSON values as they are. Anything else is converted once, at log
time (a tensor may be changed in place a moment later), by these rules, and the record
gets ``"ty": "<module>.<qualname>"`` of the original:

* subclasses of bool, int, float, str (``np.float64``, ``np.str_``, an ``IntEnum``)
                                               -> the plain value
* one-element tensors, arrays and numpy scalars -> the Python number (``.item()``)
* tensors and arrays up to 10,000 elements     -> nested lists (``.tolist()``)
* tuples and sets                              -> lists
* anything else                                -> ``repr(value)``, cut to 1,000 characters

Integers of any size stay exact integers in the note; the query cache keeps those beyond
SQLite's 64 bits as their decimal text (``storage.cache``); one of more than 13,000
bits (past what Python writes in decimal) is stored as ``hex(value)`` text. A string with a
lone surrogate (``\\udc80``: an undecodable byte of a command line) is stored as JSON
writes it, ``"\\udc80"``, and read back with the escape spelled out (six characters,
``storage.notes``), so every command can show and index it; two surrogates that form a
pair are read back as the character they encode.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_ELEMENTS = 10_000
MAX_REPR = 1_000
MAX_INT_BITS = 13_000  # below the 4,300 decimal digits Python converts by default
PLAIN = (bool, int, float, str, type(None))
PLAIN_TYPES = frozenset(PLAIN)  # `type(v) in PLAIN_TYPES`: the hot path's exact-type test


def type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def encode(value: Any) -> tuple[Any, str | None]:
    """(JSON-able value of plain types only, type name or None when stored as-is)."""
    kind = type(value)
    if kind in PLAIN_TYPES:
        if kind is float and not math.isfinite(value):
            return repr(value), "builtins.float"
        if kind is int and value.bit_length() > MAX_INT_BITS:
            return hex(value), "builtins.int"  # decimal text would exceed Python's limit
        return value, None
    if isinstance(value, PLAIN):  # np.float64, np.str_, IntEnum: plain, typed
        for base in (bool, int, float, str):
            if isinstance(value, base):
                plain = base(value) if base is not str else str.__str__(value)
                return encode(plain)[0], type_name(value)
    try:
        if kind is list or kind is dict:
            plain = _plain(value)  # only plain types inside (a numpy float in a list)
            return plain, (None if plain == value else type_name(value))
        size = _size(value)
        if size == 1 and hasattr(value, "item"):
            return encode(value.item())[0], type_name(value)
        if size is not None and size <= MAX_ELEMENTS and hasattr(value, "tolist"):
            return _plain(value.tolist()), type_name(value)
        if isinstance(value, (tuple, set, frozenset, list, dict)):
            return _plain(value), type_name(value)
    except Exception:  # noqa: BLE001 - a value must never cost its record; repr it
        pass
    return _repr(value), type_name(value)


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples and sets as lists, numpy scalars as
    numbers, keys as strings); ValueError when it holds anything else, or inf/nan."""
    return json.loads(json.dumps(value, allow_nan=False, default=_as_json))


def _as_json(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if _size(value) == 1 and hasattr(value, "item"):
        return value.item()
    raise TypeError(type_name(value))


def _size(value: Any) -> int | None:
    numel = getattr(value, "numel", None)
    if callable(numel):
        return int(numel())
    size = getattr(value, "size", None)
    return size if isinstance(size, int) else None


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as e:  # a broken __repr__ must not lose the record
        text = f"<{type_name(value)}: repr failed: {type(e).__name__}>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."
