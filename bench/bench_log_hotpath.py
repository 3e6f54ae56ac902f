"""`flor.log` on the hot path: 1,000,000 calls inside nested `flor.loop`s of a live run.

Target (issue 2): at most 2 µs per call.
Baseline: the same nested loops (plain `range`) calling a bare Python function that
appends to a list — the least any logging call can cost.

The script runs in a real recording session, set up exactly as `flor run` does it (a
journal begun in a temporary repository, its path in FLOR_JOURNAL), so the background
thread that turns records into journal lines competes for the interpreter as it would in
training. The run is not folded into a note afterwards: folding is not on the hot path,
and a million-record note would only cost the benchmark time. Rounds alternate baseline
and flor; the figures are medians. A second figure, *log + journal*, adds the time to
drain what is still queued when the loop ends, i.e. the full cost of a record.
"""

from __future__ import annotations

import json
import os
import subprocess

from harness import PYTHON, QUIET_ENV, Report, cleanup, make_repo, median, temp_dir

TARGET_US = 2.0
CALLS = 1_000_000
ROUNDS = int(os.environ.get("BENCH_REPEATS", "3"))

HOT_SCRIPT = '''
import json, random, sys, time
import flor
from flor_cli.runtime import api

OUTER, INNER = 1_000, 1_000
values = [random.random() for _ in range(INNER)]  # losses are arbitrary doubles
sink = []

def bare(name, value):
    sink.append((name, value))

def baseline():
    sink.clear()
    start = time.perf_counter()
    for epoch in range(OUTER):
        for step in range(INNER):
            bare("x", values[step])
    return time.perf_counter() - start

def logged():
    start = time.perf_counter()
    for epoch in flor.loop("epoch", range(OUTER)):
        for step in flor.loop("step", range(INNER)):
            flor.log("x", values[step])
    looped = time.perf_counter() - start
    api._session.flush()  # what the journal thread had left: the rest of a record's cost
    return looped, time.perf_counter() - start

flor.log("warm-up", 0.0)  # starts the session outside the timed loops
results = []
for _ in range(int(sys.argv[1])):
    results.append((baseline(), *logged()))
print(json.dumps(results))
'''


def main() -> None:
    report = Report("flor.log hot path: 1,000,000 calls in a recording session")
    tmp = temp_dir("flor-bench-log-")
    try:
        repo = make_repo(tmp / "repo", {"hot.py": HOT_SCRIPT})
        results = _run_in_session(repo, ROUNDS)
        base = median([b for b, _, _ in results]) / CALLS * 1e6
        looped = median([l for _, l, _ in results]) / CALLS * 1e6
        drained = median([d for _, _, d in results]) / CALLS * 1e6
        report.figure("flor.log", f"{looped:.3f} µs/call (median of {ROUNDS} x {CALLS:,})",
                      looped <= TARGET_US, f"<= {TARGET_US:g} µs",
                      f"baseline bare append call {base:.3f} µs: ratio {looped / base:.1f}")
        report.figure("flor.log + journal write", f"{drained:.3f} µs/record", None, "",
                      f"baseline bare append call {base:.3f} µs: ratio {drained / base:.1f}")
    finally:
        cleanup(tmp)
    report.exit()


def _run_in_session(repo, rounds: int) -> list[tuple[float, float, float]]:
    """Run hot.py as `flor run` would (journal + env), without folding its note."""
    from flor_cli.storage import journal
    from flor_cli.storage.git import Git

    git = Git(repo)
    path = journal.begin(git, str(repo / "hot.py"), [], {})
    env = {**QUIET_ENV, "FLOR_JOURNAL": str(path), "FLOR_STORE": str(git.flor_dir / "objects"),
           "FLOR_KWARGS": "{}"}
    proc = subprocess.run([PYTHON, "hot.py", str(rounds)], cwd=repo, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hot.py failed:\n{proc.stderr}")
    lines = sum(1 for _ in open(path))
    if lines < rounds * CALLS:
        raise SystemExit(f"journal holds {lines} lines, expected {rounds * CALLS:,} records")
    return [tuple(r) for r in json.loads(proc.stdout)]


if __name__ == "__main__":
    main()
