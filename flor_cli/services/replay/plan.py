"""Plan a replay: which runs, what code each one runs, in which mode, at what cost.

Everything that can be wrong with a replay is found here, before anything runs or is
written: an unknown name or bad ``--where`` is a UserError; a run that cannot be replayed
(shadow commit or script gone, no place for a statement in its code, unfinished run)
stays in the plan with the reason it is skipped. Planning only reads: the runs cache,
the notes, the shadow commits' blobs and the checkpoint store (and corrects the cache's
availability of a run whose objects were deleted behind its back: :func:`lost_objects`).

The mode follows from where the requested statements land in each run's (transplanted)
code, the most demanding level winning: prefix-only statements stop at the main loop,
outer-loop and suffix statements skip nested loops by restoring checkpoints, and nested
statements re-run the nested loops (epochs split across workers, each after the first
fast-forwarding to its epochs by restoring). A ``skip`` whose code reads something the
checkpoints do not hold (see :mod:`reads`) becomes a re-execution, a ``nested`` run with
several workers one worker re-executing every epoch; the plan's note says which name
forced it. Each distinct code's first run that restores anything is verified
(:func:`check_range`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Sequence

from flor_cli.cores import usable_cores
from flor_cli.errors import UserError
from flor_cli.services import query
from flor_cli.storage import cache, notes
from flor_cli.storage.git import NOTES_REF, Git
from flor_cli.storage.notes import (ARG, BLOCK, CKPT, CTX, KIND, NAME, NESTED, OBJECTS, OUTER, PREFIX,
                                    SECONDS, SHA, SUFFIX, TIME, TIMING, VALUE)
from flor_cli.storage.objects import ObjectStore, configured_store, is_digest

# Seconds a replayed run costs besides its workers: worktree checkout and links, the
# note append, cleanup (1.1 s measured on the 2-core dev VM under load); a repository's
# own last replay of the run replaces it with what it measured there (``fixed``).
FIXED_SECONDS = 1.0
MODE_OF_LEVEL = {"prefix": "prefix", "outer_before": "skip", "outer_after": "skip",
                 "suffix": "skip", "nested": "nested"}
DEMAND = ("prefix", "skip", "nested")  # least to most re-execution
COLUMNS = ["run", "by", "commit", "version", "mode", "epochs", "start", "est_s", "note"]


@dataclass
class Job:
    """One run to replay (or skipped, with ``skip`` saying why)."""

    run: str
    commit: str
    by: str = ""  # user@host that recorded the run: whose code a replay runs (SECURITY.md)
    script: str = ""  # path relative to the repository root, as recorded
    cwd: str = "."  # the run's working directory, relative to the repository root
    argv: list[str] = field(default_factory=list)
    big: list[dict] | None = None  # the header's untracked big files left out of the tree (bigfiles)
    args: dict = field(default_factory=dict)  # what flor.arg resolved in the run
    epochs: int = 0
    version: str = ""  # blob id of the run's script: one per distinct code version
    old_source: str = ""
    source: str = ""  # the old script with today's statements transplanted
    src: dict[str, str] = field(default_factory=dict)  # name -> today's statement
    levels: list[str] = field(default_factory=list)  # where they land in its code (mainloop)
    mode: str = ""
    blocks: int = 0  # flor.checkpointing blocks the run entered (a sweep enters several)
    ckpts: list[dict] = field(default_factory=list)  # those whose objects are all present
    missing_ckpts: int = 0
    lost: list[str] = field(default_factory=list)  # objects the cache said were held
    times: list[dict] = field(default_factory=list)  # the run's timing records
    est: float = 0.0
    fixed: float = FIXED_SECONDS  # per-run cost besides the workers, as last measured
    check: list[int | None] | None = None  # epochs a verifying worker re-executes
    workers: int = 1  # nested mode: its workers, each replaying a range of epochs; one
    # (no epoch fast-forwarded by restoring) where what a restore leaves is not trusted
    skip: str | None = None
    why: str = ""  # why the mode is slower than the statements' levels need
    start: str = "fresh"  # its workers: forked from a slot's fork server, fresh, or ray
    # interpreters (each paying the interpreter start and the script's imports)

    @property
    def checkpointing(self) -> bool:
        """Whether the run's main loop was inside flor.checkpointing (it checkpointed)."""
        return self.blocks > 0


@dataclass
class Plan:
    names: list[str]
    workers: int
    store: ObjectStore
    jobs: list[Job]
    verify: bool = True  # replay one epoch both ways for each distinct code (execute.py)
    nothing: str | None = None  # why there is nothing to do (every run has the names)
    parallel: int = 1  # runs replayed at once (--jobs)
    fork: bool = False  # workers forked from fork servers (services/replay/forks.py)

    @property
    def runnable(self) -> list[Job]:
        return [j for j in self.jobs if j.skip is None]

    @property
    def seconds(self) -> float:
        """Estimated wall time: the runs' estimates shared among the ``parallel`` slots
        (a code's verifying run goes first, so this is the least it can take)."""
        runs = self.runnable
        return sum(j.est for j in runs) / max(1, min(self.parallel, len(runs)))

    def table(self) -> tuple[list[str], list[tuple]]:
        return COLUMNS, [
            (j.run, j.by, j.commit[:10], j.version[:7], j.mode or "-", j.epochs,
             j.start if j.skip is None else None, round(j.est, 1) if j.skip is None else None, j.skip or _note(j))
            for j in self.jobs]


def make_plan(git: Git, names: Sequence[str], where: str | None = None, workers: int = 1,
              rev: str | None = None, verify: bool = True, jobs: int | None = None,
              fork: bool = True, on_ray: bool = False) -> Plan:
    """``jobs``: runs replayed at once (None: :func:`default_jobs`); ``fork``: start
    workers from fork servers where this platform can (else fresh interpreters);
    ``on_ray``: every worker is a Ray task."""
    names = list(dict.fromkeys(names))
    if not names:
        raise UserError("name at least one logged value to replay")
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    parallel = jobs if jobs is not None else default_jobs(workers)
    fork = fork and not on_ray
    if fork:
        from flor_cli.services.replay.forks import can_fork

        fork = can_fork() is None
    rev_commit = None
    if rev is not None:
        rev_commit = git.ref(rev)
        if rev_commit is None:
            raise UserError(f"--rev {rev}: no such commit")
    selected = _select(git, names, where)
    store = configured_store(git)
    if not selected:
        return Plan(names, workers, store, [], verify,
                    nothing=f"every run already has {', '.join(names)} "
                            "(use --where to replay some again)", parallel=parallel, fork=fork)
    tip = git.ref(NOTES_REF)  # read every note from one notes commit
    complete = _complete_runs(git, [run for run, _ in selected])
    runs = [_job(git, store, tip, run, commit, run in complete) for run, commit in selected]
    lost_objects(git, {job.run: job.lost for job in runs if job.lost})
    _attach_code(git, runs, names, rev_commit, workers)
    verifying: set[tuple[str, str]] = set()
    for job in runs:
        if job.skip is None:
            code = (job.script, job.source)
            if verify and code not in verifying:
                job.check = check_range(job)
                if job.check is not None:
                    verifying.add(code)
            job.est = estimate(job)
            job.start = "ray" if on_ray else "fork" if fork else "fresh"
    return Plan(names, workers, store, runs, verify, parallel=parallel, fork=fork)


def default_jobs(workers: int) -> int:
    """Runs at once when ``--jobs`` is not given: the cores this process may use, each
    run taking ``workers`` of them (a verifying run one more, for a few epochs), so that
    jobs x workers processes do not oversubscribe the machine; at least 1."""
    return max(1, usable_cores() // workers)


def _held(store: ObjectStore, sha: object, complete: bool) -> bool:
    """Whether a worker can read object ``sha``: a stat of the local store (as cheap as
    the cache, and right even when a file was deleted by hand), and where it is not
    there, a remote store's answer from the cache (``complete``: the cache's
    availability counts none of the run's objects missing), asking the remote only for
    a run the cache has no such answer for."""
    if not isinstance(sha, str) or not is_digest(sha):
        return False
    if store.path(sha).exists():
        return True
    return store.remote is not None and (complete or store.has(sha))


def _complete_runs(git: Git, runs: list[str]) -> set[str]:
    """The runs whose checkpoint objects are all in a store this clone reads, by the
    cache's ``availability`` (kept up to date when objects are written, pulled or
    collected, one listing of a remote store for all): a remote store is not asked
    about them again, object by object."""
    with cache.connection(git) as db:
        return {run for (run,) in db.execute(
            "SELECT run FROM availability WHERE missing = 0 AND run IN "
            "(SELECT value FROM json_each(?))", (json.dumps(runs),))}


def lost_objects(git: Git, lost: dict[str, list[str]]) -> None:
    """Checkpoint objects the cache's availability counted as held, found in no store
    (deleted by hand), by run: one line on stderr for each run, whose nested loops
    re-execute instead of restoring them, and the runs' availability checked again."""
    if not lost:
        return
    for run, digests in lost.items():
        more = f" and {len(digests) - 1} more" if len(digests) > 1 else ""
        print(f"flor: run {run}: checkpoint object {digests[0][:12]}{more} is in no store "
              "(deleted?): its nested loops re-execute instead", file=sys.stderr)
    with cache.connection(git) as db:
        cache.refresh_availability(git, db, runs=list(lost))


def _select(git: Git, names: list[str], where: str | None) -> list[tuple[str, str]]:
    """(run, shadow commit) of the selected runs, oldest first; by default those lacking
    a name (none: nothing to do)."""
    with cache.connection(git) as db:
        commits = dict(db.execute("SELECT run, commit_id FROM runs"))
        if not commits:
            raise UserError("no runs recorded in this repository yet")
        if where is None:
            having = [{r for (r,) in db.execute("SELECT DISTINCT run FROM logs WHERE name=?", (n,))}
                      for n in names]
            order = [r for (r,) in db.execute("SELECT run FROM runs ORDER BY start, run")]
            runs = [r for r in order if not all(r in h for h in having)]
            return [(r, commits[r]) for r in runs]
    columns, rows = query.runs(git, where=where, sort="time, run")
    runs = [r for r in (row[columns.index("run")] for row in rows) if r in commits]  # ended
    if not runs:
        raise UserError(f"--where {where}: no runs match")
    return [(r, commits[r]) for r in runs]


def _job(git: Git, store: ObjectStore, tip: str | None, run: str, commit: str,
         complete: bool = False) -> Job:
    """The run's job; ``complete``: the cache knows all its checkpoint objects are held."""
    job = Job(run, commit)
    text = git.read_note(commit, tip)
    note = notes.parse(commit, text) if text else None
    if note is None:
        job.skip = "its note is missing"
        return job
    header = note.header
    job.by = f"{header.get('user') or '?'}@{header.get('host') or '?'}"
    job.script, job.cwd = header.get("script", ""), header.get("cwd", ".")
    job.argv = list(header.get("argv", []))
    job.big = header.get("big")
    job.args = {r[NAME]: r.get(VALUE) for r in note.records if r[KIND] == ARG}
    job.times = notes.main_timings(note.records)
    job.fixed = next((r["fixed"] for r in reversed(note.replays)
                      if isinstance(r.get("fixed"), (int, float))), FIXED_SECONDS)
    job.epochs = sum(1 for r in job.times if r.get(TIMING) == OUTER)
    # A checkpoint with an object missing from the store (deleted, a shared store out of
    # reach) costs time, not exactness: its nested loop re-runs from the exact state.
    ckpts = [r for r in note.records if r[KIND] == CKPT]
    # blocks the run entered, from its checkpoints and its epochs' timings (a main loop
    # with no nested loop checkpoints nothing, yet it was the block's)
    job.blocks = 1 + max([notes.loop_key_of(c)[0] for c in ckpts]
                         + [r.get(BLOCK, -1) for r in note.records
                            if r[KIND] == TIME and r.get(TIMING) == OUTER], default=-1)
    job.ckpts = [c for c in ckpts
                 if all(_held(store, o.get("sha"), complete)
                        for o in (c.get(OBJECTS) or {}).values())]
    job.missing_ckpts = len(ckpts) - len(job.ckpts)
    if complete and job.missing_ckpts:  # the cache counted all held: deleted by hand
        job.lost = sorted({o[SHA] for c in ckpts for o in c[OBJECTS].values()
                           if not _held(store, o[SHA], complete)})
    if header.get("status") != "ok":
        job.skip = f"the run did not finish (status {header.get('status')})"
    elif not notes.inside(job.script):  # as recorded: its working directory and big
        job.skip = "its script is outside the repository"  # files are checked on decode
    elif commit not in git.repo:
        job.skip = f"its shadow commit {commit[:10]} is missing (fetch flor.shadow)"
    else:
        try:
            blob = git.repo.revparse_single(f"{commit}:{job.script}")
            job.version, job.old_source = str(blob.id), blob.data.decode()
        except (KeyError, ValueError, UnicodeDecodeError,
                AttributeError):  # a tree, not a file: a script "" or "."
            job.skip = f"its script {job.script!r} is missing from commit {commit[:10]}"
    return job


def _attach_code(git: Git, jobs: list[Job], names: list[str], rev: str | None,
                 workers: int) -> None:
    """Transplant today's statements into each job's code; the mode follows from it.

    Today's script is looked up per recorded script path, so runs of several scripts can
    be replayed together. A name no selected run's script logs is an error (a typo,
    most likely); a script that lacks it only skips its own runs.
    """
    from flor_cli.services.replay.discover import find_statements
    from flor_cli.services.replay.reads import unheld_reads
    from flor_cli.services.replay.transplant import transplant

    wanted = [j for j in jobs if j.skip is None]
    today: dict[str, tuple[str, dict[str, str]] | UserError] = {}
    for script in dict.fromkeys(j.script for j in wanted):
        try:
            source = _current_source(git, script, rev)
            statements = find_statements(source, names, path=script)
            src: dict[str, list[str]] = {}
            for s in statements:
                src.setdefault(s.name, []).append(s.source)
            today[script] = (source, {n: "\n".join(v) for n, v in src.items()})
        except UserError as e:
            today[script] = e
    if wanted and all(isinstance(v, UserError) for v in today.values()):
        raise next(iter(today.values()))  # type: ignore[misc]
    transplanted: dict[tuple[str, str], str | UserError] = {}
    for job in wanted:
        found = today[job.script]
        if isinstance(found, UserError):
            job.skip = str(found)
            continue
        source, job.src = found
        key = (job.script, job.version)
        if key not in transplanted:
            try:
                transplanted[key] = transplant(names, source, job.old_source,
                                               new_path=job.script,
                                               old_path=f"{job.script}@{job.version[:7]}")
            except UserError as e:
                transplanted[key] = e
        result = transplanted[key]
        if isinstance(result, UserError):
            job.skip = str(result)
            continue
        job.source = result
        job.levels = sorted({s.level for s in find_statements(result, names, path=job.script)})
        job.mode = max((MODE_OF_LEVEL[lvl] for lvl in job.levels), key=DEMAND.index)
        if job.mode == "prefix" and job.blocks > 1:
            job.mode = "skip"  # its main loop started once per block: stopping at the first
            # would miss what the script logs before the others
        if job.mode == "skip":  # a loop with no checkpoint re-executes after restored ones
            unheld = unheld_reads(result, job.ckpts, job.checkpointing, within=_thinned(job))
            if unheld:  # re-executed by one worker: others would fast-forward, restoring
                job.mode = "nested"
                job.why = (f"reads {', '.join(unheld)}, which the checkpoints do not hold: "
                           "nested loops re-executed")
        elif job.mode == "nested" and len(worker_ranges(job.epochs, workers)) > 1:
            # the workers after the first fast-forward to their epochs by restoring: the
            # epochs they re-execute read, in their nested loops too, what a restore left
            unheld = unheld_reads(result, job.ckpts, job.checkpointing, within=True)
            job.workers = 1 if unheld else workers
            if unheld:
                job.why = (f"reads {', '.join(unheld)}, which the checkpoints do not hold: "
                           "one worker re-executes every epoch")


def _thinned(job: Job) -> bool:
    """Whether some nested loop of the run has no checkpoint a worker can restore (thinned
    out, objects missing): it re-executes, after restored ones."""
    held = {notes.loop_key_of(c) for c in job.ckpts}
    return any(notes.loop_key_of(r) not in held for r in job.times if r.get(TIMING) == NESTED)


def _current_source(git: Git, script: str, rev: str | None) -> str:
    if rev is not None:
        try:
            return git.repo.revparse_single(f"{rev}:{script}").data.decode()
        except (KeyError, ValueError):
            raise UserError(f"{script}: not in --rev {rev[:10]}") from None
    try:
        return (git.root / script).read_text()
    except OSError:
        raise UserError(f"{script}: no such file in the working tree") from None


def estimate(job: Job) -> float:
    """Seconds to replay ``job``, from the timings its run recorded: its slowest worker.

    A worker runs the prefix (interpreter start and imports included: every worker pays
    them), fast-forwards the epochs before its range (each less the nested loops a
    checkpoint replaces, plus loading it, taken to cost what saving it did), re-runs the
    epochs of its range in full, and the last one the suffix. ``skip`` is one worker
    fast-forwarding every epoch, beside which a verifying worker re-executes its
    ``check`` range; ``prefix`` stops at the main loop. Plus the run's fixed cost
    besides its workers (``fixed``).
    """
    def total(kind: str) -> float:
        return sum(r.get(SECONDS, 0) for r in job.times if r.get(TIMING) == kind)

    if job.mode == "prefix":
        return total(PREFIX) + job.fixed
    nested = {notes.loop_key_of(r): r.get(SECONDS, 0)
              for r in job.times if r.get(TIMING) == NESTED}
    saved: dict[tuple, float] = {}  # (block, epoch context) -> what restoring saves
    for c in job.ckpts:
        key = notes.loop_key_of(c)
        saved[key[:2]] = saved.get(key[:2], 0) + nested.get(key, 0) - c.get(SECONDS, 0)
    outer = [(notes.loop_key_of(r)[:2], r.get(SECONDS, 0))
             for r in job.times if r.get(TIMING) == OUTER]
    full = [sec for _, sec in outer]
    fast = [sec - saved.get(ctx, 0) for ctx, sec in outer]

    def worker(epochs: list[int] | None) -> float:
        lo, hi = epochs or (0, None)
        return (total(PREFIX) + sum(fast[:lo]) + sum(full[lo:hi])
                + (total(SUFFIX) if hi is None else 0))

    ranges = (worker_ranges(job.epochs, job.workers) if job.mode == "nested"
              else [[job.epochs, None]])
    if job.check is not None:
        ranges.append(job.check)
    return max(0.0, max(worker(r) for r in ranges)) + job.fixed


def check_range(job: Job) -> list[int | None] | None:
    """The epochs a verifying worker re-executes, where the run's other workers restore
    checkpoints; None when there is nothing to verify (nothing restored).

    ``skip``: from the last checkpointed epoch to the end, suffix included (from the one
    before it when a statement logs at an epoch's start, ``outer_before``: only the next
    epoch's value shows that restore). ``nested`` with several workers: the second
    worker fast-forwards to its first epoch by restoring; the verifying worker does the
    same up to the last checkpointed epoch before it and re-executes from there up to
    and including that first epoch.

    Before its range the verifying worker does what the restoring worker does (restores
    the checkpointed epochs, re-executes the thinned-out ones); from there on it
    re-executes where the other restores, so what either logs after that first loop
    compares restoring with re-executing (execute.Verification). It costs one nested
    loop more than the restoring worker (two with an ``outer_before`` statement), which
    re-executes the epochs between checkpoints too."""
    if not job.ckpts or job.epochs < 1 or job.mode == "prefix":
        return None
    held = sorted({list((c.get(CTX) or {0: 0}).values())[-1] for c in job.ckpts})
    if job.mode == "nested":
        ranges = worker_ranges(job.epochs, job.workers)
        first = ranges[1][0] if len(ranges) > 1 and ranges[1] else 0
        before = [epoch for epoch in held if epoch < first]
        return [before[-1], first + 1] if before else None
    lo = held[-2:][0] if "outer_before" in job.levels else held[-1]
    return [min(lo, job.epochs - 1), None]


def worker_ranges(epochs: int, workers: int) -> list[list[int] | None]:
    """Contiguous ``[lo, hi)`` epoch ranges; the last is open so its worker runs the suffix."""
    n = max(1, min(workers, epochs))
    if n == 1:
        return [None]
    bounds = [k * epochs // n for k in range(n + 1)]
    return [[bounds[k], bounds[k + 1] if k < n - 1 else None] for k in range(n)]


def _note(job: Job) -> str:
    notes_ = [job.why] if job.why else []
    if job.missing_ckpts and job.mode != "prefix":
        notes_.append(f"{job.missing_ckpts} checkpoint(s) missing: re-executed instead")
    return "; ".join(notes_)
