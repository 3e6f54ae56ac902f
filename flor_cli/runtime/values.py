"""How logged values that are not plain JSON are stored: readable, with their type.

``flor.log`` stores JSON values as they are. Anything else is converted once, at log
time (a tensor may be changed in place a moment later), by these rules, and the record
gets ``"ty": "<module>.<qualname>"`` of the original:

* one-element tensors, arrays and numpy scalars -> the Python number (``.item()``)
* tensors and arrays up to 10,000 elements     -> nested lists (``.tolist()``)
* tuples and sets                              -> lists
* anything else                                -> ``repr(value)``, cut to 1,000 characters
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_ELEMENTS = 10_000
MAX_REPR = 1_000
PLAIN = (bool, int, float, str, type(None))
PLAIN_TYPES = frozenset(PLAIN)  # `type(v) in PLAIN_TYPES`: the hot path's exact-type test


def type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def encode(value: Any) -> tuple[Any, str | None]:
    """(JSON-able value, type name or None when stored as-is)."""
    if isinstance(value, PLAIN):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value), "builtins.float"
        return value, None
    if isinstance(value, (list, dict)):
        try:
            json.dumps(value, allow_nan=False)
            return value, None
        except (TypeError, ValueError):
            return _repr(value), type_name(value)
    size = _size(value)
    if size == 1 and hasattr(value, "item"):
        item = value.item()
        return (item if isinstance(item, PLAIN) else _repr(item)), type_name(value)
    if size is not None and size <= MAX_ELEMENTS and hasattr(value, "tolist"):
        return value.tolist(), type_name(value)
    if isinstance(value, (tuple, set, frozenset)):
        try:
            as_list = list(value)
            json.dumps(as_list, allow_nan=False)
            return as_list, type_name(value)
        except (TypeError, ValueError):
            pass
    return _repr(value), type_name(value)


def _size(value: Any) -> int | None:
    numel = getattr(value, "numel", None)
    if callable(numel):
        return int(numel())
    size = getattr(value, "size", None)
    return size if isinstance(size, int) else None


def _repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."
