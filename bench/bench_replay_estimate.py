"""Replay estimates: the plan's estimated time vs the time the replay then takes.

Target (issue 3): within 25%, for a memoized replay (outer-loop statement) and a
nested-loop replay on 1 and 2 workers. Estimate: the run's ``est_s`` in the plan that
`flor replay --dry-run --format json` prints, i.e. what the user is shown before being
asked. Actual: the time `flor replay NAME --yes` takes from there on: from the moment it
starts the run (its "replaying" line) to its exit, the note append and the result table
included. The whole command's wall time (start-up and planning too) and the per-run time
flor records (worktree, workers, cleanup) are shown beside it.
"""

from __future__ import annotations

import os

from harness import Report, cleanup, temp_dir
from replay_common import estimate, record, replay

TARGET = 0.25
# 8 epochs of ~4 s: long enough that a 2-worker replay's fixed costs are not all it does.
KWARGS = ["epochs=8", "hidden=1024", f"batches={os.environ.get('BENCH_BATCHES', '60')}"]
CASES = [("weight_norm", 1), ("grad_norm", 1), ("grad_norm", 2)]


def main() -> None:
    report = Report("replay estimate vs actual")
    tmp = temp_dir("flor-bench-replay-estimate-")
    try:
        rec = record(tmp / "repo", KWARGS)
        for name, workers in CASES:
            est, mode = estimate(rec, name, workers)
            done = replay(rec, name, workers)
            error = (est - done.executing) / done.executing
            report.figure(f"estimate, {mode} ({name}, --workers {workers})",
                          f"error {error:+.1%} (estimated {est:.1f} s, actual "
                          f"{done.executing:.2f} s)", abs(error) <= TARGET,
                          f"within {TARGET:.0%}",
                          f"whole command {done.wall:.2f} s: error "
                          f"{(est - done.wall) / done.wall:+.1%}; per-run time "
                          f"{done.run_time:.2f} s; {done.others}")
    finally:
        cleanup(tmp)
    report.exit()


if __name__ == "__main__":
    main()
