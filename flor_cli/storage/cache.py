"""The query cache: ``.git/flor/cache.db``, SQLite in WAL mode, derived from the notes.

Notes are the source of truth; this file is an index over them that can be deleted at
any time. ``sync`` brings it up to date incrementally: it remembers the notes commit it
last read and diffs that commit's tree against the current one, so only the notes that
changed since (usually one new run) are parsed again.

Tables (documented for ``flor query``):

* ``runs``         one row per run: run, commit_id, start, end, script, branch, head,
                   status, exit, argv, kwargs, python, torch, host, user
* ``args``         run, name, value: what ``flor.arg`` resolved
* ``logs``         run, rp (replay id or NULL), seq, name, value, type, ctx (JSON loop
                   context), lvl (number of enclosing loops; 0 = run-level)
* ``timings``      run, kind (prefix/outer/nested/suffix), ctx, ordinal, sec
* ``checkpoints``  run, ctx, ordinal, objs (JSON), bytes, sec
* ``replays``      run, rp, names, mode, start, end, status
* ``names``        name, kind ('arg', 'run' for run-level values, 'loop' for loop-level)
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from flor_cli.storage import notes
from flor_cli.storage.git import NOTES_REF, Git

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(run TEXT PRIMARY KEY, commit_id TEXT, start REAL, end REAL,
  script TEXT, branch TEXT, head TEXT, status TEXT, exit INTEGER, argv TEXT, kwargs TEXT,
  python TEXT, torch TEXT, host TEXT, user TEXT);
CREATE INDEX IF NOT EXISTS runs_commit ON runs(commit_id);
CREATE TABLE IF NOT EXISTS args(run TEXT, name TEXT, value, PRIMARY KEY(run, name));
CREATE TABLE IF NOT EXISTS logs(run TEXT, rp TEXT, seq INTEGER, name TEXT, value, type TEXT,
  ctx TEXT, lvl INTEGER);
CREATE TABLE IF NOT EXISTS timings(run TEXT, kind TEXT, ctx TEXT, ordinal INTEGER, sec REAL);
CREATE INDEX IF NOT EXISTS timings_run ON timings(run);
CREATE TABLE IF NOT EXISTS checkpoints(run TEXT, ctx TEXT, ordinal INTEGER, objs TEXT,
  bytes INTEGER, sec REAL);
CREATE INDEX IF NOT EXISTS checkpoints_run ON checkpoints(run);
CREATE TABLE IF NOT EXISTS replays(run TEXT, rp TEXT, names TEXT, mode TEXT, start REAL,
  end REAL, status TEXT);
CREATE TABLE IF NOT EXISTS names(name TEXT, kind TEXT, PRIMARY KEY(name, kind));
"""
# Kept apart from SCHEMA: a full rebuild drops them and builds them once at the end, which
# is several times faster than maintaining them across a million inserts.
LOG_INDEXES = {"logs_name": "logs(name, run)", "logs_run": "logs(run)"}
RUN_COLUMNS = ("run", "commit_id", "start", "end", "script", "branch", "head", "status",
               "exit", "argv", "kwargs", "python", "torch", "host", "user")
_PER_RUN_TABLES = ("runs", "args", "logs", "timings", "checkpoints", "replays")


def path_of(git: Git) -> Path:
    return git.flor_dir / "cache.db"


def connect(git: Git) -> sqlite3.Connection:
    """A synced, writable connection (for flor itself; users get :func:`readonly`)."""
    from flor_cli.storage import journal

    journal.fold_orphans(git)
    path = path_of(git)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if _schema_version(db) != SCHEMA_VERSION:
        db.close()
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    _create_log_indexes(db)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    sync(git, db)
    return db


def _schema_version(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else None


def sync(git: Git, db: sqlite3.Connection) -> int:
    """Apply the notes changed since the last sync; returns how many notes were read."""
    tip = git.ref(NOTES_REF)
    db.execute("BEGIN IMMEDIATE")  # one syncer at a time; the others see its result
    try:
        row = db.execute("SELECT value FROM meta WHERE key='notes'").fetchone()
        last = row[0] if row else None
        if tip == last:
            db.execute("COMMIT")
            return 0
        try:
            changes = list(git.changed_notes(last, tip))
        except KeyError:  # the old notes commit is gone (gc after a rewrite): rebuild
            for table in _PER_RUN_TABLES:
                db.execute(f"DELETE FROM {table}")
            changes, last = list(git.changed_notes(None, tip)), None
        rebuild = last is None and len(changes) > 1
        if rebuild:
            for index in LOG_INDEXES:
                db.execute(f"DROP INDEX IF EXISTS {index}")
        ctx_texts: dict[tuple, str] = {}  # a few distinct loop contexts, a million records
        for annotated, blob in changes:
            _forget_commit(db, annotated)
            if blob is not None:
                note = notes.parse(annotated, git.blob_text(blob))
                if note is not None:
                    _insert(db, note, ctx_texts)
        if rebuild:
            _create_log_indexes(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('notes', ?)", (tip,))
        db.execute("COMMIT")
        return len(changes)
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _create_log_indexes(db: sqlite3.Connection) -> None:
    for index, on in LOG_INDEXES.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {on}")


def _forget_commit(db: sqlite3.Connection, commit: str) -> None:
    for (run,) in db.execute("SELECT run FROM runs WHERE commit_id=?", (commit,)).fetchall():
        for table in _PER_RUN_TABLES:
            db.execute(f"DELETE FROM {table} WHERE run=?", (run,))


def _insert(db: sqlite3.Connection, note: notes.RunNote, ctx_texts: dict[tuple, str]) -> None:
    h, run = note.header, note.run
    db.execute(f"INSERT OR REPLACE INTO runs VALUES ({','.join('?' * len(RUN_COLUMNS))})", (
        run, note.commit, h.get("start"), h.get("end"), h.get("script"), h.get("branch"),
        h.get("head"), h.get("status"), h.get("exit"), json.dumps(h.get("argv", [])),
        json.dumps(h.get("kwargs", {})), h.get("python"), h.get("torch"), h.get("host"),
        h.get("user")))
    args, logs, timings, ckpts = [], [], [], []
    kinds: set[tuple[str, str]] = set()

    def text_of(ctx: dict) -> str:
        """ctx_text, memoized: a million records share a few thousand loop contexts."""
        key = tuple(ctx.items())
        try:
            text = ctx_texts.get(key)
        except TypeError:  # not a loop context flor wrote (unhashable values)
            return ctx_text(ctx)
        if text is None:
            if len(ctx_texts) > 100_000:
                ctx_texts.clear()
            text = ctx_texts[key] = ctx_text(ctx)
        return text

    for r in note.records:
        t = r.get("t")
        if t == "log":
            ctx = r.get("c") or {}
            logs.append((run, r.get("rp"), r.get("s"), r["n"], sql_value(r.get("v")),
                         r.get("ty"), text_of(ctx), len(ctx)))
        elif t == "arg":
            args.append((run, r["n"], sql_value(r.get("v"))))
            kinds.add((r["n"], "arg"))
        elif t == "time":
            timings.append((run, r.get("k"), text_of(r.get("c") or {}), r.get("i"), r.get("sec")))
        elif t == "ckpt":
            ckpts.append((run, text_of(r.get("c") or {}), r.get("i"), json.dumps(r.get("objs")),
                          r.get("bytes"), r.get("sec")))
    kinds.update((name, "loop" if lvl else "run") for _, _, _, name, _, _, _, lvl in logs)
    db.executemany("INSERT OR REPLACE INTO args VALUES (?,?,?)", args)
    db.executemany("INSERT INTO logs VALUES (?,?,?,?,?,?,?,?)", logs)
    db.executemany("INSERT INTO timings VALUES (?,?,?,?,?)", timings)
    db.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?,?)", ckpts)
    db.executemany("INSERT INTO replays VALUES (?,?,?,?,?,?,?)", [
        (run, rp.get("rp"), json.dumps(rp.get("names")), rp.get("mode"), rp.get("start"),
         rp.get("end"), rp.get("status")) for rp in note.replays])
    db.executemany("INSERT OR IGNORE INTO names VALUES (?,?)", sorted(kinds))


def ctx_text(ctx: dict) -> str:
    """Canonical text of a loop context, so equal contexts compare equal in SQL."""
    return json.dumps(ctx, separators=(",", ":"))


def sql_value(value: Any) -> Any:
    """JSON scalars stay native (so ``--where "lr < 1e-3"`` compares numbers); the rest is JSON text."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    return json.dumps(value)


def readonly(git: Git) -> sqlite3.Connection:
    """A connection for user SQL: synced first, then opened read-only and guarded."""
    connect(git).close()
    db = sqlite3.connect(f"file:{path_of(git)}?mode=ro", uri=True, timeout=30)
    create_runs_view(db)
    guard(db)
    return db


def guard(db: sqlite3.Connection) -> None:
    """Refuse anything but reading, whatever SQL the user wrote."""
    db.execute("PRAGMA query_only=ON")
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
               sqlite3.SQLITE_RECURSIVE}

    def authorize(action: int, *_: Any) -> int:
        return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY

    db.set_authorizer(authorize)


def names_of(db: sqlite3.Connection, kind: str) -> list[str]:
    return [n for (n,) in db.execute("SELECT name FROM names WHERE kind=? ORDER BY name", (kind,))]


RUNS_FIXED = ("run", "time", "script", "branch", "status")


def create_runs_view(db: sqlite3.Connection) -> list[str]:
    """TEMP VIEW ``runs_wide``: the columns of ``flor log`` (fixed, args, run-level values).

    A view per connection, because its columns depend on which names have been logged.
    """
    columns = list(RUNS_FIXED)
    selects = ["r.run", "datetime(r.start, 'unixepoch', 'localtime') AS time", "r.script",
               "r.branch", "r.status"]
    for kind, table_sql in (
        ("arg", "(SELECT value FROM args a WHERE a.run=r.run AND a.name={q})"),
        ("run", "(SELECT value FROM logs l WHERE l.name={q} AND l.run=r.run AND l.lvl=0 "
                "ORDER BY l.rp IS NOT NULL, l.seq DESC LIMIT 1)"),
    ):
        for name in names_of(db, kind):
            if name in columns:
                continue
            columns.append(name)
            selects.append(f"{table_sql.format(q=quote_literal(name))} AS {quote_ident(name)}")
    db.execute("DROP VIEW IF EXISTS temp.runs_wide")
    db.execute(f"CREATE TEMP VIEW runs_wide AS SELECT {', '.join(selects)} FROM runs r")
    return columns


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rows(db: sqlite3.Connection, sql: str, params: Iterable = ()) -> tuple[list[str], list[tuple]]:
    cur = db.execute(sql, tuple(params))
    return [d[0] for d in cur.description or ()], cur.fetchall()
