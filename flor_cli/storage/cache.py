"""The query cache: ``.git/flor/cache.db``, SQLite in WAL mode, derived from the notes.

Notes are the source of truth; this file is an index over them that can be deleted at
any time. ``sync`` brings it up to date incrementally: it remembers the notes commit it
last read and diffs that commit's tree against the current one, so only the notes that
changed since (usually one new run) are parsed again.

Tables (documented for ``flor query``):

* ``runs``         one row per run: run, commit_id, start, end, script, branch, head,
                   status, exit, argv, kwargs, python, torch, host, user, note (the
                   run's annotation); removed runs are not here, nor anywhere else but
* ``removed``      run, commit_id, at (when it was removed), purged (its objects collected)
* ``tags``         run, tag: ``flor tag`` and ``flor run --name``
* ``args``         run, name, value: what ``flor.arg`` resolved
* ``logs``         run, rp (replay id or NULL), seq, name, value, type, ctx (JSON loop
                   context), lvl (number of enclosing loops; 0 = run-level), cur (1 when
                   the row is one of its (run, name)'s current values, see below)
* ``current_logs`` VIEW: the current values only. What every reader reads (``flor log``,
                   ``--pivot``, ``flor check``, ``flor.dataframe``): one answer per
                   (run, name). The rule (:func:`rows.current_sources`): the newest replay
                   that wrote a name replaces earlier replays' and the recorded values
                   of that name for that run; names no replay wrote keep the recorded
                   values. The note keeps every value (the history).
* ``summaries``    run, name, lvl, n, first, last, min, max, mean: each (run, name)'s
                   current values summed up (from ``current_logs``), for the runs table

* ``timings``      run, kind (prefix/outer/nested/suffix), ctx, ordinal, sec
* ``checkpoints``  run, ctx, ordinal, objs (JSON), bytes, sec
* ``replays``      run, rp, names, mode, start, end, status
* ``names``        name, kind ('arg', 'run' for run-level values, 'loop' for loop-level)
* ``availability`` run, missing, unshared: for each run that took checkpoints, how many of
                   their objects are in no store this clone reads (0: a memoized replay is
                   possible here), and how many are only in the local store while a
                   shared one is configured (``flor push`` copies those)

Availability is the one thing here that is not derived from notes alone: it is checked
against the stores when a run's note enters the cache (a stat per object, or one listing
per fan-out directory when a rebuild checks many), again for every run when the stores
configured change, for the runs still missing objects after ``flor pull``, and by whoever
removes objects (:func:`refresh_availability`). Reads never touch the stores.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import ChainMap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import orjson

from flor_cli import progress
from flor_cli.cores import usable_cores
from flor_cli.storage import notes
from flor_cli.storage.git import NOTES_REF, Git
from flor_cli.storage.locks import exclusive
from flor_cli.storage.objects import ObjectStore, stores
from flor_cli.storage.rows import (Rows, add_digests, alias, claim, insert, mark_current,
                                   mark_replayed, next_log_rowid, summarize)

SCHEMA_VERSION = "5"  # 2: ctx by orjson (non-ASCII as UTF-8); 3: availability; 4: current
# values (logs.cur, current_logs, summaries) and lifecycle (runs.note, removed, tags);
# 5: summaries clustered by run, runs_start covering (flor log at 100,000 runs)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(run TEXT PRIMARY KEY, commit_id TEXT, start REAL, end REAL,
  script TEXT, branch TEXT, head TEXT, status TEXT, exit INTEGER, argv TEXT, kwargs TEXT,
  python TEXT, torch TEXT, host TEXT, user TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS removed(run TEXT PRIMARY KEY, commit_id TEXT, at REAL, purged INTEGER);
CREATE TABLE IF NOT EXISTS tags(run TEXT, tag TEXT, PRIMARY KEY(run, tag));
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag);
CREATE INDEX IF NOT EXISTS runs_commit ON runs(commit_id);
CREATE INDEX IF NOT EXISTS runs_start ON runs(start, run, script, branch, status);
CREATE TABLE IF NOT EXISTS args(run TEXT, name TEXT, value, PRIMARY KEY(run, name));
CREATE TABLE IF NOT EXISTS logs(run TEXT, rp TEXT, seq INTEGER, name TEXT, value, type TEXT,
  ctx TEXT, lvl INTEGER, cur INTEGER);
CREATE VIEW IF NOT EXISTS current_logs AS
  SELECT run, rp, seq, name, value, type, ctx, lvl FROM logs WHERE cur;
CREATE TABLE IF NOT EXISTS summaries(run TEXT, name TEXT, lvl INTEGER, n INTEGER, first, last,
  min, max, mean REAL, PRIMARY KEY(run, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timings(run TEXT, kind TEXT, ctx TEXT, ordinal INTEGER, sec REAL);
CREATE TABLE IF NOT EXISTS checkpoints(run TEXT, ctx TEXT, ordinal INTEGER, objs TEXT,
  bytes INTEGER, sec REAL);
CREATE TABLE IF NOT EXISTS replays(run TEXT, rp TEXT, names TEXT, mode TEXT, start REAL,
  end REAL, status TEXT);
CREATE TABLE IF NOT EXISTS names(name TEXT, kind TEXT, PRIMARY KEY(name, kind));
CREATE TABLE IF NOT EXISTS availability(run TEXT PRIMARY KEY, missing INTEGER,
  unshared INTEGER) WITHOUT ROWID;
"""
# Kept apart from SCHEMA: a full rebuild drops them and builds them once at the end, which
# is several times faster than maintaining them across a million inserts (and lets the
# helper's rows be merged as they are, without decoding them).
BULK_INDEXES = {"logs_name": "logs(name, run, seq)", "logs_run": "logs(run)",
                "timings_run": "timings(run)", "checkpoints_run": "checkpoints(run)"}
_PER_RUN_TABLES = ("runs", "args", "logs", "timings", "checkpoints", "replays",
                   "availability", "summaries", "tags", "removed")


def path_of(git: Git) -> Path:
    return git.flor_dir / "cache.db"


@contextmanager
def connection(git: Git, readonly: bool = False, aggs: dict[str, str] | None = None,
               default: str = "last") -> Iterator[sqlite3.Connection]:
    """``with cache.connection(git) as db``: a synced connection, closed after the block;
    ``readonly``: for reading and the user's SQL (see :func:`open_readonly`, which
    ``aggs`` and ``default`` go to).

    Reading the cache never folds orphaned journals (a crashed run's records): that
    write is a step of its own, ``journal.fold_orphans``, which read commands take
    before they read (see commands/).
    """
    db = open_readonly(git, aggs, default) if readonly else connect(git)
    try:
        yield db
    finally:
        db.close()


def connect(git: Git) -> sqlite3.Connection:
    """A synced, writable connection (for flor itself; users get :func:`readonly`).
    The caller closes it; :func:`connection` does that."""
    path = path_of(git)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(git, path)
    except sqlite3.DatabaseError as e:
        if not damaged(e):
            raise
        notes.warn(f"the query cache {path} is damaged ({e}); rebuilding it from the notes")
        _remove(path)
        return _connect(git, path)


def damaged(error: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not a database or is corrupt (truncated, random
    bytes): the cache is derived from the notes, so it is rebuilt, never repaired."""
    name = getattr(error, "sqlite_errorname", "") or ""
    return name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT")


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):  # a stale WAL must not meet the new file
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _connect(git: Git, path: Path) -> sqlite3.Connection:
    _build_if_absent(git, path)
    db = _open(path)
    try:
        if _schema_version(db) != SCHEMA_VERSION:
            db.close()
            _remove(path)
            _build_if_absent(git, path)
            db = _open(path)
        db.executescript(SCHEMA)
        _create_bulk_indexes(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        sync(git, db)
    except BaseException:
        db.close()
        raise
    return db


def _build_if_absent(git: Git, path: Path) -> None:
    """Build a missing cache in a file of its own, without a journal, and rename it into
    place. Built in place, in WAL mode, every page of a rebuild was written twice (to the
    WAL, then to the file): 900 MB more at 100,000 runs. One process builds; the others
    wait for it (``cache.lock``) and then read its file. A build that fails leaves none."""
    if path.exists():
        return
    with exclusive(path.with_name("cache.lock")):
        if path.exists():
            return  # built meanwhile
        for stale in path.parent.glob("cache-new-*.db"):  # a killed build's; none runs now
            stale.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(prefix="cache-new-", suffix=".db", dir=path.parent)
        os.close(fd)
        try:
            db = sqlite3.connect(name, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=OFF")  # a failed build is thrown away
                db.executescript(SCHEMA)
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                sync(git, db)
                db.execute("PRAGMA journal_mode=WAL")  # as _open keeps it (in its header)
            finally:
                db.close()
            _remove(path)  # a stale WAL must not meet the new file
            os.replace(name, path)
        finally:
            Path(name).unlink(missing_ok=True)


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
    return db


# Pages the WAL may grow to before a commit copies them into the file (SQLite's default:
# 1,000). A sync of 1,000 runs into 100,000 dirties ~2,000 pages, so with the default
# each such sync paid a checkpoint and its two fsyncs (0.4 s of ~1.2 s); pages written
# by several syncs are now copied once, and fsynced once per 64 MiB.
WAL_PAGES = 16_384


def _schema_version(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.OperationalError:  # no such table: not a flor cache (yet)
        return None
    return row[0] if row else None


def sync(git: Git, db: sqlite3.Connection) -> int:
    """Apply the notes changed since the last sync; returns how many notes were read."""
    tip = git.ref(NOTES_REF)
    # An empty cache is about to be rebuilt: no fsync of the 100+ MB that commits (0.8 s).
    # The cache is derived; one damaged by a power cut is rebuilt or can be deleted. The
    # safety level cannot change inside a transaction, hence before it.
    fresh = _last_notes(db) is None
    if fresh:
        db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN IMMEDIATE")  # one syncer at a time; the others see its result
    try:
        last = _last_notes(db)
        if tip == last:
            _check_stores(git, db)
            db.execute("COMMIT")
            return 0
        try:
            changes = list(git.changed_notes(last, tip))
        except KeyError:  # the old notes commit is gone (gc after a rewrite): rebuild
            changes, last = list(git.changed_notes(None, tip)), None
        attached = last is None and _rebuild(git, db, changes)
        if last is not None:  # e.g. after a pull: a bar when there is much to read
            added: dict[str, list[str]] = {}
            with _gc_paused(), progress.bar(len(changes), "updating the cache",
                                            unit="run") as bar:
                held: dict[str, str] = {}  # their runs keep their ids (see claim)
                for annotated, _ in changes:
                    held.update(_forget_commit(db, annotated))
                unsummed = _insert_notes(git, db, _ticking(changes, bar), added, held)
            _record_availability(git, db, added)
            summarize(db, unsummed)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('notes', ?)", (tip,))
        _check_stores(git, db)
        db.execute("COMMIT")
        if attached:
            db.execute("DETACH DATABASE part")
        return len(changes)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        if fresh:
            db.execute("PRAGMA synchronous=NORMAL")


def _last_notes(db: sqlite3.Connection) -> str | None:
    """The notes commit the cache was last synced to."""
    row = db.execute("SELECT value FROM meta WHERE key='notes'").fetchone()
    return row[0] if row else None


def _rebuild(git: Git, db: sqlite3.Connection, changes: list[tuple[str, str | None]]) -> bool:
    """Fill the emptied tables from every note, inside the caller's transaction.

    A million records: the ``logs`` indexes are built once at the end (several times
    faster than maintaining them across the inserts), the page cache is
    large (bounded: :data:`_REBUILD_CACHE_KIB`), and the cyclic garbage collector, which would
    traverse the decoded records again and again, is paused. When there is enough to
    do, a :class:`_Helper` process builds the second half of the notes on the other
    core. Returns whether the helper's file is attached (detach it after the commit).
    """
    for table in _PER_RUN_TABLES:  # empty but for a sync that never committed: make sure
        db.execute(f"DELETE FROM {table}")
    for stale in git.flor_dir.glob("cache-part-*.db"):  # a killed rebuild's helper file;
        stale.unlink(missing_ok=True)  # no other rebuild runs: this one holds the lock
    for index in BULK_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {index}")
    db.execute(f"PRAGMA cache_size=-{_REBUILD_CACHE_KIB}")
    mean = sum(note_bytes(git, key) for _, key in changes[:_SAMPLE]) / _SAMPLE
    half = len(changes) // 2
    helper = (_Helper(git, changes[half:]) if half >= _SAMPLE and
              mean * len(changes) >= _PARALLEL_BYTES else None)
    attached = False
    with_ckpts: dict[str, list[str]] = {}
    mine = changes[:half if helper else None]
    with _gc_paused(), progress.bar(len(mine), "building the cache", unit="run") as bar:
        try:
            _insert_notes(git, db, _ticking(mine, bar), with_ckpts, empty=True)
            _record_availability(git, db, with_ckpts)
            if helper is not None:
                attached = helper.merge_into(db)
                if not attached:  # it failed: do its half here
                    with_ckpts.clear()
                    _insert_notes(git, db, changes[half:], with_ckpts)
                    _record_availability(git, db, with_ckpts)
        finally:
            if helper is not None:
                helper.discard()
    _in_run_order(db)
    db.execute(f"PRAGMA cache_size=-{_INDEX_CACHE_KIB}")  # see _INDEX_CACHE_KIB
    # the helper is done: the sorter of each index build may use the other cores too
    db.execute(f"PRAGMA threads={min(4, usable_cores() - 1)}")
    _create_bulk_indexes(db)
    db.execute("PRAGMA threads=0")
    summarize(db, [run for (run,) in db.execute(  # both halves' replayed and long runs
        "SELECT run FROM runs WHERE run NOT IN (SELECT run FROM summaries)")])
    db.execute("PRAGMA cache_size=-2000")  # SQLite's default, for the rest of the connection
    return attached


def _in_run_order(db: sqlite3.Connection) -> None:
    """Rewrite the tables that ``flor log`` looks up run by run in run order.

    A rebuild inserts runs in the order of their commits' ids, at random, so the B-trees
    of these tables came out scattered and two neighbouring runs' rows on different
    pages. Run ids begin with their start time, so ``runs_wide``'s newest-first scan
    now reads each page once: at 100,000 runs its lookups took 0.72 s, 0.5 s in order.
    An args table keeps each run's rows in flor.arg's order (the pivot's column order).
    """
    for table, order in (("summaries", "run, name"), ("args", "run, rowid"),
                         ("availability", "run")):
        db.execute(f"CREATE TEMP TABLE ordered AS SELECT * FROM main.{table} ORDER BY {order}")
        db.execute(f"DELETE FROM main.{table}")
        db.execute(f"INSERT INTO main.{table} SELECT * FROM temp.ordered")
        db.execute("DROP TABLE temp.ordered")


# The page cache of a rebuild's inserts, and of its index builds: SQLite's sorter may
# hold as much memory as the page cache may, so a 10^7-record rebuild with 256 MiB for
# both peaked at 616 MB (page cache, sorter, and a batch of decoded records).
_REBUILD_CACHE_KIB = 128 * 1024
_INDEX_CACHE_KIB = 64 * 1024
_SAMPLE = 8  # notes read before deciding whether a helper process pays off
_PARALLEL_BYTES = 16 << 20  # ~150,000 records: a second or two of work on one core


def _insert_notes(git: Git, db: sqlite3.Connection, changes: Iterable[tuple[str, str | None]],
                  with_ckpts: dict[str, list[str]], held: dict[str, str] | None = None,
                  empty: bool = False) -> list[str]:
    """The rows of each (annotated commit, note key) that is a flor run; the object
    digests of each run that took checkpoints go to ``with_ckpts``, whose availability
    the caller records (:func:`_record_availability`) once for all of them.

    Short notes are decoded whole and their rows inserted many runs at a time
    (:class:`_Batch`). A note longer than :data:`notes.STREAM_BYTES` is read a batch of
    lines at a time (:func:`_insert_streamed`), so a run of 10^7 values needs no more memory
    than one of 10^5. ``held``: the run ids (-> commit) that the notes being replaced
    held, which their commits keep (:func:`claim`); ``empty``: the tables hold no run
    yet, so a run id is only claimed by a run inserted here (no query per note: 50,000
    of them in each half of a rebuild of 100,000 runs). Values are marked current
    (:func:`rows.mark_current`); returns the runs inserted whose summaries are left to
    :func:`rows.summarize` (see :func:`rows.summaries_of`): those with replayed values,
    and long ones.
    """
    unsummed: list[str] = []
    batch = _Batch(db, with_ckpts, held or {}, empty)
    for annotated, key in changes:
        if key is None:
            continue
        text = git.short_note_text(key, notes.STREAM_BYTES)
        if text is None:
            unsummed += batch.flush()  # rows go in in the order of the notes
            first = next_log_rowid(db)
            run = _insert_streamed(git, db, annotated, key, with_ckpts, batch.claimed)
            if run is not None:
                batch.inserted[run] = annotated
                mark_current(db, run, first)
                unsummed.append(run)
        else:
            note = notes.parse(annotated, text)
            if note is not None and batch.add(note):
                unsummed += batch.flush()
    return unsummed + batch.flush()


class _Batch:
    """Short notes' rows gathered for many runs, then inserted together.

    A run's rows take a dozen statements; at 100,000 small runs, paying each statement's
    cost once per run rather than once per batch was most of a cold rebuild. A batch
    SQLite refuses (a value it cannot bind as it is) is undone and its notes inserted one
    at a time by :func:`rows.insert`, which makes such values bindable.
    """

    ROWS = 100_000  # log rows held (~20 MB) before they go in

    def __init__(self, db: sqlite3.Connection, with_ckpts: dict[str, list[str]],
                 held: dict[str, str], empty: bool = False):
        self.db, self.with_ckpts, self.empty = db, with_ckpts, empty
        self.notes: list[notes.RunNote] = []
        self.rows = Rows()
        self.mine: dict[str, str] = {}  # run id -> commit, of the runs not inserted yet
        # and, when the tables were empty, of every run inserted since (see _insert_notes)
        self.inserted: dict[str, str] = {}
        self.claimed = ChainMap(self.mine, self.inserted, held)

    def add(self, note: notes.RunNote) -> bool:
        """Take in a note's rows; True when the batch is full (flush it)."""
        run = claim(self.db, note, claimed=self.claimed, known=self.empty)
        self.mine[run] = note.commit
        self.notes.append(note)
        self.rows.add(note, run, lambda rows: rows, orjson.dumps)
        return len(self.rows.logs) >= self.ROWS

    def flush(self) -> list[str]:
        """Insert what the batch holds (values marked current); returns the runs whose
        summaries are left to :func:`rows.summarize` (replayed ones)."""
        if not self.notes:
            return []
        db, rows = self.db, self.rows
        first = next_log_rowid(db)
        db.execute("SAVEPOINT batch")
        try:
            rows.write(db)
            unsummed = rows.unsummed
            if unsummed:  # only they have replayed values: most batches skip the scan
                mark_replayed(db, first)
            add_digests(self.with_ckpts, rows.ckpts)
        except (OverflowError, UnicodeError, TypeError, ValueError,
                sqlite3.InterfaceError, sqlite3.ProgrammingError):
            db.execute("ROLLBACK TO batch")
            unsummed = []
            for note in self.notes:
                one = next_log_rowid(db)
                run = insert(db, note, self.with_ckpts, claimed=self.claimed.parents,
                             unsummed=unsummed)
                mark_current(db, run, one)
        db.execute("RELEASE batch")
        self.notes, self.rows = [], Rows()
        if self.empty:
            self.inserted.update(self.mine)
        self.mine.clear()
        return unsummed


def note_bytes(git: Git, key: str | None) -> int:
    """How long a note is, from its blobs' headers (nothing is read or inflated)."""
    return sum(git.blob_size(blob) for blob in git.note_blobs(key)) if key else 0


def _insert_streamed(git: Git, db: sqlite3.Connection, annotated: str, key: str,
                     with_ckpts: dict[str, list[str]], claimed: Mapping[str, str]
                     ) -> str | None:
    """A long note's rows, a batch of lines at a time: one part and one batch of records
    in memory. Rows go in in the note's line order; readers order by ``seq``. Its
    header, replay headers and lifecycle records are found first
    (:func:`notes.scan_headers`). A removed run is listed in ``removed`` alone, as a
    short one is."""
    source = f"the note of commit {annotated[:12]}"
    try:
        header, replays, events = notes.scan_headers(git.note_chunks(key), source)
    except notes.NewerFormat as e:
        notes.warn(str(e))
        return None
    if header is None:
        return None
    bare = notes.RunNote(annotated, header, [], replays, events)
    if notes.lifecycle(bare).removed is not None:
        return insert(db, bare, with_ckpts, claimed=claimed)
    run = None
    for records in notes.record_batches(git.note_chunks(key), source):
        # each batch as a note of its own: the run's row again, its replays once
        run = insert(db, notes.RunNote(annotated, header, records, replays, events),
                     with_ckpts, claimed=claimed if run is None else None, whole=False)
        replays = []
    return run


def _ticking(items: Iterable, bar: Any) -> Iterator:
    """``items``, moving ``bar`` on by one after each."""
    for item in items:
        yield item
        bar.update()


@contextmanager
def _gc_paused() -> Iterator[None]:
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class _Helper:
    """A second process building some notes into its own SQLite file, for a rebuild.

    Parsing notes and binding rows is interpreter work that one process cannot spread
    over two cores (a thread convoys with the inserting one on the GIL). The helper is a
    fresh interpreter running :func:`_build_part`; its file is merged with one ``INSERT
    ... SELECT`` per table, which SQLite copies without decoding rows. If it cannot be
    started or fails, its notes are built in this process instead.
    """

    def __init__(self, git: Git, changes: list[tuple[str, str | None]]):
        fd, path = tempfile.mkstemp(prefix="cache-part-", suffix=".db", dir=git.flor_dir)
        os.close(fd)
        self.path = Path(path)
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-c", "import sys; from flor_cli.storage import cache; "
                 "cache._build_part(sys.argv[1], sys.argv[2])", str(git.root), path],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with self.proc.stdin:
                self.proc.stdin.write(json.dumps(changes).encode())
        except OSError:
            self.proc = None

    def merge_into(self, db: sqlite3.Connection) -> bool:
        """Wait for the helper and copy its rows after this process's; False if it failed."""
        if self.proc is None or self.proc.wait() != 0:
            return False
        db.execute("ATTACH DATABASE ? AS part", (str(self.path),))
        self._tell_apart(db)
        for table in (*_PER_RUN_TABLES, "names"):
            verb = {"runs": "INSERT OR REPLACE", "args": "INSERT OR REPLACE",
                    "removed": "INSERT OR REPLACE", "tags": "INSERT OR IGNORE",
                    "names": "INSERT OR IGNORE"}.get(table, "INSERT")
            db.execute(f"{verb} INTO main.{table} SELECT * FROM part.{table}")
        return True

    @staticmethod
    def _tell_apart(db: sqlite3.Connection) -> None:
        """A run id both halves hold for different commits goes to the first half's
        run, as in a rebuild in one process (:func:`claim`): the helper's is renamed."""
        held = ("SELECT run, commit_id FROM {0}.runs "
                "UNION ALL SELECT run, commit_id FROM {0}.removed")
        clashes = db.execute(
            f"SELECT p.run, p.commit_id, m.commit_id FROM ({held.format('part')}) p "
            f"JOIN ({held.format('main')}) m ON m.run = p.run "
            "WHERE m.commit_id IS NOT p.commit_id").fetchall()
        for run, commit, holder in clashes:
            renamed = alias(run, commit, holder)
            for table in _PER_RUN_TABLES:
                db.execute(f"UPDATE part.{table} SET run=? WHERE run=?", (renamed, run))

    def discard(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.path.unlink(missing_ok=True)  # an attached file stays readable until detached


def _build_part(root: str, path: str) -> None:
    """The helper's side: the notes listed on stdin, as tables in the SQLite file ``path``."""
    changes = json.load(sys.stdin)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # a scratch file: no journal, no fsync
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{_REBUILD_CACHE_KIB}")
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    git, with_ckpts = Git(root), {}
    with _gc_paused():
        _insert_notes(git, db, changes, with_ckpts, empty=True)
    _record_availability(git, db, with_ckpts)
    db.execute("COMMIT")
    db.close()


def _create_bulk_indexes(db: sqlite3.Connection) -> None:
    for index, on in BULK_INDEXES.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {on}")


def _forget_commit(db: sqlite3.Connection, commit: str) -> dict[str, str]:
    """Delete the rows of the runs of ``commit``'s note; returns them (run id -> commit)."""
    runs = {run: commit for (run,) in db.execute(
        "SELECT run FROM runs WHERE commit_id=? UNION "
        "SELECT run FROM removed WHERE commit_id=?", (commit, commit)).fetchall()}
    for run in runs:
        for table in _PER_RUN_TABLES:
            db.execute(f"DELETE FROM {table} WHERE run=?", (run,))
    return runs


def _record_availability(git: Git, db: sqlite3.Connection,
                         with_ckpts: dict[str, list[str]]) -> None:
    """Check the object digests of each run against the stores; write its availability."""
    if not with_ckpts:
        return
    local, shared = stores(git)
    wanted = {sha for shas in with_ckpts.values() for sha in shas}
    held = local.present(wanted)
    in_shared = shared.present(wanted) if shared is not None else set()
    db.executemany("INSERT OR REPLACE INTO availability VALUES (?,?,?)", [
        (run, sum(1 for sha in shas if sha not in held and sha not in in_shared),
         sum(1 for sha in shas if sha in held and sha not in in_shared) if shared else 0)
        for run, shas in with_ckpts.items()])
    db.execute("INSERT OR REPLACE INTO meta VALUES ('stores', ?)", (_stores_key(local, shared),))


def _stores_key(local: ObjectStore, shared: ObjectStore | None) -> str:
    return json.dumps([str(local.root), (shared.remote or str(shared.root)) if shared else None])


def _check_stores(git: Git, db: sqlite3.Connection) -> None:
    """Check every run again when the stores have changed (``flor.store`` set or moved)."""
    row = db.execute("SELECT value FROM meta WHERE key='stores'").fetchone()
    if row is None or db.execute("SELECT 1 FROM availability LIMIT 1").fetchone() is None:
        return  # nothing checked yet: whatever the stores are, nothing is stale
    if row[0] != _stores_key(*stores(git)):
        _recheck(git, db, "1")


def refresh_availability(git: Git, db: sqlite3.Connection, which: str = "all",
                         runs: Iterable[str] | None = None) -> None:
    """Check runs against the stores again, after objects arrived or were removed:
    ``which`` is ``"all"``, or ``"missing"`` for the runs that lacked objects (cheaper:
    nothing can have gone missing from a run that is complete); ``runs``: only these
    (objects found missing behind the cache's back, see ``services/replay/plan.py``)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        condition = "missing > 0" if which == "missing" else "1"
        if runs is not None:
            condition += " AND run IN (SELECT value FROM json_each(?))"
        _recheck(git, db, condition, () if runs is None else (json.dumps(list(runs)),))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _recheck(git: Git, db: sqlite3.Connection, condition: str,
             params: tuple = ()) -> None:
    with_ckpts: dict[str, list[str]] = {}
    add_digests(with_ckpts, db.execute(
        "SELECT run, ctx, ordinal, objs FROM checkpoints WHERE run IN "
        f"(SELECT run FROM availability WHERE {condition})", params))
    _record_availability(git, db, with_ckpts)


def open_readonly(git: Git, aggs: dict[str, str] | None = None,
                  default: str = "last") -> sqlite3.Connection:
    """A connection for reading and for user SQL: synced first, then opened read-only,
    with the runs still running attached (:func:`live.attach_live`), ``runs_wide`` built with
    the given summaries (:func:`create_runs_view`), and guarded."""
    from flor_cli.storage.live import attach_live, live_runs

    live = live_runs(git)  # before the sync: a run that ends meanwhile is in one or the other
    writer = connect(git)  # synced
    try:  # opened before the writer closes, whose close is then not the database's last:
        # the last close copies the WAL into the file (a checkpoint: 0.4 s after a sync of
        # 1,000 runs into 100,000); it is left to a commit that fills WAL_PAGES.
        db = sqlite3.connect(f"file:{path_of(git)}?mode=ro", uri=True, timeout=30)
        db.execute("SELECT 1 FROM meta").fetchall()  # opened (SQLite opens lazily)
    finally:
        writer.close()
    try:
        attach_live(db, live)
        create_runs_view(db, aggs, default)
        guard(db)
    except BaseException:
        db.close()
        raise
    return db


def guard(db: sqlite3.Connection) -> None:
    """Refuse anything but reading, whatever SQL the user wrote."""
    db.execute("PRAGMA query_only=ON")
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
               sqlite3.SQLITE_RECURSIVE}

    def authorize(action: int, *_: Any) -> int:
        return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY

    db.set_authorizer(authorize)


@contextmanager
def unguarded(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``db`` without :func:`guard`'s authorizer, for flor's own SQL that uses what the
    authorizer refuses (a table-valued function: ``json_each``); guarded again after.
    Never for SQL that holds the user's text."""
    db.set_authorizer(None)
    try:
        yield db
    finally:
        guard(db)


def names_of(db: sqlite3.Connection, kind: str) -> list[str]:
    return [n for (n,) in db.execute("SELECT name FROM names WHERE kind=? ORDER BY name", (kind,))]


RUNS_FIXED = ("run", "time", "script", "branch", "status")
AGGREGATES = {"last": "last", "first": "first", "min": "min", "max": "max", "mean": "mean",
              "count": "n"}  # a summary's name -> its column in ``summaries``


def logged_names(db: sqlite3.Connection) -> list[str]:
    """Every name logged in some run: run-level names first, then loop-level ones."""
    return list(dict.fromkeys(names_of(db, "run") + names_of(db, "loop")))


def create_runs_view(db: sqlite3.Connection, aggs: dict[str, str] | None = None,
                     default: str = "last") -> list[str]:
    """TEMP VIEW ``runs_wide``: the columns of ``flor log`` — fixed columns, args, and a
    summary of each logged name's current values (``default``, or ``aggs[name]``, one
    of :data:`AGGREGATES`), loop-level names included (``val_acc`` per epoch: its last).

    A view per connection, because its columns depend on which names have been logged.
    Its rows come newest first (by start time, finer than the ``time`` column shows).
    The summaries are looked up by (run, name), so reading it costs a few index probes
    per run, whatever the number of records: a LEFT JOIN per column (a correlated
    subquery each cost a third more at 100,000 runs). The rows come in the order of the
    ``runs_start`` index, so ``LIMIT`` reads only the newest runs and no wide row is
    sorted (half of ``flor log``'s time at 100,000 runs).
    """
    aggs = aggs or {}
    columns = list(RUNS_FIXED)
    selects = ["r.run", "datetime(r.start, 'unixepoch', 'localtime') AS time", "r.script",
               "r.branch", "r.status"]
    joins = []
    if db.execute("SELECT 1 FROM tags LIMIT 1").fetchone():  # only once some run has one
        columns.append("tags")
        selects.append("(SELECT group_concat(tag, ' ') FROM (SELECT tag FROM tags t "
                       "WHERE t.run=r.run ORDER BY tag)) AS tags")
    if db.execute("SELECT 1 FROM runs WHERE note IS NOT NULL LIMIT 1").fetchone():
        columns.append("note")
        selects.append("r.note")
    wanted = [("args", "value", n) for n in names_of(db, "arg")]
    wanted += [("summaries", AGGREGATES[aggs.get(n, default)], n) for n in logged_names(db)]
    for table, column, name in wanted:
        if name in columns or name == "checkpoints":
            continue
        table_as = f"c{len(joins)}"
        columns.append(name)
        selects.append(f"{table_as}.{column} AS {quote_ident(name)}")
        joins.append(f"LEFT JOIN {table} {table_as} ON {table_as}.run = r.run "
                     f"AND {table_as}.name = {quote_literal(name)}")
    columns.append("checkpoints")  # whether a memoized replay is possible in this clone
    selects.append("CASE WHEN v.missing = 0 THEN 'here' WHEN v.missing IS NOT NULL "
                   "THEN 'missing' END AS checkpoints")
    joins.append("LEFT JOIN availability v ON v.run = r.run")
    db.execute("DROP VIEW IF EXISTS temp.runs_wide")
    db.execute(f"CREATE TEMP VIEW runs_wide AS SELECT {', '.join(selects)} FROM runs r "
               f"{' '.join(joins)} "
               "ORDER BY r.start DESC, r.run DESC")  # newest first, to the microsecond
    return columns


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

