"""``flor check``: a CI gate — is a SQL expression over one run's values true?

The expression is evaluated by SQLite over the ``runs_wide`` view (the columns of
``flor log``: args and a summary of every logged name, its last value by default), on the read-only guarded connection every piece
of user SQL gets, so a gate can use anything SQLite can (``AND``, ``abs()``, ``IS NULL``).
NULL is not true: a run that never logged ``accuracy`` fails ``accuracy >= 0.9``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from flor_cli.errors import UserError
from flor_cli.services import query
from flor_cli.storage import cache
from flor_cli.storage.git import Git

# Identifiers as SQLite reads them: "double-quoted", `backticked`, [bracketed] or bare;
# 'string literals' are matched only to be skipped.
_IDENT = re.compile(r'"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|'
                    r"'(?:[^']|'')*'|([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Outcome:
    run: str
    expr: str
    passed: bool  # true as SQLite's WHERE would take it
    null: bool  # the expression was NULL (e.g. over a value the run never logged)
    values: dict[str, Any]  # the run's values of the columns the expression mentions


def check(git: Git, expr: str, run: str = "latest", aggs: Sequence[str] = ()) -> Outcome:
    """``expr`` over ``run``'s row of the runs table, with the summaries ``aggs`` asks
    for (:func:`query.parse_aggs`; each logged name's last value by default)."""
    if not expr.strip():
        raise UserError("check: empty expression")
    run_id = query.resolve_run(git, run)
    columns, rows = query.sql(
        git, f"SELECT *, ({expr}) IS TRUE, ({expr}) IS NULL FROM runs_wide "
             f"WHERE run = {cache.quote_literal(run_id)}", what=f"check {expr!r}", users=expr,
        aggs=aggs)
    if not rows:  # resolve_run read the same cache, so only a concurrent rebuild gets here
        raise UserError(f"check: run {run_id} is not in the cache")
    *values, passed, null = rows[0]
    row = dict(zip(columns[:-2], values))
    return Outcome(run_id, expr, bool(passed), bool(null),
                   {name: row[name] for name in mentioned(expr, columns[:-2])})


def mentioned(expr: str, columns: list[str]) -> list[str]:
    """The columns an expression names, in the order it first names them."""
    lowered = {c.lower(): c for c in columns}
    found: dict[str, None] = {}
    for match in _IDENT.finditer(expr):
        quoted, backticked, bracketed, bare = match.group(1, 2, 3, 4)
        name = (quoted.replace('""', '"') if quoted else backticked or bracketed or bare)
        if name is not None and name.lower() in lowered:
            found[lowered[name.lower()]] = None
    return list(found)


def describe(outcome: Outcome) -> str:
    """The failure line: which run, what was false (or NULL), and the values behind it."""
    verdict = "is NULL" if outcome.null else "is false"
    values = ", ".join(f"{k}={_show(v)}" for k, v in outcome.values.items())
    return f"{outcome.run}: {outcome.expr} {verdict}" + (f" ({values})" if values else "")


def _show(value: Any) -> str:
    return "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)
