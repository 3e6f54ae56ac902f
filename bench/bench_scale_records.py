"""One long run: 10^6 and 10^7 logged values in a single run (issue 14).

Each step runs in a fresh interpreter that reports its own wall time and peak memory
(VmHWM), so the figure is what one flor process needs, whatever the parent holds:

* fold: the run's journal into its shadow commit and note (`journal.fold`)
* sync: a cold cache build from that note (`cache.connect`, cache.db deleted)
* pivot: `flor log --pivot loss --limit 10` on the warm cache
* show: `flor show latest --format json` (prints every record; output to /dev/null)

Target: peak memory bounded by a constant (a few hundred MB) whatever the number of
records. Baselines, printed with each ratio: `git hash-object -w` of the note's bytes (a
git process writing the blob) for the fold, zlib.compress speed over the same bytes, and
raw SQLite `executemany` of the log rows (built beforehand, untimed) for the sync.

Sizes: `BENCH_RECORDS` (default "1000000,10000000"), e.g. `BENCH_RECORDS=100000` for a
quick check. The 10^7 journal is ~800 MB on disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import PYTHON, QUIET_ENV, Report, cleanup, fmt_seconds, make_repo, \
    temp_dir  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_RECORDS", "1000000,10000000").split(",")]
STEPS_PER_EPOCH = 10_000
PEAK_TARGET_MB = 400

# Runs `step` (Python code, with `git` and `path` defined) and prints wall s and VmHWM MB.
STEP = """
import json, sys, time
from pathlib import Path
from flor_cli.storage import cache, journal
from flor_cli.storage.git import Git
git, path = Git('.'), Path(sys.argv[1])
git.repo
t = time.perf_counter()
{step}
wall = time.perf_counter() - t
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
print(json.dumps([wall, int(status['VmHWM'].split()[0]) / 1024]))
"""
# The same for a flor command, run in-process with its output discarded.
CLI = """
import json, os, sys, time
sys.stdout = open(os.devnull, 'w')
from flor_cli.main import main
t = time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
finally:
    wall = time.perf_counter() - t
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    print(json.dumps([wall, int(status['VmHWM'].split()[0]) / 1024]), file=sys.stderr)
sys.exit(code)
"""


def main() -> None:
    report = Report(f"one long run: {', '.join(f'{n:,}' for n in SIZES)} logged values")
    for records in SIZES:
        tmp = temp_dir("flor-bench-records-")
        try:
            _figures(report, tmp, records)
        finally:
            cleanup(tmp)
    report.exit()


def _figures(report: Report, tmp: Path, records: int) -> None:
    repo = make_repo(tmp / "repo", {"train.py": "print(1)\n"})
    path, size = _write_journal(repo, records)
    zlib_s = _zlib_seconds(path)
    hash_s = _timed(["git", "hash-object", "-w", str(path)], repo)
    label = f"{records:,} values"
    wall, peak = _step(repo, path, "journal.fold(git, path, {'status': 'ok', 'exit': 0})")
    report.figure(f"{label}: fold", f"{fmt_seconds(wall)}, peak {peak:.0f} MB{_load()}",
                  peak <= PEAK_TARGET_MB, f"peak <= {PEAK_TARGET_MB} MB",
                  f"git hash-object -w {fmt_seconds(hash_s)} (ratio {wall / hash_s:.1f}); "
                  f"zlib {size / zlib_s / 1e6:.0f} MB/s vs fold {size / wall / 1e6:.0f} MB/s")
    wall, peak = _step(repo, path, "cache.connect(git).close()")
    insert_s = _raw_insert_seconds(tmp, records)
    report.figure(f"{label}: cold cache sync", f"{fmt_seconds(wall)}, peak {peak:.0f} MB"
                  f"{_load()}",
                  peak <= PEAK_TARGET_MB, f"peak <= {PEAK_TARGET_MB} MB",
                  f"raw SQLite executemany {fmt_seconds(insert_s)} (ratio {wall / insert_s:.1f})")
    for args, what in ((["log", "--pivot", "loss", "--limit", "10"], "pivot --limit 10"),
                       (["show", "latest", "--format", "json"], "show --format json")):
        wall, peak = _cli(repo, args)
        report.figure(f"{label}: flor {what}", f"{fmt_seconds(wall)}, peak {peak:.0f} MB"
                      f"{_load()}", peak <= PEAK_TARGET_MB, f"peak <= {PEAK_TARGET_MB} MB")


def _load() -> str:
    """The load average when a step ended: times are only comparable at the same load
    (peak memory does not depend on it)."""
    return f", load {os.getloadavg()[0]:.1f}"


def _write_journal(repo: Path, records: int) -> tuple[Path, int]:
    """A finished run's journal with ``records`` logged values, written as the writer
    process writes them."""
    from flor_cli.storage import journal
    from flor_cli.storage.git import Git

    git = Git(repo)
    header = {"t": "run", "run": journal.new_id(), "tree": git.snapshot_tree(),
              "script": "train.py", "cwd": ".", "argv": [], "kwargs": {}, "branch": "main",
              "head": None, "start": time.time(), "python": "3.11", "host": "bench",
              "user": "bench"}
    path = journal.create(git.flor_dir, header)
    with open(path, "a") as f:
        batch = []
        for i in range(records):
            epoch, step = divmod(i, STEPS_PER_EPOCH)
            batch.append(f'{{"t":"log","s":{i + 1},"n":"loss","v":{1.0 / (i + 1)!r},'
                         f'"c":{{"epoch":{epoch},"step":{step}}}}}\n')
            if len(batch) == 100_000:
                f.write("".join(batch))
                batch = []
        f.write("".join(batch))
    return path, path.stat().st_size


def _step(repo: Path, path: Path, step: str) -> tuple[float, float]:
    out = subprocess.run([PYTHON, "-c", STEP.format(step=step), str(path)], cwd=repo,
                         capture_output=True, text=True, env=QUIET_ENV)
    if out.returncode != 0:
        raise SystemExit(f"{step} failed:\n{out.stderr[-2000:]}")
    return tuple(json.loads(out.stdout.splitlines()[-1]))


def _cli(repo: Path, args: list[str]) -> tuple[float, float]:
    out = subprocess.run([PYTHON, "-c", CLI, *args], cwd=repo, capture_output=True, text=True,
                         env=QUIET_ENV)
    if out.returncode != 0:
        raise SystemExit(f"flor {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return tuple(json.loads(out.stderr.splitlines()[-1]))


def _timed(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def _zlib_seconds(path: Path) -> float:
    spent = 0.0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            started = time.perf_counter()
            zlib.compress(chunk, 1)
            spent += time.perf_counter() - started
    return spent


def _raw_insert_seconds(tmp: Path, records: int) -> float:
    """executemany of the log rows alone, in batches as a sync would do them."""
    db = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    db.execute("CREATE TABLE logs(run TEXT, rp TEXT, seq INTEGER, name TEXT, value, type TEXT,"
               " ctx TEXT, lvl INTEGER)")
    spent = 0.0
    db.execute("BEGIN")
    for start in range(0, records, 50_000):
        rows = [("r", i + 1, 1.0 / (i + 1), "loss",
                 f'{{"epoch":{i // STEPS_PER_EPOCH},"step":{i % STEPS_PER_EPOCH}}}', 2)
                for i in range(start, min(records, start + 50_000))]
        started = time.perf_counter()
        db.executemany("INSERT INTO logs VALUES (?1,NULL,?2,?4,?3,NULL,?5,?6)", rows)
        spent += time.perf_counter() - started
    started = time.perf_counter()
    db.execute("CREATE INDEX logs_name ON logs(name, run)")
    db.execute("CREATE INDEX logs_run ON logs(run)")
    db.execute("COMMIT")
    spent += time.perf_counter() - started
    db.close()
    return spent


if __name__ == "__main__":
    main()
