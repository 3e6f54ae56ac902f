"""``--kwargs k=v ...``: parsing the command line and casting values to the defaults' types."""

from __future__ import annotations

from typing import Any

from flor_cli.errors import UserError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def split_kwargs(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Remove ``--kwargs k=v ...`` from argv: (remaining argv, kwargs).

    The pairs run from ``--kwargs`` to the next argument that starts with ``--`` or the
    end, as in FlorDB; ``--kwargs`` may appear more than once.
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
        while i < len(argv) and not argv[i].startswith("--"):
            pair = argv[i]
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise UserError(f"--kwargs {pair!r}: expected name=value")
            kwargs[key.strip()] = value
            i += 1
    return rest, kwargs


def cast(name: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default`` (bool, int, float, str); str for other defaults."""
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
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise UserError(f"--kwargs {name}={text}: not a valid {kind.__name__} "
                        f"(the default is {default!r})") from None
    return text
