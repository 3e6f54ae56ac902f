"""Replaying many runs: ``flor replay --jobs`` (default: the cores) vs one run at a time.

Target (issue 14): 50 memoized runs replay in at most 0.6x the serial time on 2 cores.
Baseline: ``--jobs 1 --no-fork``, what replay did before --jobs: one run after another,
each worker a fresh interpreter importing torch. Also measured: ``--jobs 1`` (forked
workers, one run at a time), whose difference from the baseline is the start-up that
forking saves per run. Each is the wall time of the whole ``flor replay weight_norm
--where 1=1 --yes`` over every run (``--where`` replays them all again each time); the
notes commits each replay added are counted (the runs' records go in batches).

``BENCH_RUNS`` (default 50) runs of ``bench_replay_train.py`` at a small size are
recorded first, two at a time.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from harness import FLOR, QUIET_ENV, Report, cleanup, fixture, fmt_seconds, git, make_repo, \
    temp_dir
from replay_common import Others, wait_idle

TARGET = 0.6
RUNS = int(os.environ.get("BENCH_RUNS", "50"))
KWARGS = ["epochs=3", "batches=4", "hidden=64", "width=32", "batch_size=64"]
CONFIGS = {"serial, fresh (--jobs 1 --no-fork)": ["--jobs", "1", "--no-fork"],
           "serial, forked (--jobs 1)": ["--jobs", "1"],
           "default --jobs": []}


def record(repo: Path) -> None:
    """RUNS runs (lr differs), two ``flor run`` at a time; today's script in the worktree."""
    today = fixture("bench_replay_train.py")
    old = "".join(line for line in today.splitlines(keepends=True) if "# hindsight" not in line)
    make_repo(repo, {"train.py": old})
    print(f"  recording {RUNS} runs of train.py --kwargs {' '.join(KWARGS)} ...", flush=True)
    start = time.perf_counter()
    for first in range(0, RUNS, 2):
        procs = [subprocess.Popen([*FLOR, "run", "train.py", "--kwargs", *KWARGS,
                                   f"lr={0.01 + 0.001 * k}"], cwd=repo, env=QUIET_ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for k in range(first, min(first + 2, RUNS))]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"flor run failed: {err}")
    print(f"  recorded in {time.perf_counter() - start:.1f} s", flush=True)
    (repo / "train.py").write_text(today)


def replay(repo: Path, options: list[str]) -> tuple[float, int, str]:
    """(wall seconds, notes commits added, what others used) of one replay of every run."""
    commits = int(git(repo, "rev-list", "--count", "refs/notes/flor"))
    wait_idle()
    with Others() as others:
        start = time.perf_counter()
        proc = subprocess.run([*FLOR, "replay", "weight_norm", "--where", "1=1", "--yes",
                               *options], cwd=repo, env=QUIET_ENV, capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"flor replay {' '.join(options)} exited {proc.returncode}:\n"
                         f"{proc.stderr[-3000:]}")
    added = int(git(repo, "rev-list", "--count", "refs/notes/flor")) - commits
    return wall, added, str(others)


def main() -> None:
    report = Report(f"replaying {RUNS} runs: default --jobs vs one at a time")
    tmp = temp_dir("flor-bench-replay-jobs-")
    try:
        repo = tmp / "repo"
        record(repo)
        walls = {}
        for name, options in CONFIGS.items():
            wall, commits, others = replay(repo, options)
            walls[name] = wall
            print(f"  {name}: {wall:.2f} s for {RUNS} runs ({wall / RUNS:.2f} s a run), "
                  f"{commits} notes commit(s); {others}", flush=True)
        serial, forked, jobs = walls.values()
        report.figure("per-run start-up saved by forking",
                      f"{fmt_seconds((serial - forked) / RUNS)} a run "
                      f"(--jobs 1: {fmt_seconds(forked)} forked, {fmt_seconds(serial)} fresh)",
                      None)
        report.figure(f"{RUNS} runs, default --jobs vs serial", f"{jobs / serial:.2f}x "
                      f"({fmt_seconds(jobs)} vs {fmt_seconds(serial)})", jobs / serial <= TARGET,
                      f"<= {TARGET}x", f"baseline --jobs 1 --no-fork {fmt_seconds(serial)}")
    finally:
        cleanup(tmp)
    report.exit()


if __name__ == "__main__":
    main()
