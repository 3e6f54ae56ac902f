"""``--kwargs k=v ...``: parsing the command line, casting values, catching misspelt names.

Values arrive as text and take the type of the script's default: bool, int, float and str
as those types; a list, tuple or dict default takes a Python literal (``layers=[128,128]``),
parsed with ``ast.literal_eval``, never evaluated. An arg without a default (FlorDB's
``flor.arg("lr")``) takes the literal the text spells, else the text itself. ``nan``,
``inf`` and ``-inf`` are floats wherever a number is expected.

A ``--kwargs`` name that no ``flor.arg`` reads is almost always a typo that would otherwise
train for hours with the default; :func:`unknown_kwargs_line` says so in one line.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from flor_cli.errors import UserError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_LITERAL_TYPES = (list, tuple, dict)


class _Missing:
    """The default of ``flor.arg(name)`` called without one (FlorDB allows it)."""

    def __repr__(self) -> str:
        return "<no default>"


MISSING: Any = _Missing()


def split_kwargs(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Remove ``--kwargs k=v ...`` from argv: (remaining argv, kwargs).

    The pairs run from ``--kwargs`` to the next argument that starts with ``-`` or the
    end, as in FlorDB; ``--kwargs`` may appear more than once. Everything else (the
    script's own flags and arguments) is left in place, in order.
    """
    rest: list[str] = []
    kwargs: dict[str, str] = {}
    i = 0
    while i < len(argv):
        if argv[i] != "--kwargs":
            rest.append(argv[i])
            i += 1
            continue
        i += 1
        while i < len(argv) and not argv[i].startswith("-"):
            pair = argv[i]
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise UserError(f"--kwargs {pair!r}: expected name=value")
            kwargs[key.strip()] = value
            i += 1
    return rest, kwargs


def cast(name: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default`` (see the module docstring)."""
    if default is MISSING or default is None:
        return _infer(text)
    kind = type(default)
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if kind is int:
            try:
                return int(text)
            except ValueError:
                value = float(text)  # nan, inf: a number, but not an int
                if math.isfinite(value):
                    raise
                return value
        if kind is float:
            return float(text)
        if isinstance(default, _LITERAL_TYPES):
            import ast

            value = ast.literal_eval(text.strip())
            if isinstance(value, (list, tuple)) and kind in (list, tuple):
                return kind(value)
            if not isinstance(value, kind):
                raise ValueError(text)
            return value
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise UserError(f"--kwargs {name}={text}: not a valid {kind.__name__} "
                        f"(the default is {default!r})") from None
    return text


def _infer(text: str) -> Any:
    """What ``text`` spells: a Python literal, a non-finite float, or the text itself."""
    stripped = text.strip()
    if stripped.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(stripped)
    import ast

    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text


def revive(recorded: Any, default: Any) -> Any:
    """A recorded arg value back in its type: notes store JSON, so a tuple comes back as
    a list and a non-finite float as its text (``'nan'``)."""
    if isinstance(recorded, str) and isinstance(default, float) and not isinstance(default, bool):
        try:
            return float(recorded)
        except ValueError:
            return recorded
    if isinstance(recorded, list) and isinstance(default, tuple):
        return tuple(recorded)
    return recorded


def resolve(name: str, kwargs: dict[str, str], default: Any) -> Any:
    """The value of ``flor.arg(name, default)`` given the run's ``--kwargs``."""
    if name in kwargs:
        return cast(name, kwargs[name], default)
    if default is MISSING:
        raise UserError(f"flor.arg({name!r}) has no default and no value: pass "
                        f"--kwargs {name}=VALUE, or give it one: flor.arg({name!r}, VALUE)")
    return default


def not_in_sources(names: Iterable[str]) -> list[str]:
    """The ``names`` that appear as no string literal in the script or in the user's
    modules it has loaded (files outside site-packages, under the script's directory or
    the working directory): those no later ``flor.arg`` can read, so a run can stop on
    them before training. A name that does appear may be read after the main loop
    (``sys.exit(flor.arg("exit", 0))``); it is checked at exit instead."""
    import sys
    from pathlib import Path

    names = list(names)
    roots = {Path.cwd().resolve(), Path(sys.argv[0] or ".").resolve().parent}
    files = {Path(sys.argv[0]).resolve()} if sys.argv[0] else set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py") and "site-packages" not in path:
            resolved = Path(path).resolve()
            if any(resolved.is_relative_to(root) for root in roots):
                files.add(resolved)
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names = [n for n in names if f'"{n}"' not in text and f"'{n}'" not in text]
        if not names:
            break
    return names


def unknown_kwargs_line(given: Iterable[str], known: Iterable[str]) -> str | None:
    """One line naming the ``--kwargs`` no ``flor.arg`` read, or None when all were read."""
    import difflib

    known = list(dict.fromkeys(known))
    unknown = [n for n in dict.fromkeys(given) if n not in known]
    if not unknown:
        return None
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            hints.append(close[0] if len(unknown) == 1 else f"{close[0]} for {name}")
    line = (f"--kwargs {', '.join(unknown)}: no flor.arg reads "
            f"{'it' if len(unknown) == 1 else 'them'} (known args: "
            f"{', '.join(known) if known else 'none'})")
    return line + (f"; did you mean {', '.join(hints)}?" if hints else "")
