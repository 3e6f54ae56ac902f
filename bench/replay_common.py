"""What the replay benchmarks share: a recorded run of ``bench_replay_train.py``, today's
version of the script with the hindsight statements, and the figures a run's note holds.

Each benchmark records its own run (they are standalone), from the fixture with the
``# hindsight`` lines removed, then writes the whole fixture over it in the working tree,
as a user adds a ``flor.log`` after the fact. Replays select the run explicitly with
``--where``, so that a second replay of the same name replays it again.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import FLOR, QUIET_ENV, fixture, make_repo, timed

SCRIPT = "bench_replay_train.py"


@dataclass
class Recorded:
    """The recorded run's figures, from its note: what replay estimates from."""

    repo: Path
    run: str
    wall: float  # end - start: the whole run, interpreter start and imports included
    prefix: float
    outer: list[float]
    nested: list[float]
    suffix: float
    ckpt_save: list[float]

    @property
    def nested_share(self) -> float:
        return sum(self.nested) / self.wall

    def ideal_memoized(self) -> float:
        """Replay with nothing but the work it cannot skip: the prefix, each epoch less its
        nested loop, the suffix, and loading each checkpoint (taken to cost its save)."""
        return (self.prefix + sum(o - n for o, n in zip(self.outer, self.nested))
                + self.suffix + sum(self.ckpt_save))


def record(path: Path, kwargs: list[str]) -> Recorded:
    """A repository with one run of the fixture (without its hindsight lines) recorded,
    and today's fixture, with them, in the working tree."""
    today = fixture(SCRIPT)
    old = "".join(line for line in today.splitlines(keepends=True) if "# hindsight" not in line)
    repo = make_repo(path, {"train.py": old})
    print(f"  recording train.py --kwargs {' '.join(kwargs)} ...", flush=True)
    wait_idle()
    with Others() as others:
        timed([*FLOR, "run", "train.py", "--kwargs", *kwargs], repo)
    (repo / "train.py").write_text(today)
    note = show(repo, "latest")
    times = [r for r in note["records"] if r.get("t") == "time"]

    def secs(kind: str) -> list[float]:
        return [r["sec"] for r in times if r.get("k") == kind]

    header = note["header"]
    rec = Recorded(repo, header["run"], header["end"] - header["start"], sum(secs("prefix")),
                   secs("outer"), secs("nested"), sum(secs("suffix")),
                   [r["sec"] for r in note["records"] if r.get("t") == "ckpt"])
    print(f"  recorded run {rec.run}: {rec.wall:.1f} s, {len(rec.outer)} epochs of "
          f"{min(rec.outer):.1f}-{max(rec.outer):.1f} s, prefix {rec.prefix:.2f} s, "
          f"{len(rec.ckpt_save)} checkpoints; {others}", flush=True)
    return rec


def show(repo: Path, run: str) -> dict:
    return json.loads(_flor(repo, "show", run, "--format", "json"))


def estimate(rec: Recorded, name: str, workers: int) -> tuple[float, str]:
    """(estimated seconds, mode) of replaying ``name`` into the run, from ``--dry-run``."""
    plan = json.loads(_flor(rec.repo, "replay", name, "--dry-run", "--workers", str(workers),
                            "--where", f"run = '{rec.run}'", "--format", "json"))
    (row,) = plan
    return float(row["est_s"]), row["mode"]


@dataclass
class Replayed:
    wall: float  # the whole `flor replay --yes` command
    executing: float  # from the first run's start (the plan shown, the question answered)
    header: dict  # the replay header appended to the run's note
    others: "Others"  # what the rest of the machine did meanwhile

    @property
    def run_time(self) -> float:
        """What flor recorded for the run: worktree, workers, cleanup."""
        return self.header["end"] - self.header["start"]


def replay(rec: Recorded, name: str, workers: int, *options: str) -> Replayed:
    """Replay ``name`` into the run, timing the command and what follows its plan."""
    before = len(show(rec.repo, rec.run)["replays"])
    cmd = [*FLOR, "replay", name, "--yes", "--workers", str(workers),
           "--where", f"run = '{rec.run}'", *options]
    wait_idle()
    with Others() as others:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=rec.repo, env=QUIET_ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        executing, err = None, []
        for line in proc.stderr:  # type: ignore[union-attr]
            if executing is None and line.startswith("replaying "):
                executing = time.perf_counter()
            err.append(line)
        proc.wait()
        end = time.perf_counter()
    if proc.returncode != 0 or executing is None:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{''.join(err)}")
    replays = show(rec.repo, rec.run)["replays"]
    if len(replays) != before + 1:
        raise SystemExit(f"flor replay {name} appended {len(replays) - before} replays")
    return Replayed(end - start, end - executing, replays[-1], others)


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds used by this process and its waited-for children (workers included)."""
    me, kids = (resource.getrusage(who) for who in
                (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Others:
    """The cores other processes used, on average, during a ``with`` block."""

    def __enter__(self) -> "Others":
        self.busy, self.own, self.start = busy_seconds(), own_seconds(), time.perf_counter()
        self.cores = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        used = (busy_seconds() - self.busy) - (own_seconds() - self.own)
        self.cores = max(0.0, used / (time.perf_counter() - self.start))

    def __str__(self) -> str:
        return f"other processes used {self.cores:.2f} cores meanwhile"


def wait_idle(limit: float = 60.0, threshold: float = 0.25) -> None:
    """Wait (up to ``limit`` s) until other processes use less than ``threshold`` of a core.

    The machine is shared: a replay measured while someone else's job holds a core says
    more about that job than about replay (each figure prints what others used)."""
    deadline = time.monotonic() + limit
    while True:
        with Others() as others:
            time.sleep(2.0)
        if others.cores < threshold or time.monotonic() > deadline:
            return


def _flor(repo: Path, *args: str) -> str:
    proc = subprocess.run([*FLOR, *args], cwd=repo, capture_output=True, text=True,
                          env=QUIET_ENV)
    if proc.returncode != 0:
        raise SystemExit(f"flor {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout
