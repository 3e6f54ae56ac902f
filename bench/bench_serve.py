"""Queue throughput: `flor serve --workers 2` vs `--workers 1` on 8 CPU-bound jobs.

Target (issue 12): at least 1.8x the throughput of one worker. Each job is a pure-Python
busy loop of BENCH_JOB_SECONDS (default 60: "one-minute jobs"; set e.g. 2 to try it
quickly), recorded as a run. Baseline: the same 8 jobs served by one worker. Throughput
is jobs per wall second of the whole `flor serve` command, queue bookkeeping, worktree
checkouts and folding included. Also reported: the CPU time a job costs besides its own
BENCH_JOB_SECONDS of work ((CPU of `flor serve --workers 1` and its children - 8 x
BENCH_JOB_SECONDS) / 8: server start-up shared out, worktree, the script's interpreter
and imports, fold, queue), which other processes on the machine barely move.
"""

from __future__ import annotations

import os
import shutil

from harness import (FLOR, Report, cleanup, fmt_seconds, make_repo, measure, temp_dir,
                     timed)

TARGET = 1.8
JOBS = 8
SECONDS = float(os.environ.get("BENCH_JOB_SECONDS", "60"))
SCRIPT = """\
import time
import flor

seconds = flor.arg("seconds", 1.0)
job = flor.arg("job", 0)
end = time.process_time() + seconds
n = 0
while time.process_time() < end:
    n += 1
flor.log("iterations", n)
"""


def main() -> None:
    report = Report(f"flor serve: --workers 2 vs 1 on {JOBS} jobs of {SECONDS:g} s")
    tmp = temp_dir("flor-bench-serve-")
    try:
        base = make_repo(tmp / "base", {"train.py": SCRIPT})
        timed([*FLOR, "sweep", "train.py", "--grid", f"job={','.join(map(str, range(JOBS)))}",
               "--kwargs", f"seconds={SECONDS}"], base)
        walls, cpus = {}, {}
        for workers in (1, 2):
            repo = tmp / f"workers-{workers}"
            shutil.copytree(base, repo)  # the same queue for both
            walls[workers], cpus[workers] = measure([*FLOR, "serve", "--workers",
                                                     str(workers)], repo)
            print(f"  --workers {workers}: {walls[workers]:.2f} s for {JOBS} jobs", flush=True)
        ratio = walls[1] / walls[2]
        report.figure("2-worker throughput", f"{ratio:.2f}x ({JOBS / walls[2]:.3f} jobs/s, "
                      f"{fmt_seconds(walls[2])})", ratio >= TARGET, f">= {TARGET}x",
                      f"baseline --workers 1 {fmt_seconds(walls[1])}")
        report.figure("CPU a job costs besides its work",
                      fmt_seconds((cpus[1] - JOBS * SECONDS) / JOBS), None,
                      baseline=f"--workers 1: {cpus[1]:.2f} s CPU for {JOBS} jobs of {SECONDS:g} s")
    finally:
        cleanup(tmp)
    report.exit()


if __name__ == "__main__":
    main()
