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
    return tabulate(rows, headers=list(columns), tablefmt=style, missingval="",
                    disable_numparse=False)


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
