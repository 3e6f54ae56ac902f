"""`flor log` with summaries over 1,000 runs x ~1,000 records (1,000,000 records).

Target (issue 10): `flor log` (the runs table: every logged name's last value per run,
loop-level names included) <= 1 s warm, as wall time of the `flor` subprocess.

Extra figures without a target: the cold rebuild that materializes the summaries
(`flor log` after deleting cache.db), `flor log --agg max`, and `flor log -n 10 --where`
(pushed into SQL). Baseline: the interpreter start-up every command pays (`python -c
pass`).

The runs are built with flor's own storage functions by bench_query's builder (notes
on real shadow commits). Size: BENCH_RUNS runs (default 1000), BENCH_EPOCHS x
BENCH_STEPS records per run (default 10 x 98); e.g. `BENCH_RUNS=20 BENCH_EPOCHS=2
BENCH_STEPS=5 .venv/bin/python bench/bench_log_summaries.py` checks it works in seconds.
"""

from __future__ import annotations

import os
import time

from bench_query import build_runs
from harness import FLOR, PYTHON, Report, cleanup, fixture, fmt_seconds, make_repo, median, \
    temp_dir, timed

RUNS = int(os.environ.get("BENCH_RUNS", "1000"))
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "10"))
STEPS = int(os.environ.get("BENCH_STEPS", "98"))


def main() -> None:
    tmp = temp_dir("flor-bench-log-")
    try:
        repo = make_repo(tmp / "repo", {"train.py": fixture("train.py"), ".gitignore": "data/\n"})
        started = time.perf_counter()
        records = build_runs(repo, RUNS, EPOCHS, STEPS)
        report = Report(f"flor log with summaries: {RUNS:,} runs, {records:,} records")
        print(f"  built in {time.perf_counter() - started:.1f} s", flush=True)
        log = [*FLOR, "log"]
        cache = [repo / ".git" / "flor" / f"cache.db{suffix}" for suffix in ("", "-wal", "-shm")]
        for path in cache:
            path.unlink(missing_ok=True)
        cold = timed(log, repo)
        warm = [timed(log, repo) for _ in range(5)]
        startup = median([timed([PYTHON, "-c", "pass"], repo) for _ in range(5)])
        report.figure("warm flor log (summaries)", f"{fmt_seconds(median(warm))} (median of 5)",
                      median(warm) <= 1, "<= 1 s",
                      f"baseline python start-up {fmt_seconds(startup)}: "
                      f"ratio {median(warm) / startup:.1f}")
        report.figure("cold rebuild + flor log", fmt_seconds(cold), None, "",
                      f"baseline warm flor log: ratio {cold / median(warm):.1f}")
        for name, extra in (("warm flor log --agg max", ["--agg", "max"]),
                            ("warm flor log -n 10 --where", ["-n", "10", "--where", "lr < 1e-3"])):
            figure = median([timed(log + extra, repo) for _ in range(3)])
            report.figure(name, f"{fmt_seconds(figure)} (median of 3)", None, "",
                          f"baseline warm flor log: ratio {figure / median(warm):.2f}")
    finally:
        cleanup(tmp)
    report.exit()


if __name__ == "__main__":
    main()
