"""Reading runs back: the runs table, FlorDB's pivot, and user SQL — all over the cache.

User SQL (``--where``, ``--sort``, ``flor query``) only ever runs on read-only, guarded
connections (see :func:`cache.guard`), and any SQLite error becomes one line for the user.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from typing import Any, Sequence

from flor_cli.errors import UserError
from flor_cli.storage import cache
from flor_cli.storage.git import Git

Table = tuple[list[str], list[tuple]]


def runs(git: Git, where: str | None = None, sort: str | None = None,
         limit: int | None = None) -> Table:
    """``flor log``: one row per run — fixed columns, args, run-level (final) values, and
    where its checkpoints are (``here``: a memoized replay is possible in this clone;
    ``missing``: recorded elsewhere and in no store here; empty: it took none), all from
    the cache, so ``--where``/``--sort``/``--limit`` run in SQL.
    """
    with cache.connection(git, readonly=True) as db:
        return _user_sql(db, "SELECT * FROM runs_wide" + _clauses(where, sort or "time, run",
                                                                   limit), *_options(where, sort))


def pivot(git: Git, names: Sequence[str], where: str | None = None, sort: str | None = None,
          limit: int | None = None) -> Table:
    """FlorDB's pivot: a row per run x loop iteration, a column per loop, arg and name.

    Run-level values (args, values logged outside any loop) repeat on every iteration row
    of their run; a run with only run-level values gets one row with empty loop columns.
    """
    with cache.connection(git) as db:
        table = _pivot(db, list(names))
    if where is None and sort is None:
        return table[0], table[1][:limit] if limit is not None else table[1]
    return filter_rows(table, where, sort, limit)


def _pivot(db: sqlite3.Connection, names: list[str]) -> Table:
    if not names:
        names = list(dict.fromkeys(cache.names_of(db, "loop") + cache.names_of(db, "run")))
    kinds = {n: {k for (k,) in db.execute("SELECT kind FROM names WHERE name=?", (n,))}
             for n in names}
    unknown = [n for n, k in kinds.items() if not k]
    if unknown:
        raise UserError(f"nothing logged under {', '.join(map(repr, unknown))}")
    logged = [n for n in names if kinds[n] & {"loop", "run"}]
    iteration: dict[tuple[str, str], dict[str, Any]] = {}
    run_level: dict[str, dict[str, Any]] = {}
    for run, ctx, lvl, name, value in db.execute(
            f"SELECT run, ctx, lvl, name, value FROM logs WHERE name IN "
            f"({','.join('?' * len(logged))}) ORDER BY rowid", logged):
        target = run_level.setdefault(run, {}) if lvl == 0 else iteration.setdefault((run, ctx), {})
        target[name] = value  # later records (replays are appended) win
    if not logged:  # only args asked for (`flor log --pivot lr`): a row per run that has them
        for (run,) in db.execute(f"SELECT DISTINCT run FROM args WHERE name IN "
                                 f"({','.join('?' * len(names))})", names):
            run_level.setdefault(run, {})
    with_iterations = {run for run, _ in iteration}
    included = set(run_level) | with_iterations
    order = {run: i for i, (run,) in enumerate(db.execute("SELECT run FROM runs ORDER BY start, run"))}
    args: dict[str, dict[str, Any]] = {}
    arg_names: dict[str, None] = {}
    for run, name, value in db.execute("SELECT run, name, value FROM args ORDER BY rowid"):
        if run in included:
            args.setdefault(run, {})[name] = value
            arg_names[name] = None
    # Per distinct context, not per row: a pivot can have a million rows and a few
    # thousand contexts.
    contexts = {ctx: json.loads(ctx) for ctx in {ctx for _, ctx in iteration}}
    loop_names: dict[str, None] = {}
    for parsed in contexts.values():
        loop_names.update(dict.fromkeys(parsed))
    loops = list(loop_names)
    loop_values = {ctx: tuple(parsed.get(l) for l in loops) for ctx, parsed in contexts.items()}
    loop_values[None] = (None,) * len(loops)
    index_keys = {ctx: _index_key(parsed, loops) for ctx, parsed in contexts.items()}
    index_keys[None] = _index_key(None, loops)
    keyed = list(iteration.items())
    keyed += [((run, None), {}) for run in run_level if run not in with_iterations]
    unordered = len(order)
    keyed.sort(key=lambda item: (order.get(item[0][0], unordered), item[0][0],
                                 index_keys[item[0][1]]))
    columns = ["run", *loops]
    columns += [a for a in arg_names if a not in columns]
    columns += [n for n in names if n not in columns]
    value_columns = columns[1 + len(loops):]
    per_run = {run: {**args.get(run, {}), **run_level.get(run, {})} for run in included}
    rows = []
    for (run, ctx), values in keyed:
        merged = {**per_run[run], **values}
        rows.append((run, *loop_values[ctx], *map(merged.get, value_columns)))
    return columns, rows


def _index_key(ctx: dict | None, loops: list[str]) -> tuple:
    ctx = ctx or {}
    return tuple(ctx.get(l, -1) for l in loops)


def pivot_frame(git: Git, names: Sequence[str]):
    import pandas as pd

    columns, rows = pivot(git, names)
    return pd.DataFrame(rows, columns=columns)


def sql(git: Git, text: str, what: str = "query", users: str | None = None) -> Table:
    """``flor query``: the user's SQL, read-only, over the documented tables and views.

    ``what`` names the user's input in error messages (``check``: the expression), and
    ``users`` is the part of ``text`` the user wrote, when flor wrapped SQL around it.
    """
    with cache.connection(git, readonly=True) as db:
        return _user_sql(db, text, what, users)


def sql_frame(git: Git, text: str):
    import pandas as pd

    columns, rows = sql(git, text)
    return pd.DataFrame(rows, columns=columns)


def filter_rows(table: Table, where: str | None, sort: str | None, limit: int | None) -> Table:
    """Apply ``--where``/``--sort``/``--limit`` to computed rows with SQLite's own semantics."""
    columns, rows = table
    with closing(sqlite3.connect(":memory:")) as mem:
        mem.execute(f"CREATE TABLE t ({', '.join(map(cache.quote_ident, columns))})")
        mem.executemany(f"INSERT INTO t VALUES ({','.join('?' * len(columns))})", rows)
        cache.guard(mem)
        return _user_sql(mem, "SELECT * FROM t" + _clauses(where, sort, limit),
                         *_options(where, sort))


def _clauses(where: str | None, sort: str | None, limit: int | None) -> str:
    text = f" WHERE {where}" if where else ""
    text += f" ORDER BY {sort}" if sort else ""
    return text + (f" LIMIT {int(limit)}" if limit is not None else "")


def _options(where: str | None, sort: str | None) -> tuple[str, str]:
    """How the user wrote ``--where``/``--sort`` (for error lines), and their text."""
    given = [(flag, text) for flag, text in (("--where", where), ("--sort", sort)) if text]
    what = " ".join(f"{flag} {text!r}" for flag, text in given) or "--where/--sort"
    return what, " ".join(text for _, text in given)


def _user_sql(db: sqlite3.Connection, text: str, what: str, users: str | None = None) -> Table:
    """Run SQL built around the user's text ``users`` (all of ``text`` when None)."""
    try:
        return cache.rows(db, text)
    except (sqlite3.Error, sqlite3.Warning) as e:  # Warning: e.g. two statements
        raise UserError(f"{what}: {_sql_reason(str(e), text if users is None else users)}"
                        ) from None


def _sql_reason(message: str, users: str) -> str:
    """SQLite's reason, about the user's text: a syntax error "near" SQL that flor
    wrapped around it (``ORDER``, ``LIMIT``, ``)``) means the user's text ended early."""
    if "not authorized" in message or "readonly" in message or "read-only" in message:
        return "not allowed: flor runs SQL read-only"
    near = re.fullmatch(r'near "(.*)": syntax error', message)
    if message == "incomplete input" or (near and near.group(1).lower() not in users.lower()):
        return "incomplete expression (syntax error at its end)"
    return message


def resolve_run(git: Git, ref: str) -> str:
    """A run id from ``latest``, a run id or its unique prefix, or a shadow commit prefix."""
    with cache.connection(git) as db:
        if ref == "latest":
            row = db.execute("SELECT run FROM runs ORDER BY start DESC, run DESC LIMIT 1").fetchone()
            if row is None:
                raise UserError("no runs recorded in this repository yet")
            return row[0]
        matches = [r for (r,) in db.execute(
            "SELECT run FROM runs WHERE run LIKE ? OR commit_id LIKE ?",
            (ref.replace("%", "") + "%", ref.replace("%", "") + "%"))]
    if not matches:
        raise UserError(f"no run matches {ref!r}")
    if ref in matches:  # a run id is never ambiguous, even when it prefixes another's
        return ref
    if len(matches) > 1:
        raise UserError(f"{ref!r} is ambiguous: {', '.join(matches[:5])}")
    return matches[0]
