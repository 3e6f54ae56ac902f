"""Record overhead: `flor run train.py` against the same script with flor as a no-op.

Target (issue 2): at most 2% on a job whose epochs take 2 s or more.
Baseline: `python train.py` with bench/noop/flor.py first on PYTHONPATH, which does the
same work and records nothing. Runs alternate (noop, flor, noop, flor, ...) after one
untimed warm-up of each, so drift on the shared machine hits both sides alike; the
figure compares medians of whole-process wall time, start-up, snapshot and fold included.

Both sides run with Python's bytecode cache on, as an installed flor does (pip compiles
it at install): with ``PYTHONDONTWRITEBYTECODE`` set, as it is in some development
shells, every flor process would compile flor's modules from source, 50-100 ms per run
that no user pays. flor's ``__pycache__`` directories are git-ignored.
"""

from __future__ import annotations

import json
import os
import subprocess

from harness import FLOR, PYTHON, QUIET_ENV, ROOT, Report, cleanup, fixture, fmt_seconds, \
    make_repo, measure, median, temp_dir, timed

TARGET = 0.02
MIN_EPOCH_SECONDS = 2.0
REPEATS = int(os.environ.get("BENCH_REPEATS", "4"))
# Sizes the fixture so that one epoch takes a few seconds on one CPU thread; five epochs,
# a short training job still, so that per-run costs weigh as they would in one.
KWARGS = ["epochs=5", "batches=300", "batch_size=256", "hidden=512", "width=256"]


def main() -> None:
    report = Report("record overhead: flor run vs no-op flor")
    tmp = temp_dir("flor-bench-record-")
    try:
        repo = make_repo(tmp / "repo", {"train.py": fixture("train.py"),
                                        ".gitignore": "data/\n"})
        script = ["train.py", "--kwargs", *KWARGS]
        env = {k: v for k, v in QUIET_ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
        noop_env = {**env, "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "bench" / "noop"), env.get("PYTHONPATH", "")])}
        noop_cmd = [PYTHON, *script]
        flor_cmd = [*FLOR, "run", *script]
        timed(noop_cmd, repo, noop_env)  # warm-up: page cache, torch's first import
        timed(flor_cmd, repo, env)
        noop, recorded = [], []
        for i in range(REPEATS):
            noop.append(measure(noop_cmd, repo, noop_env))
            recorded.append(measure(flor_cmd, repo, env))
            print(f"  pair {i + 1}/{REPEATS}: wall noop {noop[-1][0]:.3f} s, "
                  f"flor {recorded[-1][0]:.3f} s; CPU noop {noop[-1][1]:.3f} s, "
                  f"flor {recorded[-1][1]:.3f} s; load average {os.getloadavg()[0]:.1f}",
                  flush=True)
        epoch = _shortest_epoch(repo)
        report.figure("epoch length (fixture)", f"{epoch:.2f} s (shortest recorded epoch)",
                      epoch >= MIN_EPOCH_SECONDS, f">= {MIN_EPOCH_SECONDS:.0f} s")
        base, flor = median([w for w, _ in noop]), median([w for w, _ in recorded])
        overhead = (flor - base) / base
        report.figure(
            "record overhead (wall)", f"{overhead:+.2%} (median flor run {fmt_seconds(flor)}, "
            f"{REPEATS} runs each)", overhead <= TARGET, f"<= {TARGET:.0%}",
            f"baseline no-op flor {fmt_seconds(base)}: ratio {flor / base:.3f}")
        base, flor = median([c for _, c in noop]), median([c for _, c in recorded])
        report.figure(
            "record overhead (CPU)", f"{(flor - base) / base:+.2%} (median flor run "
            f"{fmt_seconds(flor)} CPU)", None, "",
            f"baseline no-op flor {fmt_seconds(base)} CPU: ratio {flor / base:.3f}")
    finally:
        cleanup(tmp)
    report.exit()


def _shortest_epoch(repo) -> float:
    """The shortest outer-loop iteration any recorded run saw, from its own timings."""
    out = subprocess.run(
        [*FLOR, "query", "SELECT min(sec) AS sec FROM timings WHERE kind='outer'", "--json"],
        cwd=repo, capture_output=True, text=True, check=True, env=QUIET_ENV).stdout
    return float(json.loads(out)[0]["sec"])


if __name__ == "__main__":
    main()
