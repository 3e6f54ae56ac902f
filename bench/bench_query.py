"""Querying at scale: 1,000 runs x ~1,000 records (1,000,000 records) in one repository.

Targets (issue 2), all as wall time of the `flor` subprocess a user waits for:

* cold: rebuilding the cache from the 1,000 notes (cache.db deleted), then
  `flor log --pivot loss`                                            <= 10 s
* warm: `flor log --pivot loss` (10,000 rows, table)                  <= 1 s
* incremental: bringing the cache up to date after one new real `flor run`
  (`cache.connect`, timed in-process)                                 <= 0.2 s
* `flor --help`                                                        <= 0.3 s

Baselines: cold and incremental against the warm no-change `flor log --pivot loss`;
warm against the interpreter start-up that every command pays (`python -c pass`);
`--help` against the same start-up. Extra figures without a target: the 980,000-row
`flor log --pivot step_loss --format csv`, and git reading the notes at 10,000 runs
(`git notes list`, `git log --notes -1`) with flor's 2/38 fan-out against the same
notes in a flat tree (what libgit2's create_note writes).

The runs are synthetic but shaped like real ones (header, args, loop contexts,
timings, checkpoint manifests), written as notes on real shadow commits through
`Git.append_notes`, many notes per notes commit.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time
from pathlib import Path

from harness import FLOR, PYTHON, QUIET_ENV, Report, cleanup, fixture, fmt_seconds, git, \
    make_repo, median, temp_dir, timed

RUNS = 1_000
EPOCHS, STEPS = 10, 98
GIT_RUNS = int(os.environ.get("BENCH_GIT_RUNS", "10000"))
BATCH = 100  # notes per notes commit while building


def main() -> None:
    report = Report(f"query: {RUNS:,} runs x ~{EPOCHS * STEPS + 2 * EPOCHS + 1:,} records")
    tmp = temp_dir("flor-bench-query-")
    try:
        repo = make_repo(tmp / "repo", {"train.py": fixture("train.py"), ".gitignore": "data/\n"})
        started = time.perf_counter()
        records = build_runs(repo, RUNS, EPOCHS, STEPS)
        print(f"  built {RUNS:,} runs, {records:,} records in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        _query_figures(report, repo)
        _git_figures(report, tmp / "git-scale")
    finally:
        cleanup(tmp)
    report.exit()


def _load() -> str:
    """The 1-minute load average: the cores are shared, so each figure is read beside it."""
    return f"{os.getloadavg()[0]:.2f}"


def _query_figures(report: Report, repo: Path) -> None:
    pivot_loss = [*FLOR, "log", "--pivot", "loss"]
    print(f"  load average before the cold runs: {_load()}", flush=True)
    cache_files = [repo / ".git" / "flor" / f"cache.db{suffix}" for suffix in ("", "-wal", "-shm")]
    cold = []
    for _ in range(2):
        for path in cache_files:
            path.unlink(missing_ok=True)
        cold.append(timed(pivot_loss, repo))
    warm = [timed(pivot_loss, repo) for _ in range(5)]
    print(f"  load average after the warm runs: {_load()}", flush=True)
    startup = median([timed([PYTHON, "-c", "pass"], repo) for _ in range(5)])
    rows = _count_rows(pivot_loss + ["--format", "csv"], repo)
    report.figure("cold rebuild + pivot", f"{fmt_seconds(median(cold))} (median of 2)",
                  median(cold) <= 10, "<= 10 s",
                  f"baseline warm pivot {fmt_seconds(median(warm))}: "
                  f"ratio {median(cold) / median(warm):.1f}")
    report.figure("warm pivot loss", f"{fmt_seconds(median(warm))} ({rows:,} rows, table)",
                  median(warm) <= 1, "<= 1 s",
                  f"baseline python start-up {fmt_seconds(startup)}: "
                  f"ratio {median(warm) / startup:.1f}")

    step_csv = [*FLOR, "log", "--pivot", "step_loss", "--format", "csv"]
    big = median([timed(step_csv, repo) for _ in range(2)])
    report.figure("warm pivot step_loss csv",
                  f"{fmt_seconds(big)} ({_count_rows(step_csv, repo):,} rows)", None, "",
                  f"baseline warm pivot loss {fmt_seconds(median(warm))}: "
                  f"ratio {big / median(warm):.1f}")

    sync, cli = [], []
    for _ in range(3):
        timed([*FLOR, "run", "train.py"], repo)
        sync.append(connect_seconds(repo))
        timed([*FLOR, "run", "train.py"], repo)
        cli.append(timed(pivot_loss, repo))
    after = median([timed(pivot_loss, repo) for _ in range(3)])
    report.figure("incremental sync after a run", f"{fmt_seconds(median(sync))} "
                  "(cache.connect, median of 3)", median(sync) <= 0.2, "<= 200 ms",
                  f"baseline warm pivot {fmt_seconds(after)}: "
                  f"ratio {median(sync) / after:.2f}")
    report.figure("flor log right after a run", f"{fmt_seconds(median(cli))} "
                  f"(+{fmt_seconds(max(0.0, median(cli) - after))} over no change)", None, "",
                  f"baseline warm pivot {fmt_seconds(after)}: ratio {median(cli) / after:.2f}")

    helps = [timed([*FLOR, "--help"], repo) for _ in range(10)]
    report.figure("flor --help", f"{fmt_seconds(median(helps))} (median of 10)",
                  median(helps) <= 0.3, "<= 300 ms",
                  f"baseline python start-up {fmt_seconds(startup)}: "
                  f"ratio {median(helps) / startup:.1f}")


def _count_rows(cmd: list[str], repo: Path) -> int:
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=True,
                         env=QUIET_ENV).stdout
    return len(out.splitlines()) - 1  # csv: a header line, then one line per row


def connect_seconds(repo: Path, preload: str = "") -> float:
    """Seconds `cache.connect` takes to take in what changed (the import is not counted,
    nor whatever Python ``preload`` runs first with the repository as ``g``)."""
    code = ("import time; from flor_cli.storage import cache; from flor_cli.storage.git import Git\n"
            f"g = Git('.'); {preload or 'pass'}\n"
            "t = time.perf_counter(); cache.connect(g).close()\n"
            "print(time.perf_counter() - t)")
    out = subprocess.run([PYTHON, "-c", code], cwd=repo, capture_output=True, text=True,
                         check=True, env=QUIET_ENV).stdout
    return float(out)


def _git_figures(report: Report, path: Path) -> None:
    """git itself over GIT_RUNS notes: flor's fan-out against a flat notes tree."""
    repo = make_repo(path, {"train.py": fixture("train.py")})
    build_runs(repo, GIT_RUNS, epochs=2, steps=2)
    _flat_copy(repo, "refs/notes/flat")
    for ref, label in (("flor", "fan-out 2/38"), ("flat", "flat")):
        listed = [timed(["git", "notes", f"--ref={ref}", "list"], repo) for _ in range(5)]
        shown = [timed(["git", "log", f"--notes={ref}", "-1", "flor.shadow"], repo)
                 for _ in range(5)]
        count = len(git(repo, "notes", f"--ref={ref}", "list").splitlines())
        if ref == "flor":
            fanned = (median(listed), median(shown))
            report.figure(f"git notes list ({label})", f"{fmt_seconds(fanned[0])} "
                          f"({count:,} notes)", None)
            report.figure(f"git log --notes -1 ({label})", fmt_seconds(fanned[1]), None)
        else:
            report.figure(f"git notes list ({label})", f"{fmt_seconds(median(listed))} "
                          f"({count:,} notes)", None, "",
                          f"fan-out/flat ratio {fanned[0] / median(listed):.2f}")
            report.figure(f"git log --notes -1 ({label})", fmt_seconds(median(shown)), None,
                          "", f"fan-out/flat ratio {fanned[1] / median(shown):.2f}")


# -- building synthetic runs ---------------------------------------------------------

def build_runs(repo: Path, runs: int, epochs: int, steps: int, append: bool = False,
               store_half: bool = False) -> int:
    """``runs`` shadow commits, each with a note shaped like a real run's; returns records.

    ``append`` adds them on top of the runs already there. Each checkpoint names an
    object of its own (as real ones do); with ``store_half``, every other run's objects
    are in the local object store (as empty files: only their presence is read).
    """
    import pygit2

    from flor_cli.storage import notes
    from flor_cli.storage.git import SHADOW_REF, Git

    g = Git(repo)

    sig = pygit2.Signature("bench", "bench@localhost")
    tree = g.repo.revparse_single("HEAD").peel(pygit2.Tree).id
    head = str(g.repo.head.target)
    first = g.ref(SHADOW_REF) if append else None
    parent, batch, total = (pygit2.Oid(hex=first) if first else None), {}, 0
    start = time.time() - runs * 60.0 - (0 if append else 1e7)
    for i in range(runs):
        run = time.strftime("%Y%m%d-%H%M%S", time.localtime(start + 60 * i)) + f"-{i:06x}"
        commit = str(g.repo.create_commit(None, sig, sig, f"flor run {run}: train.py", tree,
                                          [parent] if parent else []))
        parent = pygit2.Oid(hex=commit)
        header, records = _synthetic_run(run, head, start + 60 * i, epochs, steps, random.Random(i))
        batch[commit] = notes.render(header, records)
        if store_half and i % 2 == 0:
            for record in records:
                for obj in record.get("objs", {}).values():
                    path = g.flor_dir / "objects" / obj["sha"][:2] / obj["sha"][2:]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
        total += sum(1 for r in records if r["t"] in ("log", "arg"))
        if len(batch) == BATCH or i == runs - 1:
            g.append_notes(batch, f"bench: {len(batch)} runs")
            batch = {}
    if not g.cas_ref(SHADOW_REF, str(parent), first, "bench: synthetic runs"):
        raise SystemExit("could not create the shadow branch")
    return total


def _synthetic_run(run: str, head: str, start: float, epochs: int, steps: int,
                   rng: random.Random) -> tuple[dict, list[dict]]:
    lr, batch_size = rng.choice([1e-4, 3e-4, 1e-3, 3e-3]), rng.choice([32, 64, 128])
    header = {"run": run, "script": "train.py", "cwd": ".", "argv": [],
              "kwargs": {"lr": str(lr), "batch_size": str(batch_size)}, "branch": "main",
              "head": head, "start": start, "python": "3.11.7", "host": "bench",
              "user": "bench", "end": start + 55.0, "torch": "2.13.0+cpu", "status": "ok",
              "exit": 0}
    records: list[dict] = [{"t": "arg", "n": "lr", "v": lr}, {"t": "arg", "n": "batch_size",
                                                              "v": batch_size}]
    records.append({"t": "time", "k": "prefix", "sec": 1.2})
    loss = 2.0
    for epoch in range(epochs):
        for step in range(steps):
            loss *= 1 - rng.random() * 0.01
            records.append({"t": "log", "n": "step_loss", "v": loss,
                            "c": {"epoch": epoch, "step": step}})
        records.append({"t": "time", "k": "nested", "c": {"epoch": epoch}, "i": 0, "sec": 4.9})
        records.append({"t": "log", "n": "loss", "v": loss, "c": {"epoch": epoch}})
        records.append({"t": "log", "n": "val_acc", "v": rng.random(), "c": {"epoch": epoch}})
        records.append({"t": "time", "k": "outer", "c": {"epoch": epoch}, "sec": 5.0})
        records.append({"t": "ckpt", "c": {"epoch": epoch}, "i": 0, "bytes": 1_078_832,
                        "sec": 0.012, "objs": {"model": {
                            "kind": "state_dict",
                            "sha": hashlib.sha256(f"{run}/{epoch}".encode()).hexdigest()}}})
    records.append({"t": "log", "n": "accuracy", "v": rng.random(), "c": {}})
    records.append({"t": "time", "k": "suffix", "sec": 0.02})
    for seq, record in enumerate(records):
        record["s"] = seq
    return header, records


def _flat_copy(repo: Path, ref: str) -> None:
    """The same notes in one flat tree (no fan-out), committed under ``ref``."""
    from flor_cli.storage.git import Git

    g = Git(repo)
    builder = g.repo.TreeBuilder()
    for annotated, blob in g.iter_notes():
        builder.insert(annotated, g.repo[blob].id, 0o100644)
    commit = g.commit(str(builder.write()), [], "bench: flat notes")
    g.cas_ref(ref, commit, None, "bench: flat notes")


if __name__ == "__main__":
    main()
