"""One way to print rows, shared by every command that prints a table.

As in sqlite-utils, every such command takes the same options (:func:`output_options`):
``--format table|csv|tsv|json|nl|markdown`` (table, via tabulate, is the default) with
``--csv``, ``--tsv``, ``--json``, ``--nl`` (JSON lines) and ``--markdown`` as shorthands,
``--fmt`` for any tabulate style, ``--no-headers``; column choice by glob patterns
(``--columns``, ``--drop``, ``--keep``, ``--only-changed``), ``--precision``. On a
terminal the table is coloured (never with ``NO_COLOR``) and paged through ``$PAGER``
(``less`` with ``LESS=FRX`` unless set, as git does); piped output is neither.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
import re
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import click

FORMATS = ("table", "csv", "tsv", "json", "nl", "markdown")
_SHORTHANDS = ("csv", "tsv", "json", "nl", "markdown")


def _patterns(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


@dataclass(frozen=True)
class Output:
    """How a command prints its table: what :func:`output_options` parsed."""

    fmt: str = "table"
    tablefmt: str = "simple"
    headers: bool = True
    precision: int | None = None
    columns: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    only_changed: bool = False
    pager: bool = True

    def select(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]
               ) -> tuple[list[str], list[Sequence[Any]]]:
        """The columns the patterns choose: ``--columns`` (only these, in the table's
        order), minus ``--drop`` and, with ``--only-changed``, those equal in every row;
        ``--keep`` brings a column back whatever else says. The first column (the row's
        identity, e.g. ``run``) is always kept."""
        chosen = self._chosen(columns, _changed(rows) if self.only_changed else None)
        if len(chosen) == len(columns):
            return list(columns), list(rows)
        return [columns[i] for i in chosen], [[row[i] for i in chosen] for row in rows]

    def _chosen(self, columns: Sequence[str], changed: list[bool] | None) -> list[int]:
        """The indices of the columns shown; ``changed``: which columns hold a value
        that differs from the first row's (None: every column counts as changed)."""
        def matches(name: str, patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(name, p) for p in patterns)

        chosen = []
        for i, name in enumerate(columns):
            shown = (not self.columns or matches(name, self.columns)) and \
                not matches(name, self.drop)
            if shown and changed is not None:
                shown = changed[i]
            if i == 0 or shown or matches(name, self.keep):
                chosen.append(i)
        return chosen

    def render(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        columns, rows = self.select(columns, rows)
        return render(columns, self._rounded(rows), self.fmt, self.tablefmt, self.headers)

    def _rounded(self, rows: list[Sequence[Any]]) -> list[Sequence[Any]]:
        if self.precision is None:
            return rows
        digits = self.precision
        return [[float(f"{v:.{digits}g}") if type(v) is float and math.isfinite(v) else v
                 for v in row] for row in rows]

    def emit(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Print a table whose rows may be any iterable (a SQLite cursor): see
        :meth:`chunks`."""
        self.print(self.chunks(columns, rows))

    def chunks(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
        """The table as pieces of text, each printed as lines of its own, reading
        ``rows`` :data:`PAGE_ROWS` at a time: a table of any length in bounded memory.

        A table of one page is :meth:`render`'s text. A longer one: csv, tsv, json and nl
        go out row by row as one document; ``table`` and ``markdown``, which size their
        columns to the rows they hold, print one table (with its header) per page.
        ``--only-changed`` must see every row before the first is printed: a longer
        table's rows wait in a temporary file meanwhile, not in memory.
        """
        rows = iter(rows)
        first = list(islice(rows, PAGE_ROWS))
        following = list(islice(rows, PAGE_ROWS)) if len(first) == PAGE_ROWS else []
        if not following:
            yield self.render(columns, first)
            return
        pages = _paged(first, following, rows)
        with tempfile.TemporaryFile() if self.only_changed else nullcontext() as spill:
            changed = None
            if spill is not None:
                changed, pages = _spilled(pages, len(columns), spill)
            chosen = self._chosen(columns, changed)
            names = [columns[i] for i in chosen]
            pick = (lambda page: page) if len(chosen) == len(columns) else \
                (lambda page: [[row[i] for i in chosen] for row in page])
            pages = (self._rounded(pick(page)) for page in pages)
            if self.fmt == "json":
                yield "["
                yield from json_items(([dict(zip(names, row)) for row in _cleaned(page)]
                                       for page in pages), 1)
                yield "]"
                return
            for number, page in enumerate(pages):
                headers = self.headers and (number == 0 or self.fmt in ("table", "markdown"))
                yield render(names, page, self.fmt, self.tablefmt, headers)

    def show(self, text: str) -> None:
        """Print ``text``: coloured and paged on a terminal, as it is otherwise."""
        self.print((text,))

    def print(self, chunks: Iterable[str]) -> None:
        """Print each piece of text as lines: coloured (a table) and paged on a
        terminal, as it is otherwise; the pager reads the pieces as they come."""
        _print(chunks, colour=self.fmt == "table", pager=self.pager)


PAGE_ROWS = 10_000  # rows of a table held at once (see Output.chunks)


def _changed(rows: Iterable[Sequence[Any]], changed: list[bool] | None = None,
             first: Sequence[Any] | None = None) -> list[bool]:
    """Which columns hold a value that differs from ``first`` (the first row's);
    ``changed``: what earlier rows said."""
    for row in rows:
        if first is None:
            first = row
        if changed is None:
            changed = [False] * len(first)
        changed = [c or v != f for c, v, f in zip(changed, row, first)]
    return changed or []


def _paged(first: list, following: list, rest: Iterator) -> Iterator[list]:
    yield first
    yield following
    while page := list(islice(rest, PAGE_ROWS)):
        yield page


def _lookahead(pages: Iterable[list]) -> Iterator[tuple[list, bool]]:
    """Each page, and whether it is the last."""
    pages = iter(pages)
    page = next(pages, None)
    while page is not None:
        after = next(pages, None)
        yield page, after is None
        page = after


def _spilled(pages: Iterable[list], width: int, spill) -> tuple[list[bool], Iterator[list]]:
    """Which columns changed (:func:`_changed`) over every page, and the pages again,
    read back from the temporary file ``spill`` they were pickled into meanwhile."""
    import pickle

    first, changed = None, None
    for page in pages:
        if first is None:
            first = page[0]
        changed = _changed(page, changed, first)
        pickle.dump(page, spill, protocol=pickle.HIGHEST_PROTOCOL)
    spill.seek(0)

    def read_back() -> Iterator[list]:
        while True:
            try:
                yield pickle.load(spill)
            except EOFError:
                return

    return changed or [False] * width, read_back()


def json_items(pages: Iterable[list], depth: int) -> Iterator[str]:
    """The items of a JSON list ``depth`` levels deep, as ``json.dumps(..., indent=2)``
    writes them, a page at a time: pieces of lines, commas included, that the caller
    puts between the list's brackets."""
    for page, last in _lookahead(page for page in pages if page):
        pad = "  " * depth
        yield ",\n".join(pad + json.dumps(item, indent=2, default=str).replace("\n", "\n" + pad)
                         for item in page) + ("" if last else ",")


def output_options(fn: Callable) -> Callable:
    """The output options of every table command, handed to it as one ``out: Output``."""
    options = [
        click.option("--format", "fmt_name", type=click.Choice(FORMATS), default=None,
                     help="Output format (default: table). Rows are printed as they are "
                          "read: csv, tsv, json and nl as one document however long; a "
                          f"table or markdown longer than {PAGE_ROWS:,} rows as one table "
                          f"per {PAGE_ROWS:,} rows, each sized to its own rows."),
        *(click.option(f"--{name}", f"as_{name}", is_flag=True,
                       help=f"Same as --format {name}.") for name in _SHORTHANDS),
        click.option("--fmt", "tablefmt", default="simple", show_default=True,
                     callback=_check_tablefmt,
                     help="tabulate style for --format table (e.g. grid, github)."),
        click.option("--no-headers", is_flag=True, help="Omit the header row."),
        click.option("--precision", type=click.IntRange(min=1), default=None,
                     help="Round floats to this many significant digits."),
        click.option("--columns", "columns", multiple=True, metavar="GLOB",
                     help="Show only the columns matching these patterns "
                          "(comma-separated or repeated)."),
        click.option("--drop", multiple=True, metavar="GLOB",
                     help="Hide the columns matching these patterns."),
        click.option("--keep", multiple=True, metavar="GLOB",
                     help="Always show the columns matching these patterns."),
        click.option("--only-changed", is_flag=True,
                     help="Hide columns whose value is the same in every row."),
        click.option("--no-pager", is_flag=True, help="Do not page output on a terminal."),
    ]
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        shorthand = [n for n in _SHORTHANDS if kwargs.pop(f"as_{n}")]
        fmt_name = kwargs.pop("fmt_name")
        if len(set(shorthand + ([fmt_name] if fmt_name else []))) > 1:
            raise click.UsageError("choose one output format")
        kwargs["out"] = Output(
            fmt=fmt_name or (shorthand[0] if shorthand else "table"),
            tablefmt=kwargs.pop("tablefmt"), headers=not kwargs.pop("no_headers"),
            precision=kwargs.pop("precision"), columns=_patterns(kwargs.pop("columns")),
            keep=_patterns(kwargs.pop("keep")), drop=_patterns(kwargs.pop("drop")),
            only_changed=kwargs.pop("only_changed"), pager=not kwargs.pop("no_pager"))
        return fn(*args, **kwargs)

    for decorator in reversed(options):
        wrapper = decorator(wrapper)
    return wrapper


def _check_tablefmt(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value == "simple":  # the default: no need to import tabulate to know it
        return value
    from tabulate import tabulate_formats

    if value not in tabulate_formats:
        raise click.BadParameter(f"unknown style {value!r} (choose from "
                                 f"{', '.join(sorted(tabulate_formats))})")
    return value


def agg_option(fn: Callable) -> Callable:
    """``--agg``: which summary of each logged name a runs-table column shows."""
    return click.option(
        "--agg", "aggs", multiple=True, metavar="[NAME=]SUMMARY",
        help="Summary of logged values per run: last (default), first, min, max, mean, "
             "count; for every name, or NAME=SUMMARY for one (repeat or comma-separate).")(fn)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str,
           tablefmt: str = "simple", headers: bool = True) -> str:
    rows = _cleaned(rows)
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=str)
    if fmt == "nl":
        return "\n".join(json.dumps(dict(zip(columns, row)), default=str) for row in rows)
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n", **({"delimiter": "\t"} if fmt == "tsv" else {}))
        if headers:
            writer.writerow(columns)
        writer.writerows(rows)  # None is written as the empty cell
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    columns = list(map(_visible, columns))  # for people, often on a terminal
    rows = [list(map(_visible, row)) for row in rows]
    style = "github" if fmt == "markdown" else tablefmt
    if not headers:
        return tabulate(rows, tablefmt=style, missingval="", disable_numparse=False)
    prepared = _prepared(columns, rows, style)
    laid_out = _laid_out(columns, *prepared, style) if prepared is not None else None
    if laid_out is not None:
        return laid_out
    return tabulate(rows, headers=list(columns), tablefmt=style, missingval="",
                    disable_numparse=False)


def on_terminal() -> bool:
    return sys.stdout.isatty()


def colour_wanted() -> bool:
    """Colour only on a terminal, and never with NO_COLOR (https://no-color.org)."""
    return on_terminal() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _print(chunks: Iterable[str], colour: bool = True, pager: bool = True) -> None:
    """Print each piece of text as lines; on a terminal through ``$PAGER`` (git's
    ``less -FRX`` habit: the pager quits at once when the text fits, keeps colours,
    leaves the screen as is), which reads the pieces as they come."""
    if colour and colour_wanted():
        chunks = map(_coloured, chunks)
    command = os.environ.get("PAGER", "less") if pager and on_terminal() else ""
    if command.strip() in ("", "cat"):
        for chunk in chunks:
            click.echo(chunk)
        return
    import subprocess

    env = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
    try:
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
    except OSError:
        for chunk in chunks:
            click.echo(chunk)
        return
    try:
        with proc.stdin:
            for chunk in chunks:
                proc.stdin.write((chunk + "\n").encode())
    except (BrokenPipeError, KeyboardInterrupt):  # the user quit the pager early
        pass
    proc.wait()


def _coloured(text: str) -> str:
    """A table's header bold and each row's first cell (the run id) yellow, as git
    colours commit ids; other lines (rules) as they are."""
    lines = text.split("\n")
    if not lines:
        return text
    bold, yellow, reset = "\x1b[1m", "\x1b[33m", "\x1b[0m"
    out = [bold + lines[0] + reset]
    for line in lines[1:]:
        match = re.match(r"(\s*[|]?\s*)([^\s|]+)(.*)", line)
        if match and not set(match.group(2)) <= set("-=+:|"):
            line = f"{match.group(1)}{yellow}{match.group(2)}{reset}{match.group(3)}"
        out.append(line)
    return "\n".join(out)


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


# C0 controls but the newline (a cell of several lines is laid out as such), DEL and C1
# (0x9b is CSI to some terminals): spelled \x1b in a table.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x0A}


def _visible(value: Any) -> Any:
    """Text with its control characters spelled out: a table's cells come from notes
    that anyone who can push wrote, and an escape sequence printed as it is could
    clear, retitle or rewrite the screen, or set the clipboard (OSC 52)."""
    if type(value) is str and not value.isprintable():
        return value.translate(_CONTROLS)
    return value


def _cleaned(rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """The rows, each cell :func:`_clean`; rows of plain cells only (all that a SQLite
    cursor gives: SQLite stores NaN as NULL) as they are, checked in C over the whole
    page: at 100,000 runs a call per cell was a third of ``flor log``'s output time."""
    rows = list(rows)
    cells = list(chain.from_iterable(rows))
    kinds = set(map(type, cells))
    if kinds <= _PLAIN_CELLS and (float not in kinds or not any(
            map(math.isnan, filter(_FLOAT_CELL, cells)))):
        return rows
    return [[_clean(v) for v in row] for row in rows]


_PLAIN_CELLS = frozenset((str, int, float, type(None)))
_FLOAT_CELL = float.__instancecheck__  # exact floats only here: kinds <= _PLAIN_CELLS


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
