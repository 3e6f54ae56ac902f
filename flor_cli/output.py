"""One way to print rows, shared by every command that prints a table.

As in sqlite-utils, every such command takes the same options: ``--format
table|csv|json|markdown`` (table, via tabulate, is the default) with ``--csv``,
``--json`` and ``--markdown`` as shorthands; ``--fmt`` picks any tabulate style.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any, Callable, Sequence

import click

FORMATS = ("table", "csv", "json", "markdown")


def output_options(fn: Callable) -> Callable:
    for decorator in reversed([
        click.option("--format", "fmt_name", type=click.Choice(FORMATS), default=None,
                     help="Output format (default: table)."),
        click.option("--csv", "as_csv", is_flag=True, help="Same as --format csv."),
        click.option("--json", "as_json", is_flag=True, help="Same as --format json."),
        click.option("--markdown", "as_markdown", is_flag=True,
                     help="Same as --format markdown."),
        click.option("--fmt", "tablefmt", default="simple", show_default=True,
                     help="tabulate style for --format table (e.g. grid, github)."),
    ]):
        fn = decorator(fn)
    return fn


def chosen_format(fmt_name: str | None, as_csv: bool, as_json: bool, as_markdown: bool) -> str:
    return fmt_name or ("csv" if as_csv else "json" if as_json else
                        "markdown" if as_markdown else "table")


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str,
           tablefmt: str = "simple") -> str:
    rows = [[_clean(v) for v in row] for row in rows]
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    style = "github" if fmt == "markdown" else tablefmt
    prepared = _prepared(columns, rows, style)
    laid_out = _laid_out(columns, *prepared, style) if prepared is not None else None
    if laid_out is not None:
        return laid_out
    return tabulate(rows, headers=list(columns), tablefmt=style, missingval="",
                    disable_numparse=False)


# The table fast path. tabulate infers a type for every cell, formats and aligns it, at
# ~15 µs a cell: 0.7 s of a 10,000-row pivot. For the tables flor prints (None, int,
# finite float, printable ASCII text that does not read as a number) the same is done
# per column here: _prepared formats and aligns the cells as tabulate would, and
# _laid_out has tabulate lay out a two-row table of placeholders, then fills every row
# into that row's line. Anything else goes to tabulate whole. The styles are those
# whose rows are their cells, padded, between fixed borders; tests compare the fast
# path with tabulate's own output.
_FAST_STYLES = frozenset(("simple", "github", "plain", "grid", "pipe", "psql", "orgtbl"))
_PLAIN_KINDS = frozenset((type(None), int, float, str))
_PLACEHOLDERS = "~^`@#!"


def _prepared(columns: Sequence[str], rows: list[list[Any]], style: str
              ) -> tuple[list[list[str]], list[str]] | None:
    """Each column's cells formatted and padded to one width as tabulate would, and its
    alignment; None where the fast path does not apply."""
    if style not in _FAST_STYLES or not rows or not all(
            c.isascii() and c.isprintable() for c in columns):
        return None
    texts: dict[str, bool] = {}
    formatted, aligns = [], []
    for cells in zip(*rows):
        kinds = set(map(type, cells))
        if not kinds <= _PLAIN_KINDS:
            return None
        if str in kinds:  # a text column: every value as str(), flush left
            if not all(_is_text(v, texts) for v in cells if type(v) is str and v):
                return None
            if not any(type(v) is str and v for v in cells):  # only "" beside numbers
                return None
            strings = ["" if v is None else f"{v}" for v in cells]
            width = max(1, max(map(len, strings)))
            formatted.append([v.ljust(width) for v in strings])
            aligns.append("left")
        elif float in kinds or int in kinds:  # numbers: format "g" if any float, aligned
            if float in kinds:                # on the decimal point, flush right
                if not all(math.isfinite(v) for v in cells if type(v) is float):
                    return None
                strings = ["" if v is None else format(float(v), "g") for v in cells]
            else:
                strings = ["" if v is None else f"{v}" for v in cells]
            strings = _decimal_aligned(strings)
            width = max(1, max(map(len, strings)))
            formatted.append([v.rjust(width) for v in strings])
            aligns.append("right")
        else:  # nothing but None: tabulate's type is then bool, aligned as text
            formatted.append([" "] * len(cells))
            aligns.append("left")
    return formatted, aligns


def _laid_out(columns: Sequence[str], formatted: list[list[str]], aligns: list[str],
              style: str) -> str | None:
    """The table, with tabulate laying out two placeholder rows as wide as the columns."""
    from tabulate import tabulate

    mark = next((m for m in _PLACEHOLDERS if not any(m in c for c in columns)), None)
    if mark is None:
        return None
    placeholders = [mark * len(cells[0]) for cells in formatted]
    lines = tabulate([placeholders, placeholders], headers=list(columns), tablefmt=style,
                     disable_numparse=True, colalign=aligns).split("\n")
    marked = [i for i, line in enumerate(lines) if mark in line]
    if len(marked) != 2:
        return None
    first, second = marked
    pieces = re.split(f"{re.escape(mark)}+", lines[first])
    if len(pieces) != len(formatted) + 1 or lines[second] != lines[first]:
        return None
    template = "{}".join(p.replace("{", "{{").replace("}", "}}") for p in pieces)
    between = "".join(line + "\n" for line in lines[first + 1:second])
    body = (between and "\n" + between[:-1] or "") + "\n"
    rows = body.join(template.format(*row).rstrip() for row in zip(*formatted))  # as tabulate
    return "\n".join([*lines[:first], rows, *lines[second + 1:]])


def _is_text(value: str, seen: dict[str, bool]) -> bool:
    """Whether tabulate certainly types ``value`` as text (not a number, bool or colour)
    and lays it out as one line as wide as its length: printable ASCII."""
    known = seen.get(value)
    if known is None:
        known = seen[value] = (value.isascii() and value.isprintable()
                               and value == value.strip() and value not in ("True", "False")
                               and not _may_be_number(value))
    return known


def _may_be_number(value: str) -> bool:
    """True for what ``float`` reads, and for what tabulate's "1,000.5" pattern could match
    (only digits, signs, commas and points, a sign only first): a run id is not."""
    if not value.strip("+-0123456789,.") and "-" not in value[1:] and "+" not in value[1:]:
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _decimal_aligned(strings: list[str]) -> list[str]:
    """tabulate's "decimal" alignment of formatted numbers: pad after the last digit."""
    decimals = [_afterpoint(s) for s in strings]
    most = max(decimals)
    return [s + " " * (most - d) for s, d in zip(strings, decimals)]


def _afterpoint(number: str) -> int:
    """Digits after the point (or exponent) of ``str(int)``/``format(float, "g")``; -1 if none."""
    if not number or number.lstrip("-").isdigit():
        return -1
    point = number.rfind(".")
    point = number.rfind("e") if point < 0 else point
    return len(number) - point - 1 if point >= 0 else -1


def _clean(value: Any) -> Any:
    """pandas hands NaN/NA for missing cells; every format shows them as empty/null."""
    kind = type(value)
    if kind is str or kind is int:  # most cells, on every row: answered first
        return value
    if kind is float:
        return None if math.isnan(value) else value
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    return value
