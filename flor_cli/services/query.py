"""Reading runs back: the runs table, FlorDB's pivot, and user SQL — all over the cache.

User SQL (``--where``, ``--sort``, ``flor query``) only ever runs on read-only, guarded
connections (see :func:`cache.guard`), and any SQLite error becomes one line for the user.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing, contextmanager
from typing import Any, Iterable, Iterator, Sequence

from flor_cli.errors import UserError
from flor_cli.storage import cache
from flor_cli.storage.git import Git
from flor_cli.storage.live import live_runs

Table = tuple[list[str], list[tuple]]


def split_names(values: Iterable[str]) -> list[str]:
    """NAME arguments as every command takes them: each may list several, comma-separated
    (``loss,val_acc``); empty parts are dropped."""
    return [n for value in values for n in value.split(",") if n]


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
    with runs_rows(git, where, sort, limit, aggs) as (columns, rows):
        return columns, list(rows)


@contextmanager
def runs_rows(git: Git, where: str | None = None, sort: str | None = None,
              limit: int | None = None, aggs: Sequence[str] = ()
              ) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """:func:`runs`, its rows read as they are iterated (printed a page at a time):
    ``with runs_rows(...) as (columns, rows)``."""
    with cache.connection(git, True, *parse_aggs(aggs)) as db:
        yield _user_rows(db, "SELECT * FROM runs_wide" + _clauses(where, sort, limit),
                         *_options(where, sort))


def pivot(git: Git, names: Sequence[str], where: str | None = None, sort: str | None = None,
          limit: int | None = None) -> Table:
    """:func:`pivot_rows`, its rows in a list (for a data frame, or a table refreshed)."""
    with pivot_rows(git, names, where, sort, limit) as (columns, rows):
        return columns, list(rows)


@contextmanager
def pivot_rows(git: Git, names: Sequence[str], where: str | None = None,
               sort: str | None = None, limit: int | None = None
               ) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """FlorDB's pivot: a row per run x loop iteration, a column per loop, arg and name;
    ``with pivot_rows(...) as (columns, rows)``: the rows are read as they are iterated,
    in bounded memory whatever the number of records (see :func:`_pivot`).

    Run-level values (args, values logged outside any loop) repeat on every iteration row
    of their run; a run with only run-level values gets one row with empty loop columns.
    Values are the current ones (``current_logs``); runs still running are included.

    Without ``sort``, ``limit`` keeps the rows of the ``limit`` newest runs, and a
    ``where`` over run-level columns only (run, args, run-level names) selects runs in
    SQL before any record is read; otherwise they apply to the built rows, as SQL would,
    in a temporary SQLite file (:func:`_filtered`).
    """
    with cache.connection(git, readonly=True) as db:
        names = list(names) or cache.logged_names(db)
        runs = _pivot_runs(db, where, None if sort else limit)
        columns, rows = _pivot(db, names, runs)
        if runs is not None:
            where = None  # applied in SQL already
        if where is None and sort is None:
            yield columns, rows
            return
        newest = None
        if sort is None and limit is not None:  # the rows of the newest runs left
            newest = [r for (r,) in db.execute(
                "SELECT run FROM runs ORDER BY start DESC, run DESC")], limit
        with _filtered(columns, rows, where, sort, limit if sort else None, newest) as table:
            yield table


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


def _pivot(db: sqlite3.Connection, names: list[str], runs: list[str] | None
           ) -> tuple[list[str], Iterator[tuple]]:
    """The pivot of ``names`` over ``runs`` (every run when None): the one place rows
    are built. Its rows are read as they are iterated: SQLite orders the current values
    by run and loop iteration (sorting on disk what does not fit its cache), and a row
    is made of each iteration's values as they pass. What is held: each pivoted run's
    args, and one run's run-level values."""
    kinds = {n: {k for (k,) in db.execute("SELECT kind FROM names WHERE name=?", (n,))}
             for n in names}
    unknown = [n for n, k in kinds.items() if not k]
    if unknown:
        raise UserError(f"nothing logged under {', '.join(map(repr, unknown))}")
    logged = [n for n in names if kinds[n] & {"loop", "run"}]
    in_runs = "" if runs is None else \
        f" AND run IN ({','.join(map(cache.quote_literal, runs))})"  # any number of runs
    wanted = logged or names  # only args asked for (`--pivot lr`): a row per run with them
    included = {run for (run,) in db.execute(
        f"SELECT DISTINCT run FROM {'summaries' if logged else 'args'} WHERE name IN "
        f"({','.join('?' * len(wanted))}){in_runs}", wanted)}
    args: dict[str, dict[str, Any]] = {}
    arg_names: dict[str, None] = {}
    for run, name, value in db.execute(
            f"SELECT run, name, value FROM args WHERE 1{in_runs} ORDER BY rowid"):
        if run in included:
            args.setdefault(run, {})[name] = value
            arg_names[name] = None
    loops = _loops(db, logged, in_runs) if logged else []
    columns = ["run", *loops]
    columns += [a for a in arg_names if a not in columns]
    columns += [n for n in names if n not in columns]
    value_columns = columns[1 + len(loops):]
    order = "(SELECT run, row_number() OVER (ORDER BY start, run) AS p FROM runs)"
    if not logged:
        rows = db.execute(f"SELECT run FROM {order} ORDER BY p")
        nothing = (None,) * len(loops)
        return columns, ((run, *nothing, *map(args[run].get, value_columns))
                         for (run,) in rows if run in included)
    keys = "".join(f", coalesce(json_extract(l.ctx, {cache.quote_literal(_json_path(loop))}), -1)"
                   for loop in loops)
    cursor = db.execute(
        f"SELECT l.run, l.ctx, l.lvl, l.name, l.value FROM current_logs l "
        f"LEFT JOIN {order} o ON o.run = l.run WHERE l.name IN "
        f"({','.join('?' * len(logged))}){in_runs.replace('run IN', 'l.run IN')} "
        f"ORDER BY o.p IS NULL, o.p, l.run, l.lvl > 0{keys}, l.ctx, l.seq", logged)
    return columns, _pivoted(cursor, loops, value_columns, args)


def _pivoted(cursor: Iterable[tuple], loops: list[str], value_columns: list[str],
             args: dict[str, dict[str, Any]]) -> Iterator[tuple]:
    """The pivot's rows from (run, ctx, lvl, name, value) ordered by run, run-level
    values first, then by loop iteration and ``seq``: the last value of a name in an
    iteration (or at run level) is the one shown."""
    nothing = (None,) * len(loops)
    run, run_level, ctx, values, iterated = None, {}, None, None, False

    def made() -> tuple:
        merged = {**args.get(run, {}), **run_level, **(values or {})}
        at = nothing if values is None else tuple(map(json.loads(ctx).get, loops))
        return (run, *at, *map(merged.get, value_columns))

    for row_run, row_ctx, lvl, name, value in cursor:
        if row_run != run or (lvl and row_ctx != ctx):
            if values is not None:
                yield made()
            elif run is not None and row_run != run and not iterated:
                yield made()  # a run with only run-level values: one row
            if row_run != run:
                run, run_level, iterated = row_run, {}, False
            ctx, values = row_ctx, None
        if not lvl:
            run_level[name] = value
            continue
        if values is None:
            values, iterated = {}, True
        values[name] = value
    if values is not None or (run is not None and not iterated):
        yield made()


def _json_path(key: str) -> str:
    """The JSON path of an object's member ``key`` (``$."epoch"``)."""
    return '$."' + key.replace('"', '\\"') + '"'


def _loops(db: sqlite3.Connection, logged: list[str], in_runs: str) -> list[str]:
    """The loops of the pivot: the keys of the logged values' loop contexts, outer loops
    first (a context lists them from the outermost), in SQL."""
    with cache.unguarded(db):  # json_each; no user text here
        shapes = [json.loads(keys) for (keys,) in db.execute(
            "SELECT DISTINCT (SELECT json_group_array(key) FROM json_each(ctx)) "
            f"FROM current_logs WHERE lvl > 0 AND name IN ({','.join('?' * len(logged))})"
            f"{in_runs}", logged).fetchall()]
    shapes.sort(key=len, reverse=True)
    return list(dict.fromkeys(key for shape in shapes for key in shape))


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


@contextmanager
def _filtered(columns: list[str], rows: Iterable[tuple], where: str | None,
              sort: str | None, limit: int | None,
              newest: tuple[list[str], int] | None = None
              ) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """``--where``/``--sort``/``--limit`` applied to computed rows with SQLite's own
    semantics, in a temporary SQLite file (on disk: the rows may be many); ``newest``:
    (runs newest first, N) keeps only the rows of the N newest runs left."""
    with closing(sqlite3.connect("")) as temp:
        temp.execute(f"CREATE TABLE t ({', '.join(map(cache.quote_ident, columns))})")
        temp.executemany(f"INSERT INTO t VALUES ({','.join('?' * len(columns))})", rows)
        cache.guard(temp)
        kept = None
        if newest is not None:
            left = {run for (run,) in _user_rows(
                temp, f"SELECT DISTINCT {cache.quote_ident(columns[0])} FROM t" +
                _clauses(where, None, None), *_options(where, sort))[1]}
            runs, count = newest
            kept = set([r for r in runs if r in left][:count])
        found = _user_rows(temp, "SELECT * FROM t" + _clauses(where, sort, limit),
                           *_options(where, sort))[1]
        yield columns, (found if kept is None else (r for r in found if r[0] in kept))


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
    columns, rows = _user_rows(db, text, what, users)
    return columns, list(rows)


def _user_rows(db: sqlite3.Connection, text: str, what: str, users: str | None = None
               ) -> tuple[list[str], Iterator[tuple]]:
    """:func:`_user_sql`, its rows read as they are iterated."""
    users = text if users is None else users
    try:
        cursor = db.execute(text)
    except (sqlite3.Error, sqlite3.Warning) as e:  # Warning: e.g. two statements
        raise UserError(f"{what}: {_sql_reason(str(e), users)}") from None
    return [d[0] for d in cursor.description or ()], _user_errors(cursor, what, users)


def _user_errors(cursor: Iterable[tuple], what: str, users: str) -> Iterator[tuple]:
    """The rows of ``cursor``; an error met while reading them (SQLite reports some only
    then) as one line for the user."""
    try:
        yield from cursor
    except (sqlite3.Error, sqlite3.Warning) as e:
        raise UserError(f"{what}: {_sql_reason(str(e), users)}") from None


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
    return [one.run for one in live_runs(git)]


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
