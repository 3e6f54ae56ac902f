"""Many runs: `flor log` and the cache at 10,000 and 100,000 runs (issue 14).

Targets, at 100,000 runs:

* warm `flor log` (no change since the last read)                     <= 1 s
  (plus `--limit 10` and a `--where` on checkpoints, which SQL answers)
* cold rebuild of the cache (`cache.connect` with cache.db deleted)    <= 15 s
* incremental sync of 1 % new runs                                    <= 2x raw SQLite

Baselines, each printed with its ratio: the interpreter start-up (`python -c pass`) for
`flor log`, a `git rev-parse` process for the per-command git cost, and raw SQLite
`executemany` of exactly the rows the cache holds for those notes (same tables; for the
rebuild the logs indexes built at the end as the rebuild does, for the incremental sync
into a copy of the cache as it was before, indexes in place), timed alone: the notes are
decoded beforehand, untimed. The incremental figure is also given for flor's own inserts
alone (the rest of a sync reads and decodes the notes).

Sizes: `BENCH_RUNS` (default "10000,100000"), e.g. `BENCH_RUNS=2000` for a quick check;
`BENCH_EPOCHS`/`BENCH_STEPS` shape each run (default 4 x 8: ~55 records, 4 checkpoints).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from itertools import groupby
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_query import build_runs, connect_seconds  # noqa: E402
from harness import FLOR, PYTHON, QUIET_ENV, Report, cleanup, fixture, fmt_seconds, \
    make_repo, median, temp_dir, timed  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_RUNS", "10000,100000").split(",")]
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "4"))
STEPS = int(os.environ.get("BENCH_STEPS", "8"))


def main() -> None:
    report = Report(f"many runs: {', '.join(f'{n:,}' for n in SIZES)} runs of "
                    f"{EPOCHS} x {STEPS} steps")
    startup = median([timed([PYTHON, "-c", "pass"], Path.cwd()) for _ in range(5)])
    git_proc = median([timed(["git", "rev-parse", "HEAD"], Path(__file__).parent)
                       for _ in range(5)])
    for runs in SIZES:
        tmp = temp_dir("flor-bench-runs-")
        try:
            _figures(report, tmp, runs, startup, git_proc)
        finally:
            cleanup(tmp)
    report.exit()


def _figures(report: Report, tmp: Path, runs: int, startup: float, git_proc: float) -> None:
    repo = make_repo(tmp / "repo", {"train.py": fixture("train.py")})
    started = time.perf_counter()
    records = build_runs(repo, runs, EPOCHS, STEPS, store_half=True)
    print(f"  built {runs:,} runs, {records:,} records in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    full = runs >= 100_000
    cold = _connect_seconds(repo, fresh=True)
    raw_cold = _raw_insert_seconds(repo, indexes_first=False)
    report.figure(f"{runs:,} runs: cold rebuild (cache.connect)", fmt_seconds(cold),
                  cold <= 15 if full else None, "<= 15 s at 100,000 runs",
                  f"raw SQLite executemany {fmt_seconds(raw_cold)}: ratio {cold / raw_cold:.1f}")
    for args, label in ((["log"], "flor log"), (["log", "--limit", "10"], "flor log --limit 10"),
                        (["log", "--where", "checkpoints = 'here'", "--limit", "10"],
                         "flor log --where checkpoints")):
        warm = median([timed([*FLOR, *args, "--format", "csv"], repo) for _ in range(3)])
        report.figure(f"{runs:,} runs: warm {label}", fmt_seconds(warm),
                      warm <= 1 if full else None, "<= 1 s at 100,000 runs",
                      f"python start-up {fmt_seconds(startup)}: ratio {warm / startup:.1f}; "
                      f"a git process {fmt_seconds(git_proc)}")
    # Incremental: 1 % more runs, added after the cache was synced.
    more = max(1, runs // 100)
    before = _notes_tip(repo)
    synced = _copy_of_cache(repo, tmp / "synced.db")  # the tables the new rows go into
    build_runs(repo, more, EPOCHS, STEPS, append=True, store_half=True)
    incremental, inserts = _sync_seconds(repo)
    raw_incr = _raw_insert_seconds(repo, indexes_first=True, since=before, base=synced)
    report.figure(f"{runs:,} runs: incremental sync of {more:,} new runs", fmt_seconds(incremental),
                  incremental <= 2 * raw_incr, "<= 2x raw SQLite",
                  f"raw SQLite executemany with the indexes {fmt_seconds(raw_incr)}: "
                  f"ratio {incremental / raw_incr:.2f}")
    report.figure(f"{runs:,} runs: of which the inserts and their commit",
                  fmt_seconds(inserts), inserts <= 2 * raw_incr, "<= 2x raw SQLite",
                  f"raw {fmt_seconds(raw_incr)}: ratio {inserts / raw_incr:.2f}; the rest of "
                  "the sync reads and decodes the notes, which the raw baseline does untimed")


def _notes_tip(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "refs/notes/flor"], cwd=repo, text=True,
                          capture_output=True, check=True).stdout.strip()


def _connect_seconds(repo: Path, fresh: bool) -> float:
    """Seconds `cache.connect` takes in a fresh interpreter, pygit2 loaded beforehand (a
    fixed ~0.1 s that is not the inserts'); ``fresh``: cache.db deleted first."""
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            (repo / ".git" / "flor" / f"cache.db{suffix}").unlink(missing_ok=True)
    return connect_seconds(repo, preload="g.repo")


def _sync_seconds(repo: Path) -> tuple[float, float]:
    """Seconds of the incremental sync a read command makes (``cache.open_readonly``:
    the sync, then a read-only connection) in a fresh interpreter, and of the part of it
    spent in the inserts and their commit (``rows.Rows.write``: the executemany of every
    table; what the raw baseline times)."""
    code = ("import sqlite3, time; from flor_cli.storage import cache, rows\n"
            "from flor_cli.storage.git import Git\n"
            "g = Git('.'); g.repo; spent = [0.0]; write, connect = rows.Rows.write, sqlite3.connect\n"
            "def timed(self, *a):\n"
            "    t = time.perf_counter(); write(self, *a); spent[0] += time.perf_counter() - t\n"
            "class Timed(sqlite3.Connection):\n"
            "    def execute(self, sql, *a):\n"
            "        t = time.perf_counter(); cursor = super().execute(sql, *a)\n"
            "        spent[0] += time.perf_counter() - t if sql == 'COMMIT' else 0\n"
            "        return cursor\n"
            "rows.Rows.write = timed\n"
            "sqlite3.connect = lambda *a, **k: connect(*a, factory=Timed, **k)\n"
            "t = time.perf_counter(); cache.open_readonly(g).close()\n"
            "print(time.perf_counter() - t, spent[0])")
    out = subprocess.run([PYTHON, "-c", code], cwd=repo, capture_output=True, text=True,
                         check=True, env=QUIET_ENV).stdout.split()
    return float(out[0]), float(out[1])


def _copy_of_cache(repo: Path, path: Path) -> Path:
    """A copy of the synced cache file (its WAL copied into it first)."""
    db = sqlite3.connect(repo / ".git" / "flor" / "cache.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    shutil.copyfile(repo / ".git" / "flor" / "cache.db", path)
    return path


def _raw_insert_seconds(repo: Path, indexes_first: bool, since: str | None = None,
                        base: Path | None = None) -> float:
    """Seconds of SQLite executemany alone for the rows of the notes (changed since
    ``since``) into a scratch copy of the cache's tables: empty, or for an incremental
    sync a copy of the cache file as it was before (``base``), so that the rows go into
    tables and indexes of the same size as the cache's."""
    from flor_cli.storage import cache, notes, rows
    from flor_cli.storage.git import Git

    g = Git(repo)
    path = repo.parent / "raw.db"
    path.unlink(missing_ok=True)
    if base is not None:
        shutil.copyfile(base, path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF" if since is None else "PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={cache.WAL_PAGES}")  # as the cache's
    db.executescript(cache.SCHEMA)
    if indexes_first and base is None:
        for index, on in cache.BULK_INDEXES.items():
            db.execute(f"CREATE INDEX {index} ON {on}")
    spent = 0.0
    db.execute("BEGIN")
    for annotated, blob in g.changed_notes(since, g.ref("refs/notes/flor")):
        note = notes.parse(annotated, g.blob_text(blob))
        logs, args, timings, ckpts = rows.record_rows(note.run, note.records)
        summaries = rows.summaries_of(note.run, logs)
        header = (note.run, note.commit) + (None,) * (len(rows.RUN_COLUMNS) - 2)
        started = time.perf_counter()
        db.execute(f"INSERT INTO runs VALUES ({','.join('?' * len(rows.RUN_COLUMNS))})", header)
        db.executemany("INSERT INTO args VALUES (?,?,?)", args)
        for size, shaped in groupby(logs, len):  # the cache's own statements
            db.executemany(rows.LOG_INSERT[size].format(schema="main"), list(shaped))
        db.executemany("INSERT INTO timings VALUES (?,?,?,?,?)", timings)
        db.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?,?)", ckpts)
        db.executemany("INSERT INTO summaries VALUES (?,?,?,?,?,?,?,?,?)", summaries)
        spent += time.perf_counter() - started
    started = time.perf_counter()
    if not indexes_first:
        for index, on in cache.BULK_INDEXES.items():
            db.execute(f"CREATE INDEX {index} ON {on}")
    db.execute("COMMIT")
    spent += time.perf_counter() - started
    db.close()
    path.unlink(missing_ok=True)
    return spent


if __name__ == "__main__":
    main()
