"""Reading runs back: the runs table, FlorDB's pivot, and user SQL — all over the cache.

User SQL (``--where``, ``--sort``, ``flor query``) only ever runs on read-only, guarded
connections (see :func:`cache.guard`), and any SQLite error becomes one line for the user.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from typing import Any, Iterator, Sequence

from flor_cli.errors import UserError
from flor_cli.storage import cache
from flor_cli.storage.git import Git

Table = tuple[list[str], list[tuple]]


def parse_aggs(specs: Sequence[str]) -> tuple[dict[str, str], str]:
    """``--agg`` values: ``max`` (every name) or ``val_acc=max`` (one name), comma-separated
    or repeated; returns (per name, default)."""
    per_name: dict[str, str] = {}
    default = "last"
    for spec in (s.strip() for text in specs for s in text.split(",")):
        if not spec:
            continue
        name, _, agg = spec.rpartition("=")
        if agg not in cache.AGGREGATES:
            raise UserError(f"--agg {spec}: unknown summary {agg!r} "
                            f"(choose from {', '.join(cache.AGGREGATES)})")
        if name:
            per_name[name] = agg
        else:
            default = agg
    return per_name, default


def runs(git: Git, where: str | None = None, sort: str | None = None,
         limit: int | None = None, aggs: Sequence[str] = ()) -> Table:
    """``flor log``: one row per run, newest first — fixed columns, args, a summary of
    each logged name (its last value unless ``aggs`` says otherwise, see
    :func:`parse_aggs`), and where its checkpoints are (``here``: a memoized replay is
    possible in this clone; ``missing``: recorded elsewhere and in no store here; empty:
    it took none), all from the cache, so ``--where``/``--sort``/``--limit`` run in SQL.
    Runs still running are included; ``limit`` keeps the newest.
    """
    with cache.connection(git, True, *parse_aggs(aggs)) as db:
        return _user_sql(db, "SELECT * FROM runs_wide" + _clauses(where, sort, limit),
                         *_options(where, sort))


def pivot(git: Git, names: Sequence[str], where: str | None = None, sort: str | None = None,
          limit: int | None = None) -> Table:
    """FlorDB's pivot: a row per run x loop iteration, a column per loop, arg and name.

    Run-level values (args, values logged outside any loop) repeat on every iteration row
    of their run; a run with only run-level values gets one row with empty loop columns.
    Values are the current ones (``current_logs``); runs still running are included.

    Without ``sort``, ``limit`` keeps the rows of the ``limit`` newest runs, and a
    ``where`` over run-level columns only (run, args, run-level names) selects runs in
    SQL before any record is read; otherwise they apply to the built rows, as SQL would.
    """
    with cache.connection(git, readonly=True) as db:
        names = list(names) or cache.logged_names(db)
        runs = _pivot_runs(db, where, None if sort else limit)
        table = _pivot(db, names, runs)
        newest = [r for (r,) in db.execute("SELECT run FROM runs ORDER BY start DESC, run DESC")
                  ] if runs is None and sort is None and limit is not None else []
    where = None if runs is not None else where  # else applied in SQL already
    if where is None and sort is None:
        return table
    columns, rows = filter_rows(table, where, sort, limit if sort else None)
    if sort is None and limit is not None:  # the newest runs among those left
        left = {row[0] for row in rows}
        kept = set([r for r in newest if r in left][:limit])
        rows = [row for row in rows if row[0] in kept]
    return columns, rows


def _pivot_runs(db: sqlite3.Connection, where: str | None, limit: int | None
                ) -> list[str] | None:
    """The runs to build a pivot for, chosen in SQL (the ``limit`` newest that satisfy
    ``where``), or None: every run, and ``where`` is left for the built rows.

    ``where`` is tried over the columns that mean the same in the pivot and the runs
    table (run, args, run-level names); if it names anything else (a loop, a loop-level
    name) SQLite says so and it is left for the rows.
    """
    if where is None and limit is None:
        return None
    loop_level = set(cache.names_of(db, "loop"))
    keys = ["run", "time", *(n for n in cache.names_of(db, "arg") + cache.names_of(db, "run")
                             if n not in loop_level)]
    keyed = f"WITH k AS (SELECT {', '.join(map(cache.quote_ident, dict.fromkeys(keys)))} " \
            f"FROM runs_wide) SELECT run FROM k"
    if where is not None:
        try:
            db.execute(f"{keyed} WHERE {where} LIMIT 0")
        except (sqlite3.Error, sqlite3.Warning):
            return None
    text = keyed + _clauses(where, None, limit)  # runs_wide's order: newest first
    return [run for (run,) in _user_sql(db, text, "--where/--sort")[1]]


def _pivot(db: sqlite3.Connection, names: list[str], runs: list[str] | None) -> Table:
    """The pivot of ``names`` over ``runs`` (every run when None): the one place rows
    are built."""
    kinds = {n: {k for (k,) in db.execute("SELECT kind FROM names WHERE name=?", (n,))}
             for n in names}
    unknown = [n for n, k in kinds.items() if not k]
    if unknown:
        raise UserError(f"nothing logged under {', '.join(map(repr, unknown))}")
    logged = [n for n in names if kinds[n] & {"loop", "run"}]
    iteration: dict[tuple[str, str], dict[str, Any]] = {}
    run_level: dict[str, dict[str, Any]] = {}
    for in_runs, chosen in _run_batches(runs):
        for run, ctx, lvl, name, value in db.execute(
                f"SELECT run, ctx, lvl, name, value FROM current_logs WHERE name IN "
                f"({','.join('?' * len(logged))}){in_runs} ORDER BY name, run, seq",
                (*logged, *chosen)):
            target = (run_level.setdefault(run, {}) if lvl == 0 else
                      iteration.setdefault((run, ctx), {}))
            target[name] = value  # the last of a name in one loop iteration
        if not logged:  # only args asked for (`--pivot lr`): a row per run that has them
            for (run,) in db.execute(f"SELECT DISTINCT run FROM args WHERE name IN "
                                     f"({','.join('?' * len(names))}){in_runs}",
                                     (*names, *chosen)):
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


def _run_batches(runs: list[str] | None, size: int = 10_000
                 ) -> Iterator[tuple[str, tuple[str, ...]]]:
    """A SQL condition on ``run`` and its parameters, in batches under SQLite's limit on
    parameters; one batch without a condition when every run is wanted."""
    if runs is None:
        yield "", ()
        return
    for at in range(0, len(runs), size):
        batch = tuple(runs[at:at + size])
        yield f" AND run IN ({','.join('?' * len(batch))})", batch


def _index_key(ctx: dict | None, loops: list[str]) -> tuple:
    ctx = ctx or {}
    return tuple(ctx.get(l, -1) for l in loops)


def pivot_frame(git: Git, names: Sequence[str]):
    import pandas as pd

    columns, rows = pivot(git, names)
    return pd.DataFrame(rows, columns=columns)


def sql(git: Git, text: str, what: str = "query", users: str | None = None,
        aggs: Sequence[str] = ()) -> Table:
    """``flor query``: the user's SQL, read-only, over the documented tables and views.

    ``what`` names the user's input in error messages (``check``: the expression), and
    ``users`` is the part of ``text`` the user wrote, when flor wrapped SQL around it;
    ``aggs`` chooses the summaries in ``runs_wide`` (:func:`parse_aggs`).
    """
    with cache.connection(git, True, *parse_aggs(aggs)) as db:
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


def running(git: Git) -> list[str]:
    """The runs in progress (their journals are being written)."""
    return [note.run for note in cache.live_notes(git)]


def resolve_run(git: Git, ref: str, removed: bool = False) -> str:
    """A run id from ``latest``, a run id or its unique prefix, a shadow commit prefix, or
    a run's name or tag (the newest run that carries it). ``removed``: among the runs
    ``flor rm`` removed instead (for ``flor rm --undo``)."""
    with cache.connection(git, readonly=True) as db:
        table = "removed" if removed else "runs"
        order = "at" if removed else "start"
        if ref == "latest":
            row = db.execute(f"SELECT run FROM {table} ORDER BY {order} DESC, run DESC LIMIT 1"
                             ).fetchone()
            if row is None:
                raise UserError("no runs removed" if removed else
                                "no runs recorded in this repository yet")
            return row[0]
        pattern = ref.replace("%", "") + "%"
        matches = [r for (r,) in db.execute(
            f"SELECT run FROM {table} WHERE run LIKE ? OR commit_id LIKE ?", (pattern, pattern))]
        if not matches and not removed:
            matches = [r for (r,) in db.execute(
                "SELECT r.run FROM tags t JOIN runs r ON r.run=t.run WHERE t.tag=? "
                "ORDER BY r.start DESC, r.run DESC LIMIT 1", (ref,))]
    if not matches:
        raise UserError(f"no {'removed ' if removed else ''}run matches {ref!r}")
    if ref in matches:  # a run id is never ambiguous, even when it prefixes another's
        return ref
    if len(matches) > 1:
        raise UserError(f"{ref!r} is ambiguous: {', '.join(matches[:5])}")
    return matches[0]
