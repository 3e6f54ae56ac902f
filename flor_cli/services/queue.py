"""The job queue of ``flor sweep`` / ``flor.batch`` and ``flor serve``: ``.git/flor/queue.db``.

A job is a script, its argv and ``--kwargs``, and the code as it was when queued: the
snapshot tree of the worktree at that moment, committed on the private ref
``refs/flor/queue`` (which keeps it alive and gives serve a commit to check out). Jobs
move ``pending -> running -> done | failed``; ``retry`` puts failed ones back.

Consistency comes from SQLite transactions and ownership: a job is claimed by one
``flor serve`` process (its pid is the owner) in a single ``BEGIN IMMEDIATE``
transaction, so two servers never take the same job. A server that stops for Ctrl-C or
a signal gives its running jobs back (``pending``); one killed outright cannot, so every
server first hands back the running jobs of owners that are gone. A ``done`` job is never
claimed again: a restart only ever reruns jobs that had not finished.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from flor_cli.errors import UserError
from flor_cli.storage import bigfiles
from flor_cli.storage.git import Git
from flor_cli.storage.journal import alive

QUEUE_REF = "refs/flor/queue"
STATES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    script TEXT NOT NULL,        -- relative to the repository root
    cwd TEXT NOT NULL,           -- where it runs, relative to the repository root
    argv TEXT NOT NULL,          -- JSON list: the script's own arguments
    kwargs TEXT NOT NULL,        -- JSON object: what --kwargs sets
    commit_id TEXT NOT NULL,     -- the code as queued (a commit on refs/flor/queue)
    tree TEXT NOT NULL,          -- its tree: the run's snapshot
    big TEXT NOT NULL DEFAULT '[]',  -- JSON list: untracked big files the tree leaves out
    state TEXT NOT NULL DEFAULT 'pending',
    run TEXT,                    -- the run the latest attempt recorded
    owner INTEGER,               -- pid of the flor serve running it
    tries INTEGER NOT NULL DEFAULT 0,
    queued REAL NOT NULL,
    started REAL,
    ended REAL,
    error TEXT
)
"""


@dataclass
class QueuedJob:
    id: int
    script: str
    cwd: str
    argv: list[str]
    kwargs: dict[str, str]
    commit: str
    tree: str
    state: str = "pending"
    run: str | None = None
    tries: int = 0
    error: str | None = None
    big: list[dict] = field(default_factory=list)  # as flor run lists them (bigfiles.scan)

    def as_dict(self) -> dict:
        return {"id": self.id, "script": self.script, "kwargs": self.kwargs,
                "argv": self.argv, "state": self.state, "run": self.run}


_COLUMNS = "id, script, cwd, argv, kwargs, commit_id, tree, state, run, tries, error, big"


def _job(row: tuple) -> QueuedJob:
    id_, script, cwd, argv, kwargs, commit, tree, state, run, tries, error, big = row
    return QueuedJob(id_, script, cwd, json.loads(argv), json.loads(kwargs), commit, tree,
                     state, run, tries, error, json.loads(big))


def path(git: Git) -> Path:
    return git.flor_dir / "queue.db"


def connect(git: Git) -> sqlite3.Connection:
    """The queue, created on first use. Autocommit mode: each statement or explicit
    ``BEGIN IMMEDIATE`` block is one transaction, so a kill leaves no half-done change."""
    git.flor_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path(git), timeout=30, isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(_SCHEMA)
    if "big" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}:
        db.execute("ALTER TABLE jobs ADD COLUMN big TEXT NOT NULL DEFAULT '[]'")  # older queue
    return db


def enqueue(git: Git, script: str, configs: Sequence[dict[str, str]],
            argv: Sequence[str] = ()) -> list[QueuedJob]:
    """Queue one job per kwargs dict in ``configs``, all on the code as it is now.

    ``script`` is a path from the current directory, as for ``flor run``. The snapshot
    leaves out untracked files over ``flor.maxFileSize`` as ``flor run``'s does; the jobs
    list them, and their runs' notes will.
    """
    if not Path(script).is_file():
        raise UserError(f"no such script: {script}")
    if not configs:
        raise UserError("nothing to queue: the sweep has no combinations")
    try:
        rel_script = str(Path(script).resolve().relative_to(git.root))
    except ValueError:
        raise UserError(f"{script}: not inside the repository {git.root}") from None
    cwd = os.path.relpath(os.getcwd(), git.root)
    big = bigfiles.scan(git)
    tree = git.snapshot_tree(e["path"] for e in big)
    commit = git.append_to_branch(QUEUE_REF, tree, f"flor: queue {len(configs)} job(s) "
                                                   f"of {rel_script}")
    now = time.time()
    rows = [(rel_script, cwd, json.dumps(list(argv)), json.dumps(_as_strings(c)),
             commit, tree, json.dumps(big), now) for c in configs]
    db = connect(git)
    try:
        db.execute("BEGIN IMMEDIATE")
        first = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM jobs").fetchone()[0]
        db.executemany("INSERT INTO jobs (script, cwd, argv, kwargs, commit_id, tree, big, "
                       "queued) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        found = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id >= ? ORDER BY id LIMIT ?",
                           (first, len(rows))).fetchall()
    finally:
        db.close()
    return [_job(r) for r in found]


def _as_strings(kwargs: dict) -> dict[str, str]:
    """--kwargs values are text, cast by flor.arg to the default's type."""
    return {str(k): v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)
            for k, v in kwargs.items()}


def claim(db: sqlite3.Connection, owner: int) -> QueuedJob | None:
    """Take the oldest pending job for ``owner``, atomically; None when there is none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state='pending' "
                         "ORDER BY id LIMIT 1").fetchone()
        if row is not None:
            db.execute("UPDATE jobs SET state='running', owner=?, tries=tries+1, started=?, "
                       "ended=NULL, error=NULL, run=NULL WHERE id=?", (owner, time.time(), row[0]))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if row is None:
        return None
    job = _job(row)
    job.state, job.tries = "running", job.tries + 1
    return job


def started(db: sqlite3.Connection, job: QueuedJob, run: str) -> None:
    """Record the run id of the attempt as soon as it exists, for ``flor queue``."""
    job.run = run
    db.execute("UPDATE jobs SET run=? WHERE id=? AND state='running'", (run, job.id))


def finish(db: sqlite3.Connection, job: QueuedJob, ok: bool, error: str | None = None) -> None:
    job.state = "done" if ok else "failed"
    db.execute("UPDATE jobs SET state=?, ended=?, error=?, owner=NULL WHERE id=?",
               (job.state, time.time(), error, job.id))


def give_back(db: sqlite3.Connection, job: QueuedJob) -> None:
    """An attempt stopped by Ctrl-C or a signal: the job is pending again."""
    job.state = "pending"
    db.execute("UPDATE jobs SET state='pending', owner=NULL, ended=? WHERE id=? "
               "AND state='running'", (time.time(), job.id))


def recover(db: sqlite3.Connection) -> int:
    """Hand back the running jobs of servers that are gone (killed); how many."""
    owners = [o for (o,) in db.execute("SELECT DISTINCT owner FROM jobs WHERE state='running'")]
    dead = [o for o in owners if o is None or not alive(o)]
    n = 0
    for owner in dead:
        n += db.execute("UPDATE jobs SET state='pending', owner=NULL WHERE state='running' "
                        "AND owner IS ?", (owner,)).rowcount
    return n


def retry(git: Git, ids: Sequence[int] = ()) -> int:
    """Put failed jobs (all, or those in ``ids``) back in the queue; how many."""
    db = connect(git)
    try:
        if ids:
            marks = ",".join("?" * len(ids))
            unknown = set(ids) - {i for (i,) in db.execute(
                f"SELECT id FROM jobs WHERE id IN ({marks})", list(ids))}
            if unknown:
                raise UserError(f"no such job: {', '.join(map(str, sorted(unknown)))}")
            where, params = f" AND id IN ({marks})", list(ids)
        else:
            where, params = "", []
        return db.execute("UPDATE jobs SET state='pending', error=NULL WHERE state='failed'"
                          + where, params).rowcount
    finally:
        db.close()


def jobs(git: Git, state: str | None = None) -> list[QueuedJob]:
    """Every job (or those in ``state``), oldest first; an absent queue is empty."""
    if not path(git).exists():
        return []
    db = connect(git)
    try:
        recover(db)
        sql = f"SELECT {_COLUMNS} FROM jobs" + (" WHERE state=?" if state else "") + " ORDER BY id"
        return [_job(r) for r in db.execute(sql, (state,) if state else ())]
    finally:
        db.close()
