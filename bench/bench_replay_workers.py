"""Parallel replay: a nested-loop statement replayed with 2 workers vs 1.

Target (issue 3): at least 1.7x faster with ``--workers 2`` on this 2-core machine.
Baseline: the same replay with ``--workers 1``, which re-runs every epoch in one process.
Both are the wall time of the whole `flor replay grad_norm --yes` command; they alternate
(1, 2, 1, 2, ...) so drift on the shared machine hits both alike. The fixture runs torch
on one thread, so each worker uses one core; 8 epochs of ~6 s make the costs every worker
pays once (interpreter, imports, the prefix, fast-forwarding to its first epoch) small
next to the epochs it re-runs.
"""

from __future__ import annotations

import os

from harness import Report, cleanup, fmt_seconds, median, temp_dir
from replay_common import estimate, record, replay

TARGET = 1.7
REPEATS = int(os.environ.get("BENCH_REPEATS", "1"))
KWARGS = ["epochs=8", "hidden=1024", f"batches={os.environ.get('BENCH_BATCHES', '100')}"]


def main() -> None:
    report = Report("nested-loop replay: --workers 2 vs --workers 1")
    tmp = temp_dir("flor-bench-replay-workers-")
    try:
        rec = record(tmp / "repo", KWARGS)
        walls: dict[int, list[float]] = {1: [], 2: []}
        for i in range(REPEATS):
            for workers in (1, 2):
                est, mode = estimate(rec, "grad_norm", workers)
                done = replay(rec, "grad_norm", workers)
                walls[workers].append(done.wall)
                print(f"  replay {i + 1}/{REPEATS}, --workers {workers}: {done.wall:.2f} s "
                      f"(mode {done.header['mode']}, {done.header['workers']} workers, "
                      f"estimated {est:.1f} s; {done.others})", flush=True)
                if done.header["mode"] != "nested" or done.header["workers"] != workers:
                    raise SystemExit(f"expected a nested replay on {workers} workers: "
                                     f"{done.header}")
        one, two = median(walls[1]), median(walls[2])
        report.figure("2-worker replay speed-up", f"{one / two:.2f}x (median --workers 2 "
                      f"{fmt_seconds(two)}, {REPEATS} replays each)", one / two >= TARGET,
                      f">= {TARGET}x", f"baseline --workers 1 {fmt_seconds(one)}")
    finally:
        cleanup(tmp)
    report.exit()


if __name__ == "__main__":
    main()
