"""Runs still running: read from their journals (no lock taken, nothing folded) and
made visible to every query on a read-only cache connection, a batch of records at a
time, so a run logging 10^7 values is never held whole."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Iterator

from flor_cli.storage import notes
from flor_cli.storage.cache import SCHEMA
from flor_cli.storage.git import Git
from flor_cli.storage.rows import insert, mark_current, next_log_rowid, summarize


RUNNING = "running"  # the status of a run whose journal is still being written
_LIVE_TABLES = ("runs", "args", "logs", "current_logs", "summaries", "timings", "checkpoints",
                "replays", "tags")


@dataclass(frozen=True)
class LiveRun:
    """A run still running: its journal's header, and its records read when asked, a
    batch at a time (a run logging 10^7 values is never held whole)."""

    header: dict
    path: Path

    @property
    def run(self) -> str:
        return self.header[notes.RUN_ID]

    def batches(self) -> Iterator[list[dict]]:
        """Its records so far, in line order (the order they were numbered in), as the
        journal is now: its writer may be appending; a torn last line is left out."""
        from flor_cli.storage import journal

        try:
            yield from notes.record_batches(journal.record_chunks(self.path),
                                            f"journal {self.path.name}")
        except FileNotFoundError:
            return  # folded meanwhile: its note has the records


def live_runs(git: Git) -> list[LiveRun]:
    """The runs whose journals are still being written: no lock taken, nothing folded
    (a journal can be read while its writer appends); only headers are read here."""
    from flor_cli.storage import journal

    directory = journal.journal_dir(git.flor_dir)
    live = []
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else ():
        try:
            header = journal.read_header(path)
        except (FileNotFoundError, notes.NewerFormat):
            continue  # folded meanwhile, or written by a newer flor
        if not isinstance(header.get(notes.RUN_ID), str) or header.get("aborted"):
            continue  # aborted by bad input: never a run
        header["status"] = header.get("status") or RUNNING
        live.append(LiveRun(header, path))
    return live


def attach_live(db: sqlite3.Connection, running: list[LiveRun]) -> list[str]:
    """Make the runs still running visible to every query on ``db``; returns their ids.

    Their journals (:func:`live_runs`, listed before ``db`` was synced: a run that ended
    in between has its note synced, and is taken from there) go a batch of records at a
    time into a temporary schema ``live`` built as the cache is (same tables, same
    ``current_logs`` rule, same summaries), on disk beyond SQLite's page cache. TEMP
    views named as the cache's tables then union both, and unqualified names find TEMP
    objects first, so ``runs``, ``current_logs`` and the rest include them wherever they
    are read. With no run in progress nothing is attached and queries read the cache's
    tables directly.
    """
    live = [one for one in running  # unless folded into its note since
            if not db.execute("SELECT 1 FROM main.runs WHERE run=?", (one.run,)).fetchone()]
    if not live:
        return []
    db.execute("ATTACH DATABASE '' AS live")  # a private temporary file
    db.executescript(re.sub(r"IF NOT EXISTS (\w+)", r"IF NOT EXISTS live.\1", SCHEMA))
    ids = []
    for one in live:
        first, run = next_log_rowid(db, "live"), None
        for records in chain(one.batches(), [[]]):  # [[]]: its row when it logged nothing
            if run is None or records:
                run = insert(db, notes.RunNote("", one.header, records), {}, "live",
                             whole=False)
        mark_current(db, run, first, "live")
        ids.append(run)
    summarize(db, ids, schema="live")
    for table in _LIVE_TABLES:
        db.execute(f"CREATE TEMP VIEW {table} AS "
                   f"SELECT * FROM main.{table} UNION ALL SELECT * FROM live.{table}")
    db.execute("CREATE TEMP VIEW names AS SELECT * FROM main.names UNION SELECT * FROM live.names")
    return ids
