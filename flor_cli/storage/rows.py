"""How a run's note becomes the query cache's rows (see :mod:`cache` for the tables).

One note, or a batch of many, is turned into the rows of each table (:class:`Rows`,
:func:`record_rows`) and inserted (:func:`insert`); which of a run's values are current
is marked (:func:`mark_current`, by :func:`current_sources`) and its summaries made as
its rows go in (:func:`summaries_of`) or in SQL (:func:`summarize`). Used by the cache's
sync and rebuild and by the runs still running (:mod:`live`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from functools import reduce
from itertools import groupby
from operator import add, itemgetter
from typing import Any, Iterable, Mapping

import orjson

from flor_cli.storage import notes

# The columns of a ``runs`` row, in the order of the cache's SCHEMA.
RUN_COLUMNS = ("run", "commit_id", "start", "end", "script", "branch", "head", "status",
               "exit", "argv", "kwargs", "python", "torch", "host", "user", "note")


def mark_replayed(db: sqlite3.Connection, first: int, schema: str = "main") -> None:
    """:func:`mark_current` for each run with replayed log rows from rowid ``first`` on
    (found in one scan: most runs have none)."""
    ranges = db.execute(f"SELECT run, min(rowid), max(rowid) FROM {schema}.logs NOT INDEXED "
                        "WHERE rowid >= ? GROUP BY run HAVING count(rp) > 0", (first,))
    for run, lo, hi in ranges.fetchall():
        mark_current(db, run, lo, schema, hi + 1)


def next_log_rowid(db: sqlite3.Connection, schema: str = "main") -> int:
    """Where the next run's log rows start: rows go in one run at a time."""
    return (db.execute(f"SELECT max(rowid) FROM {schema}.logs").fetchone()[0] or 0) + 1


def insert(db: sqlite3.Connection, note: notes.RunNote, with_ckpts: dict[str, list[str]],
           schema: str = "main", claimed: Mapping[str, str] | None = None,
           whole: bool = True, unsummed: list[str] | None = None) -> str:
    """The run's rows, into the tables of ``schema`` (``live``: a run still running);
    returns its id. The object digests of its checkpoints, if it took any, go to
    ``with_ckpts`` under its run id. A value SQLite cannot bind as it is (an int beyond
    64 bits, a string with a lone surrogate, a list where a number belongs) is rare: the
    first try binds everything as it is, and only a run that fails is inserted again,
    each column value made bindable (:func:`_bindable`).

    ``whole``: the note holds all the run's records (not a batch of a long one), so its
    summaries can be made from its rows (:func:`summaries_of`); the runs whose summaries
    are left to :func:`summarize` are added to ``unsummed``."""
    run = claim(db, note, schema, claimed)
    db.execute("SAVEPOINT run")
    try:
        rows = Rows()
        rows.add(note, run, lambda rows: rows, orjson.dumps, whole)
        rows.write(db, schema)
    except (OverflowError, UnicodeError, TypeError, ValueError,
            sqlite3.InterfaceError, sqlite3.ProgrammingError):
        db.execute("ROLLBACK TO run")
        rows = Rows()
        rows.add(note, run, _bindable_rows, lambda ctx: ctx_text(ctx).encode(), whole)
        rows.write(db, schema)
    db.execute("RELEASE run")
    if unsummed is not None:
        unsummed += rows.unsummed
    add_digests(with_ckpts, rows.ckpts)  # extended: a long note comes a batch at a time
    return run


def _bindable_rows(rows: Iterable[tuple]) -> list[tuple]:
    return [tuple(map(_bindable, row)) for row in rows]


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _bindable(value: Any) -> Any:
    """A column value SQLite takes, readable: an int beyond 64 bits as its decimal text,
    a lone surrogate spelled ``\\udc80``, anything but a scalar as JSON text."""
    if value is None or type(value) in (float, bool):
        return value
    if type(value) is int:
        return value if _INT64[0] <= value <= _INT64[1] else text_of_int(value)
    if type(value) is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return _bindable(json.dumps(value) if isinstance(value, (list, dict)) else str(value))


def text_of_int(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than Python writes in decimal
        return hex(value)


def claim(db: sqlite3.Connection, note: notes.RunNote, schema: str = "main",
          claimed: Mapping[str, str] | None = None, known: bool = False) -> str:
    """The id the note's rows go under: its run id, unless another shadow commit's run
    holds it already (a pulled note reusing a local id, by accident or not): in the
    table, or in ``claimed`` (run id -> commit: a batch's runs not inserted yet, and the
    runs of the notes a sync is replacing). The run that was there keeps it; the
    newcomer is ``<run>@<its commit>``, with a warning. ``known``: ``claimed`` holds
    every run in the table (no query)."""
    run = note.run
    held = (claimed[run],) if claimed and run in claimed else None if known else db.execute(
        f"SELECT commit_id FROM {schema}.runs WHERE run=?", (run,)).fetchone()
    if held is None or held[0] == note.commit:
        return run
    return alias(run, note.commit, held[0])


def alias(run: str, commit: str, holder: str) -> str:
    """The id of commit ``commit``'s run, whose id ``run`` the run of ``holder`` has."""
    renamed = f"{run}@{commit[:10]}"
    notes.warn(f"the note of commit {commit[:10]} claims run id {run}, which is "
               f"the run of commit {holder[:10]}: it is listed as {renamed}")
    return renamed


class Rows:
    """The rows of one or more runs' notes, by table, in note order, and how they go in."""

    def __init__(self) -> None:
        self.runs: list[tuple] = []
        self.removed: list[tuple] = []
        self.tags: list[tuple] = []
        self.args: list[tuple] = []
        self.logs: list[tuple] = []
        self.timings: list[tuple] = []
        self.ckpts: list[tuple] = []
        self.replays: list[tuple] = []
        self.summaries: list[tuple] = []
        self.unsummed: list[str] = []  # runs whose summaries are left to summarize()
        self.names: set[tuple[str, str]] = set()

    def add(self, note: notes.RunNote, run: str, bind, dumps, whole: bool = True) -> None:
        """A removed run is only listed in ``removed``: no reader sees it. ``whole``:
        see :func:`insert`."""
        h, state = note.header, notes.lifecycle(note)
        if state.removed is not None:
            self.removed += bind([(run, note.commit, state.removed, int(state.purged))])
            return
        self.runs += bind([(
            run, note.commit, h.get("start"), h.get("end"), h.get("script"), h.get("branch"),
            h.get("head"), h.get("status"), h.get("exit"), json.dumps(h.get("argv", [])),
            json.dumps(h.get("kwargs", {})), h.get("python"), h.get("torch"), h.get("host"),
            h.get("user"), state.annotation)])
        self.tags += bind([(run, tag) for tag in state.tags])
        logs, args, timings, ckpts = map(bind, record_rows(run, note.records, dumps))
        self.logs += logs
        self.args += args
        self.timings += timings
        self.ckpts += ckpts
        self.replays += bind([
            (run, rp.get(notes.REPLAY_ID), json.dumps(rp.get("names")), rp.get("mode"),
             rp.get("start"), rp.get("end"), rp.get("status")) for rp in note.replays])
        if whole and not _replayed(logs):
            self.summaries += summaries_of(run, logs)
        elif logs or not whole:
            self.unsummed.append(run)
        levels = set(zip(map(_NAME, logs), map(_LEVEL, logs)))  # in C: a few distinct pairs
        self.names.update((name, "arg") for _, name, _ in args)
        self.names.update((name, "loop" if lvl else "run") for name, lvl in levels)

    def write(self, db: sqlite3.Connection, schema: str = "main") -> None:
        db.executemany(f"INSERT OR REPLACE INTO {schema}.removed VALUES (?,?,?,?)",
                       self.removed)
        db.executemany(f"INSERT OR REPLACE INTO {schema}.runs "
                       f"VALUES ({','.join('?' * len(RUN_COLUMNS))})", self.runs)
        db.executemany(f"INSERT OR IGNORE INTO {schema}.tags VALUES (?,?)", self.tags)
        db.executemany(f"INSERT OR REPLACE INTO {schema}.args VALUES (?,?,?)", self.args)
        for size, group in groupby(self.logs, len):  # consecutive rows of a shape, in order
            db.executemany(LOG_INSERT[size].format(schema=schema), group)
        db.executemany(f"INSERT INTO {schema}.timings VALUES (?,?,?,?,?)", self.timings)
        db.executemany(f"INSERT INTO {schema}.checkpoints VALUES (?,?,?,?,?,?)", self.ckpts)
        db.executemany(f"INSERT INTO {schema}.replays VALUES (?,?,?,?,?,?,?)", self.replays)
        db.executemany(f"INSERT INTO {schema}.summaries VALUES (?,?,?,?,?,?,?,?,?)",
                       self.summaries)
        db.executemany(f"INSERT OR IGNORE INTO {schema}.names VALUES (?,?)",
                       sorted(self.names))


def record_rows(run: str, records: list[dict], dumps=orjson.dumps
                ) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
    """The logs, args, timings and checkpoints rows of one run's records.

    The hot loop of a rebuild (a million records). A log row without a replay id or a
    type (nearly all of them) is a 6-tuple whose missing columns are NULL literals in its
    INSERT: binding ``None`` from Python costs an adapter lookup per value, which was a
    third of the insert time.
    """
    logs: list[tuple] = []
    args: list[tuple] = []
    timings: list[tuple] = []
    ckpts: list[tuple] = []
    append = logs.append
    plain, text_of = _PLAIN, ctx_text
    # the record keys as locals: a global lookup each would add a tenth to the loop
    kind_, seq_, name_, value_, ctx_, rp_, ty_ = (notes.KIND, notes.SEQ, notes.NAME,
                                                  notes.VALUE, notes.CTX, notes.REPLAY_ID,
                                                  notes.VALUE_TYPE)
    log_, arg_, time_, ckpt_ = notes.LOG, notes.ARG, notes.TIME, notes.CKPT
    for r in records:
        t = r[kind_]
        if t == log_:
            ctx = r.get(ctx_) or {}
            value = r.get(value_)
            if type(value) not in plain:
                value = sql_value(value)
            rp, ty = r.get(rp_), r.get(ty_)
            if rp is None and ty is None:  # ctx_text inlined: a call per record is 10 %
                append((run, r.get(seq_), value, r[name_], dumps(ctx).decode(), len(ctx)))
            else:
                append((run, rp, r.get(seq_), r[name_], value, ty, text_of(ctx), len(ctx)))
        elif t == arg_:
            args.append((run, r[name_], sql_value(r.get(value_))))
        elif t == time_:
            timings.append((run, r.get(notes.TIMING), text_of(r.get(ctx_) or {}),
                            r.get(notes.ORDINAL), r.get(notes.SECONDS)))
        elif t == ckpt_:
            ckpts.append((run, text_of(r.get(ctx_) or {}), r.get(notes.ORDINAL),
                          json.dumps(r.get(notes.OBJECTS)), r.get(notes.BYTES),
                          r.get(notes.SECONDS)))
    return logs, args, timings, ckpts


_PLAIN = frozenset((float, int, str, type(None)))
# By tuple length: (run, s, value, name, ctx, lvl) and (run, rp, s, name, value, ty, ctx, lvl).
# Every row goes in current (cur = 1); mark_current then marks what a replay replaced.
LOG_INSERT = {6: "INSERT INTO {schema}.logs VALUES (?1,NULL,?2,?4,?3,NULL,?5,?6,1)",
              8: "INSERT INTO {schema}.logs VALUES (?,?,?,?,?,?,?,?,1)"}
_NAME, _LEVEL = itemgetter(3), itemgetter(-1)  # of both shapes of log rows
_VALUE_OF_SHORT = itemgetter(2)  # the value of a 6-tuple log row


def _replayed(logs: list[tuple]) -> bool:
    """Whether any of one run's log rows came from a replay (only 8-tuples can)."""
    return bool(logs) and max(map(len, logs)) == 8 and any(
        row[1] is not None for row in logs if len(row) == 8)


def summaries_of(run: str, logs: list[tuple]) -> list[tuple]:
    """The ``summaries`` rows of a run none of whose values were replayed (so every row
    is current), from its log rows as they are bound: what :func:`summarize` computes
    in SQL, without reading the rows back (at 100,000 runs that was a sixth of a
    rebuild). The rows are in ``seq`` order (a note's records are sorted on it), so a
    name's first and last values are its first and last rows.
    """
    summaries = []
    for name, group in groupby(sorted(logs, key=_NAME), _NAME):  # a stable sort
        rows = list(group)
        values = (list(map(_VALUE_OF_SHORT, rows)) if max(map(len, rows)) == 6
                  else [row[2] if len(row) == 6 else row[4] for row in rows])
        summaries.append((run, name, max(map(_LEVEL, rows)), len(rows), *summary(values)))
    return summaries


def summary(values: list) -> tuple:
    """(first, last, min, max, mean) of one name's values in ``seq`` order, as SQLite
    keeps, compares and averages them (:func:`summarize`): NaN is stored as NULL and a
    bool as an integer; min and max skip NULLs and put numbers before text; the mean is
    of the numbers alone, their plain sum in order over their count (SQLite's avg)."""
    kinds = set(map(type, values))
    if kinds <= _NUMBERS and not (float in kinds and any(map(math.isnan, values))):
        return values[0], values[-1], min(values), max(values), _sum(values) / len(values)
    stored = [None if v is None or (type(v) is float and math.isnan(v))
              else int(v) if type(v) is bool else v for v in values]
    numbers = [v for v in stored if type(v) in _NUMBERS]
    texts = [v for v in stored if v is not None and type(v) not in _NUMBERS]
    return (stored[0], stored[-1],
            min(numbers) if numbers else min(texts, default=None),
            max(texts) if texts else max(numbers, default=None),
            _sum(numbers) / len(numbers) if numbers else None)


def _sum(numbers: list) -> float:
    """Their sum as SQLite's avg adds: one double, each number added in turn. Not the
    builtin sum, which from Python 3.12 compensates the rounding of float additions
    (flor runs on 3.11 and later) and would give a mean SQL does not."""
    return reduce(add, numbers, 0.0)


_NUMBERS = frozenset((int, float))


def current_sources(replays: list[dict], written: set[tuple[str, str]]) -> dict[str, str]:
    """Which replay's values of each name are current in one run: the rule behind
    ``current_logs``, "one value per (run, name)".

    ``written`` holds the (name, replay id) pairs of the run's replayed log records. The
    newest replay (by its header's start time, then its id) that wrote a name wins; a
    name that no replay wrote is absent, and its recorded values are current. Replayed
    records without a replay header (a note edited by hand) rank by id alone, first.
    """
    rank = {r.get("rp"): (r.get("start") or 0, r.get("rp")) for r in replays}
    newest: dict[str, tuple] = {}
    for name, rp in written:
        key = rank.get(rp, (0, rp))
        if name not in newest or key > newest[name]:
            newest[name] = key
    return {name: key[1] for name, key in newest.items()}


def mark_current(db: sqlite3.Connection, run: str, first: int, schema: str = "main",
                 end: int | None = None) -> None:
    """Mark which of a just-inserted run's log rows (rowids ``first`` to ``end``, or on)
    are current, by :func:`current_sources`: only a run with replayed values has any to
    mark. NOT INDEXED: SQLite would read the ``logs`` indexes (every row of a name, at
    100,000 runs 0.05 s a name and run) where the rowid range holds a run's rows."""
    span, bounds = (("rowid >= ? AND rowid < ?", (first, end)) if end
                    else ("rowid >= ?", (first,)))
    written = set(db.execute(f"SELECT DISTINCT name, rp FROM {schema}.logs NOT INDEXED "
                             f"WHERE {span} AND rp IS NOT NULL", bounds))
    if not written:
        return
    replays = [{notes.REPLAY_ID: rp, "start": start} for rp, start in db.execute(
        f"SELECT rp, start FROM {schema}.replays WHERE run=?", (run,))]
    for name, rp in current_sources(replays, written).items():
        db.execute(f"UPDATE {schema}.logs NOT INDEXED SET cur = (rp IS ?) "
                   f"WHERE {span} AND name = ?",
                   (rp, *bounds, name))


def summarize(db: sqlite3.Connection, runs: Iterable[str], schema: str = "main") -> None:
    """(Re)write the ``summaries`` of ``runs`` from ``current_logs``, in SQL: for the runs
    with replayed values (which rows are current is known in SQL) and the long ones
    (read back a batch at a time); the others' are made as they go in (:func:`summary`).

    Within one (run, name) every current value comes from one source (the recorded run
    or one replay), so ``seq`` orders them: first and last are the lowest and highest.
    """
    runs = list(dict.fromkeys(runs))
    for at in range(0, len(runs), _MAX_PARAMS):  # SQLite binds at most 32,766 at once
        _summarize(db, tuple(runs[at:at + _MAX_PARAMS]), schema)


_MAX_PARAMS = 10_000


def _summarize(db: sqlite3.Connection, params: tuple[str, ...], schema: str) -> None:
    marks = ",".join("?" * len(params))
    db.execute(f"DELETE FROM {schema}.summaries WHERE run IN ({marks})", params)
    db.execute(f"""INSERT INTO {schema}.summaries
        SELECT g.run, g.name, g.lvl, g.n,
          (SELECT f.value FROM {schema}.current_logs f WHERE f.name=g.name AND f.run=g.run
           ORDER BY f.seq LIMIT 1),
          (SELECT f.value FROM {schema}.current_logs f WHERE f.name=g.name AND f.run=g.run
           ORDER BY f.seq DESC LIMIT 1),
          g.lo, g.hi, g.mean
        FROM (SELECT run, name, max(lvl) AS lvl, count(*) AS n, min(value) AS lo,
                     max(value) AS hi,
                     avg(CASE WHEN typeof(value) IN ('integer', 'real') THEN value END) AS mean
              FROM {schema}.current_logs WHERE run IN ({marks}) GROUP BY name, run) g""",
               params)


def add_digests(with_ckpts: dict[str, list[str]], checkpoints: Iterable[tuple]) -> None:
    """Add the object digests of ``checkpoints`` rows (run, ctx, ordinal, objs, ...) to
    ``with_ckpts`` under their runs."""
    for run, _, _, objs, *_ in checkpoints:
        with_ckpts.setdefault(run, []).extend(digests(objs))


def digests(objs: str | None) -> list[str]:
    """The object digests in a ``checkpoints.objs`` (JSON: object name -> {"sha": ...})."""
    infos = json.loads(objs) if objs else None
    if not isinstance(infos, dict):
        return []
    return [info["sha"] for info in infos.values()
            if isinstance(info, dict) and isinstance(info.get("sha"), str)]


def ctx_text(ctx: Any) -> str:
    """Canonical text of a loop context, so equal contexts compare equal in SQL.

    orjson's compact JSON (non-ASCII kept as UTF-8): a third of the cost of ``json.dumps``
    on a million records. Both the rebuild and the incremental sync write it.
    """
    try:
        return orjson.dumps(ctx).decode()
    except TypeError:  # what orjson refuses (an int beyond 64 bits, a lone surrogate)
        return json.dumps(ctx, separators=(",", ":"))


def sql_value(value: Any) -> Any:
    """JSON scalars stay native (so ``--where "lr < 1e-3"`` compares numbers); the rest is JSON text."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    return json.dumps(value)
