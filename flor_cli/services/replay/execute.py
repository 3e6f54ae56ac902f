"""Execute a replay plan: each run's old code, patched, in a throwaway worktree.

Per run: check its shadow commit out under ``.git/flor/worktrees/`` (the user's
worktree, index, HEAD and branch are never touched), write the transplanted script over
the old one, run it with the interpreter flor runs on (through
:mod:`flor_cli.runtime.replay_worker`, which skips the interpreter's teardown), in the
run's recorded directory with its recorded argv, and ``FLOR_REPLAY`` telling the runtime
what to do (see :mod:`flor_cli.runtime.replay_mode`). In ``nested`` mode the epochs are split into
contiguous ranges, one worker process each, run in parallel.

Verification (on unless the plan says not): the first run of each distinct transplanted
code that would be replayed by skipping nested loops gets one more worker, which
re-executes from its last checkpointed epoch to the end (``nested`` mode; see
plan.check_range) while the others restore. Its values are compared with the restoring
workers'; any difference, or a name they logged after a restore of which no value
compared came after a loop it re-executed where they restored (that name was not
checked), turns skipping off for that code: the run and the later runs of that code are
re-executed by one worker, and the outcome says why.

Runs replay ``plan.parallel`` at a time (``--jobs``), each in a slot's thread that
waits on its worker processes; a code's verifying run ends before the code's other runs
start (other code's runs go on meanwhile). A slot's workers are forked from a fork
server that imported the script's packages once (services/replay/forks.py), unless
``launch`` says how to start them.

A run's new records reach its note only once all its workers have succeeded, in a
notes commit with other finished runs (:class:`NotesBatch`): a replay that fails or is
interrupted half-way has appended the runs that finished and nothing else, so running
it again picks up exactly the runs still lacking. Worktrees are removed whatever happens
(failure, Ctrl-C: every slot's workers are killed first).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Sequence

from flor_cli import progress as progress_bars
from flor_cli.runtime.protocol import ReplayConfig, replay_env
from flor_cli.services.replay.plan import (Job, Plan, check_range, lost_objects,
                                           worker_ranges)
from flor_cli.services.sandbox import (OutsideTree, Sandbox, prune_stale_worktrees,
                                       replay_home, replay_homes, untracked_paths,
                                       write_script)
from flor_cli.storage import bigfiles, notes
from flor_cli.storage.git import Git
from flor_cli.storage.journal import new_id
from flor_cli.storage.notes import (CKPT_LOAD, CTX, KIND, LOG, MISSING, NAME, NESTED, OUTER,
                                    REPLAY, REPLAY_ID, SECONDS, SEQ, SHA, STARTUP, TIME, TIMING,
                                    VALUE)

POLL_SECONDS = 0.2
BATCH_RUNS = 64  # finished runs per notes commit, at most
BATCH_SECONDS = 10.0  # and at most this long between a run's end and its commit


@dataclass
class Verification:
    """One run replayed both ways from a checkpointed epoch to its end (restored and
    re-executed; plan.check_range), compared value by value. A name logged after a
    restore none of whose compared values tested one was not verified: that fails
    like a difference (``failed``), so that no value is replayed by skipping unchecked
    (:func:`_compare`)."""

    run: str
    script: str
    epochs: list[int | None]  # the re-executed range [lo, hi); hi None: to the end
    diverged: str | None = None  # the first value that differed, and where
    compared: int = 0  # values compared that a restore could have changed
    unchecked: list[str] = field(default_factory=list)  # names a restore may have changed,
    # none of whose values was compared where a restore could show

    @property
    def failed(self) -> str | None:
        """Why skipping cannot be trusted for this code; None if the check passed."""
        if self.diverged:
            return self.diverged
        if self.unchecked:
            lo, hi = self.epochs
            return (f"compared nothing of {', '.join(map(repr, self.unchecked))}: the "
                    "re-executing worker logged no such value after a restored nested loop "
                    f"(epochs {lo} to {'the end' if hi is None else hi - 1})")
        return None

    def record(self) -> dict:
        return {"epochs": self.epochs, "ok": self.failed is None, "compared": self.compared,
                **({"diverged": self.diverged} if self.diverged else {}),
                **({"unchecked": self.unchecked} if self.unchecked else {})}


@dataclass
class Outcome:
    replay_id: str
    done: list[str] = field(default_factory=list)  # runs whose notes got the new records
    failed: dict[str, str] = field(default_factory=dict)  # run -> why
    verified: list[Verification] = field(default_factory=list)


class Failed(Exception):
    """A worker of a run exited non-zero; the run's note is left as it was."""


class Interrupted(Exception):
    """The replay stopped (Ctrl-C, another run's fatal error) while this run ran."""


def execute(git: Git, plan: Plan, gpus: Sequence[str] = (),
            launch: "Launch | None" = None) -> Outcome:
    """Replay the plan's runs, ``plan.parallel`` at a time; a failed run is reported,
    not fatal.

    Scratch files (workers' journals and output) live in ``.git/flor/replays/<id>/``,
    away from the run journals that every flor command folds; a failed run's output is
    kept there for its error message to point to. ``launch`` starts each worker (default:
    a local process, forked from a slot's fork server when ``plan.fork``; ``flor replay
    --ray``: a Ray task, services/ray_engine.RayReplay).

    Runs go to slots in the plan's order, except that a run whose code has a verifying
    run waits until that run has ended (it decides how the code's runs replay); runs of
    other code go on meanwhile. A finished run's records wait in a :class:`NotesBatch`
    for one notes commit with others.
    """
    outcome = Outcome(new_id())
    prune_stale_worktrees(git)
    scratch = git.flor_dir / "replays" / outcome.replay_id
    extra = untracked_paths(git)
    batch = NotesBatch(git, outcome, plan.names)
    slots = [Slot(k, _slot_launcher(git, plan, scratch, k, launch))
             for k in range(max(1, min(plan.parallel, len(plan.runnable))))]
    scheduler = Scheduler(git, plan, outcome, Progress(plan.runnable, sys.stderr), batch)
    context = RunContext(git, plan, gpus, scratch, extra, outcome.replay_id,
                         scheduler.progress, threading.Event())
    try:
        for slot in slots:
            slot.begin(context, scheduler.finished)
        scheduler.run(slots)
    except BaseException:
        context.stop.set()  # running workers are killed, their worktrees removed
        for slot in slots:
            slot.end()
        scheduler.drain()  # runs that finished meanwhile still reach their notes
        with contextlib.suppress(Exception):  # the error to report is the first one
            batch.flush()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    for slot in slots:
        slot.end()
    batch.flush()
    if not outcome.failed:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome


def _worktree(git: Git, name: str, commit: str, extra: list[str], launch: "Launch | None"
              ) -> "Sandbox | nullcontext[None]":
    """The run's worktree, ``.git/flor/worktrees/NAME``; none (None) when the launcher's
    workers bring their own copy of the code (``launch.ships_code``: a Ray task unpacks
    the commit's archive with the transplanted script in it)."""
    if getattr(launch, "ships_code", False):
        return nullcontext(None)
    return Sandbox(git, replay_home(git, name), commit, extra)


def _slot_launcher(git: Git, plan: Plan, scratch: Path, slot: int,
                   launch: "Launch | None") -> "Launch":
    if launch is not None:
        return launch
    if not plan.fork:
        return _launch
    from flor_cli.services.replay.forks import ForkLauncher

    return ForkLauncher(_launch, scratch, slot, [git.root, replay_homes(git)])


@dataclass
class RunContext:
    """What every run of one replay shares."""

    git: Git
    plan: Plan
    gpus: Sequence[str]
    scratch: Path
    extra: list[str]  # untracked paths linked into each worktree
    replay_id: str
    progress: "Progress"
    stop: threading.Event  # set on Ctrl-C or a fatal error: workers are killed


@dataclass
class Finished:
    """What a slot hands back for one run."""

    job: Job
    text: str | None = None  # the note's addition (None: the run failed)
    error: str | None = None
    fatal: BaseException | None = None  # not the run's failure: the replay's (a bug, Ctrl-C)
    verification: Verification | None = None
    seconds: float = 0.0
    lost: list[str] = field(default_factory=list)  # objects its workers found in no store


class Slot:
    """One of ``--jobs`` places: a thread that replays the runs given to it, one at a
    time, with its own launcher (a fork server lives as long as the slot; PDEATHSIG ties
    it to the thread that started it, so it is always this one)."""

    def __init__(self, index: int, launch: "Launch"):
        self.index, self.launch = index, launch
        self.inbox: queue.Queue[tuple[Job, list[str]] | None] = queue.Queue()
        self.job: Job | None = None
        self.thread: threading.Thread | None = None

    def begin(self, context: RunContext, finished: "queue.Queue[Finished]") -> None:
        self.thread = threading.Thread(target=self._serve, args=(context, finished),
                                       name=f"flor-replay-slot-{self.index}", daemon=True)
        self.thread.start()

    def give(self, job: Job, big: list[str]) -> None:
        self.job = job
        self.inbox.put((job, big))

    def _serve(self, context: RunContext, finished: "queue.Queue[Finished]") -> None:
        try:
            self._warm(context)
            while (item := self.inbox.get()) is not None:
                finished.put(_replay_run(context, self, *item))
        finally:
            close = getattr(self.launch, "close", None)
            if close is not None:
                close()

    def _warm(self, context: RunContext) -> None:
        """Have the launcher ready for the plan's first run (a fork server importing)."""
        warm = getattr(self.launch, "warm", None)
        if warm is not None and context.plan.runnable:
            first = context.plan.runnable[0]
            try:
                warm(first, context.git.root / os.path.dirname(first.script), _worker_env())
            except Exception:  # noqa: BLE001  the first run starts it, or starts fresh
                pass

    def end(self) -> None:
        self.inbox.put(None)
        if self.thread is not None:
            self.thread.join()


class Scheduler:
    """Gives runs to free slots in the plan's order, verifying runs first, and takes
    back what they finished."""

    def __init__(self, git: Git, plan: Plan, outcome: Outcome, progress: "Progress",
                 batch: "NotesBatch"):
        self.git, self.plan, self.outcome, self.progress = git, plan, outcome, progress
        self.batch = batch
        self.finished: queue.Queue[Finished] = queue.Queue()
        self.pending = list(plan.runnable)
        # per distinct transplanted code: the run verifying it, until it has ended
        self.verifying = {_code(j): j for j in self.pending if j.check is not None}
        self.checked: dict[tuple[str, str], Verification] = {}

    def run(self, slots: list[Slot]) -> None:
        busy: dict[str, Slot] = {}
        while self.pending or busy:
            for slot in slots:
                if slot not in busy.values() and (job := self._next()) is not None:
                    self._give(slot, job)
                    busy[job.run] = slot
            try:
                done = self.finished.get(timeout=1.0)
            except queue.Empty:
                self.batch.flush_if_due()
                continue
            busy.pop(done.job.run, None)
            self._take(done)

    def _next(self) -> Job | None:
        for job in self.pending:
            if self.verifying.get(_code(job), job) is job:
                self.pending.remove(job)
                return job
        return None

    def _give(self, slot: Slot, job: Job) -> None:
        earlier = self.checked.get(_code(job))
        if earlier is not None and earlier.failed and (job.mode == "skip" or job.workers > 1):
            job.mode, job.workers = "nested", 1
            job.why = f"verification failed on run {earlier.run}"
        big, warnings = bigfiles.recorded(self.git, job.big)  # left out of its tree
        for line in warnings:
            print(line, file=sys.stderr)
        self.progress.start(job)
        slot.give(job, big)

    def _take(self, done: Finished) -> None:
        job = done.job
        if self.verifying.get(_code(job)) is job:
            del self.verifying[_code(job)]
            if done.verification is None:  # it failed before verifying
                self._verify_next(job)
        if done.fatal is not None:
            raise done.fatal
        if done.verification is not None:
            self.checked[_code(job)] = done.verification
            self.outcome.verified.append(done.verification)
        if done.lost:  # its workers re-executed where they could not restore
            lost_objects(self.git, {job.run: done.lost})
        if done.text is not None:
            self.batch.add(job, done.text)
        else:
            self.outcome.failed[job.run] = done.error or "failed"
        self.progress.finish(job, done.error, done.seconds)
        self.batch.flush_if_due()

    def _verify_next(self, failed: Job) -> None:
        """The next run of ``failed``'s code that restores anything verifies it instead:
        without a verification its other runs would skip nested loops unchecked."""
        for job in self.pending:
            if _code(job) == _code(failed):
                job.check = check_range(job)
                if job.check is not None:
                    self.verifying[_code(job)] = job
                    return

    def drain(self) -> None:
        """Take what slots finished but nobody took (after a Ctrl-C or a fatal error)."""
        while True:
            try:
                done = self.finished.get_nowait()
            except queue.Empty:
                return
            if done.text is not None and done.fatal is None:
                self.batch.add(done.job, done.text)


def _code(job: Job) -> tuple[str, str]:
    return job.script, job.source


def _replay_run(context: RunContext, slot: Slot, job: Job, big: list[str]) -> Finished:
    """One run, in a slot's thread: its worktree, its workers, the note's addition."""
    started = time.time()
    check = job.check
    scratch = context.scratch
    try:
        with _worktree(context.git, f"{context.replay_id}-{job.run}", job.commit,
                       context.extra + big, slot.launch) as tree:
            journals, verification, busy, start = _replay(tree, job, context, slot, check)
        text = replay_note(context.replay_id, context.plan, job, journals, started,
                           time.time(), verification, busy, start)
        lost = sorted({r[SHA] for path in scratch.glob(f"{job.run}-*.jsonl")  # checker's too
                       for r in _records(path) if r[KIND] == MISSING})
        for path in scratch.glob(f"{job.run}-*"):
            path.unlink()
        return Finished(job, text, verification=verification, seconds=time.time() - started,
                        lost=lost)
    except (Failed, OutsideTree) as e:
        for path in scratch.glob(f"{job.run}-*.jsonl"):
            path.unlink()  # keep only the output the reason points to
        return Finished(job, error=str(e), seconds=time.time() - started)
    except BaseException as e:  # noqa: BLE001  handed to the main thread, which raises it
        return Finished(job, fatal=e)


def _replay(tree: Path | None, job: Job, context: RunContext, slot: Slot,
            check: list[int | None] | None
            ) -> tuple[list[Path], Verification | None, float, dict]:
    """The job's journals, its verification when ``check`` asks for one, the seconds
    its workers ran and how they started; a run whose restored values differ from
    re-executed ones is replayed again, re-executing."""
    started = time.perf_counter()
    journals, start = _run(tree, job, context, slot, check)
    verification = None
    if check is not None:
        *journals, checker = journals
        verification = Verification(job.run, job.script, check,
                                    *_compare(job, journals, checker, check[1] is None))
        if verification.failed:  # one worker: others would fast-forward, restoring
            job.mode, job.workers = "nested", 1
            job.why = f"verification: {verification.failed}"
            journals, start = _run(tree, job, context, slot, None)
    return journals, verification, time.perf_counter() - started, start


def _run(tree: Path | None, job: Job, context: RunContext, slot: Slot,
         check: list[int | None] | None) -> tuple[list[Path], dict]:
    """Run the job's workers to the end; their journals (the checking worker's last,
    when ``check`` asks for one to re-execute that epoch range) and how they started
    (:func:`_start_record`), or Failed. Without a worktree (``tree`` None), ``cwd`` is
    relative to the repository root."""
    plan, scratch, gpus = context.plan, context.scratch, context.gpus
    if tree is not None:
        write_script(tree, job.script, job.source)
    cwd = (tree or Path()) / job.cwd
    script = os.path.relpath(job.script, job.cwd)
    ranges = worker_ranges(job.epochs, job.workers) if job.mode == "nested" else [None]
    specs = [(job.mode, epochs) for epochs in ranges]
    if check is not None:
        specs.append(("nested", check))
    scratch.mkdir(parents=True, exist_ok=True)
    base = _worker_env()
    workers: list[tuple[Any, Path, int]] = []
    try:
        for k, (mode, epochs) in enumerate(specs):
            journal = scratch / f"{job.run}-{job.mode}-{k}.jsonl"
            journal.unlink(missing_ok=True)  # a re-execution after a failed check
            config = ReplayConfig(names=plan.names, mode=mode, range=epochs,
                                  args=job.args, ckpts=job.ckpts,
                                  checkpointing=job.checkpointing, journal=str(journal),
                                  store=str(plan.store.root), parent=os.getpid(),
                                  remote=plan.store.remote)
            env = replay_env(config, base)
            if gpus:  # round-robin over every worker of every slot
                env["CUDA_VISIBLE_DEVICES"] = gpus[(slot.index * len(specs) + k) % len(gpus)]
            proc = slot.launch(job, [script, *job.argv], cwd, env, journal.with_suffix(".log"))
            workers.append((proc, journal, epochs[0] if epochs else 0))
        _wait(job, workers, context, len(ranges))
    finally:
        for proc, _, _ in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    journals = [journal for _, journal, _ in workers]
    return journals, _start_record(slot.launch, workers, journals)


def _worker_env() -> dict[str, str]:
    """The environment workers start from (their job's FLOR_REPLAY is added)."""
    # no __pycache__ written: the user's may be linked into the worktree
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _start_record(launch: "Launch", workers: list[tuple[Any, Path, int]],
                  journals: list[Path]) -> dict:
    """How a run's workers started, for its replay header: ``fork`` (from a fork server
    that paid the interpreter start and ``imports_s`` of imports once for its slot) or
    ``fresh`` (each its own interpreter; ``why`` not forked), or ``how`` the launcher
    says (a Ray task); and ``sec``, the start-up its slowest worker paid before its
    first flor call (process start or fork, and the imports it did itself)."""
    hows = {getattr(proc, "start", "fresh" if isinstance(proc, subprocess.Popen) else "task")
            for proc, _, _ in workers}
    how = "fork" if hows == {"fork"} else "fresh" if "fresh" in hows else hows.pop()
    record: dict[str, Any] = {"how": how}
    paid = [r.get(SECONDS, 0) for journal in journals for r in _records(journal)
            if r[KIND] == TIME and r.get(TIMING) == STARTUP]
    if paid:
        record["sec"] = round(max(paid), 3)
    if how == "fork":
        record["imports_s"] = round(getattr(launch, "imports_seconds", 0.0), 3)
    elif how == "fresh" and getattr(launch, "why", None):
        record["why"] = launch.why  # type: ignore[attr-defined]
    return record


# How a worker starts: (job, argv, cwd, env with FLOR_REPLAY, log path) -> an object
# with Popen's poll/wait/kill (kill ending whatever the worker started too), whose
# journal is at the config's path once it has ended. A launcher with ``ships_code =
# True`` gets no worktree (cwd is then relative to the repository root): its workers
# run the job's commit and transplanted script elsewhere.
Launch = Callable[[Job, list[str], Path, dict[str, str], Path], Any]


class _Worker(subprocess.Popen):
    """A replay worker in a process group of its own: ``kill`` ends it and whatever it
    started (its journal writer), so nothing writes into the replay's scratch directory
    after it is removed. Ctrl-C reaches flor alone, which kills its workers."""

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _launch(job: Job, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path
            ) -> subprocess.Popen:
    """Start one replay worker: the old script run as python would, output to ``log_path``."""
    with open(log_path, "wb") as log:
        return _Worker([sys.executable, "-m", "flor_cli.runtime.replay_worker", *argv],
                       cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                       stderr=subprocess.STDOUT, start_new_session=True)


def _logs_after(journal: Path, mark: Callable[[dict], bool]) -> list[tuple[dict, bool]]:
    """A worker's log records in order, each with whether it came after the first record
    that ``mark`` picks out."""
    records = sorted(_records(journal), key=lambda r: r.get(SEQ, 0))
    first = next((r.get(SEQ, 0) for r in records if mark(r)), None)
    return [(r, first is not None and r.get(SEQ, 0) > first)
            for r in records if r[KIND] == LOG]


def _compare(job: Job, restoring: list[Path], checker: Path, to_end: bool
             ) -> tuple[str | None, int, list[str]]:
    """The first value the checking worker logged that the restoring ones did not log
    the same, as ``'name' at {context}: restored X, re-executed Y`` (else None); how
    many of its values tested a restore; and the names that went unchecked.

    A checking worker's value tests a restore if it came after the first nested loop it
    re-executed where a restoring worker restored (a checkpointed one): before that both
    logged from the same state. A restoring worker's value needs that test if it came
    after its own first restore (before it, nothing was restored). A name with a value
    that needed the test and none that made it is unchecked. ``to_end``: the checking
    worker ran to the script's end."""
    held = {notes.loop_key_of(c) for c in job.ckpts}
    checked = _logs_after(checker, lambda r: r[KIND] == TIME and r.get(TIMING) == NESTED
                          and notes.loop_key_of(r) in held)
    restored = [rec for journal in restoring for rec in _logs_after(
        journal, lambda r: r[KIND] == TIME and r.get(TIMING) == CKPT_LOAD)]

    def key(rec: dict) -> tuple[str, str]:
        return rec.get(NAME), json.dumps(rec.get(CTX) or {}, sort_keys=True)

    fast: dict[tuple[str, str], list] = {}
    for rec, _ in restored:
        fast.setdefault(key(rec), []).append(rec.get(VALUE))
    slow: dict[tuple[str, str], list] = {}
    for rec, _ in checked:
        slow.setdefault(key(rec), []).append(rec.get(VALUE))
    tested = [rec.get(NAME) for rec, after in checked if after]
    unchecked = sorted({rec.get(NAME) for rec, after in restored if after} - set(tested))
    for (name, ctx), values in slow.items():
        # a sweep's blocks repeat the contexts: a checking worker that stops early (hi)
        # logs the first of a context's values only, one that starts late the last only
        seen = fast.get((name, ctx), [])
        seen = seen[len(seen) - len(values):] if to_end else seen[:len(values)]
        if seen != values:
            return (f"{name!r} at {ctx}: restored {seen}, re-executed {values}",
                    len(tested), unchecked)
    return None, len(tested), unchecked


def _wait(job: Job, workers: list[tuple[Any, Path, int]], context: RunContext,
          counted: int) -> None:
    """Until every worker has ended well (Failed otherwise, Interrupted when the replay
    stops); progress from the first ``counted`` (a verifying worker's epochs are not the
    run's)."""
    counters = [EpochCounter(journal, lo) for _, journal, lo in workers[:counted]]
    while True:
        if context.stop.is_set():
            raise Interrupted(job.run)
        codes = [proc.poll() for proc, _, _ in workers]
        context.progress.epochs(job, sum(c.read() for c in counters))
        for k, code in enumerate(codes):
            if code not in (None, 0):
                log = workers[k][1].with_suffix(".log")
                prefix = f"worker {k} " if len(workers) > 1 else ""
                raise Failed(f"{prefix}exited {code}: {_last_line(log)} (output: {log})")
        if all(code == 0 for code in codes):
            return
        # Wake as soon as a worker ends, not up to a poll period later: a memoized replay
        # is a few seconds, a sleep's worth of latency is measurable.
        running = next(proc for (proc, _, _), code in zip(workers, codes) if code is None)
        try:
            running.wait(POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass


def _records(journal: Path) -> list[dict]:
    text = journal.read_text(errors="replace") if journal.exists() else ""
    return notes.read_records(text, f"replay journal {journal.name}", torn=True)


def _logs(journals: list[Path]) -> list[dict]:
    """The log records of workers' journals, in epoch order (worker 0 first)."""
    return [rec for journal in journals
            for rec in sorted((r for r in _records(journal) if r[KIND] == LOG),
                              key=lambda r: r.get(SEQ, 0))]


def replay_note(replay_id: str, plan: Plan, job: Job, journals: list[Path], start: float,
                end: float, verification: Verification | None = None,
                busy: float | None = None, started: dict | None = None) -> str:
    """The text appended to the run's note: a replay header, then the new log records.

    Workers' records are concatenated in epoch order (worker 0 first, each in its own
    sequence) and renumbered, so ``(rp, s)`` orders them as one run would have. The
    header counts the checkpoints restored: the nested loops the replay did not re-run,
    says why the mode is slower than needed (``why``) and how verification went, and
    what the run cost besides its workers (``fixed``: the next plan's estimate uses it)
    and how its workers started (``startup``: forked or fresh interpreters).
    """
    logs = _logs(journals)
    restored = sum(1 for journal in journals for r in _records(journal)
                   if r[KIND] == TIME and r.get(TIMING) == CKPT_LOAD)
    header = {KIND: REPLAY, REPLAY_ID: replay_id, "names": plan.names, "mode": job.mode,
              "src": job.src, "workers": len(journals), "restored": restored,
              "start": start, "end": end, "status": "ok",
              **({"fixed": round(max(0.0, end - start - busy), 3)} if busy is not None else {}),
              **({"why": job.why} if job.why else {}),
              **({"startup": started} if started else {}),
              **({"verify": verification.record()} if verification else {})}
    records = [{KIND: LOG, REPLAY_ID: replay_id, SEQ: seq,
                **{k: v for k, v in rec.items() if k not in (KIND, SEQ, REPLAY_ID)}}
               for seq, rec in enumerate(logs)]
    return "\n".join(json.dumps(r, separators=(",", ":")) for r in [header, *records]) + "\n"


class NotesBatch:
    """Finished runs' records, appended to their notes a batch at a time: one notes
    commit per :data:`BATCH_RUNS` runs or :data:`BATCH_SECONDS`, and one at the end
    (whether the replay ended well, failed or was interrupted), so a replay of 100 runs
    adds a handful of commits to the notes history, not 100. A run is in
    ``outcome.done`` once its records are in a commit."""

    def __init__(self, git: Git, outcome: Outcome, names: list[str]):
        self.git, self.outcome, self.names = git, outcome, names
        self.texts: dict[str, str] = {}  # shadow commit -> its note's addition
        self.runs: list[str] = []
        self.since = 0.0

    def add(self, job: Job, text: str) -> None:
        if not self.runs:
            self.since = time.monotonic()  # the oldest waiting run's end
        self.texts[job.commit] = self.texts.get(job.commit, "") + text
        self.runs.append(job.run)
        if len(self.runs) >= BATCH_RUNS:
            self.flush()

    def flush_if_due(self) -> None:
        if self.runs and time.monotonic() - self.since >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.runs:
            self.git.append_notes(self.texts, f"flor: replay {self.outcome.replay_id} "
                                  f"({', '.join(self.names)}) into {len(self.runs)} "
                                  f"run(s): {' '.join(self.runs)}")
            self.outcome.done.extend(self.runs)
            self.texts, self.runs = {}, []


class EpochCounter:
    """Epochs a worker has replayed, read from its journal as it grows (outer timings)."""

    def __init__(self, journal: Path, skip: int):
        self.journal, self.skip = journal, skip  # a worker first fast-forwards `skip` epochs
        self.offset = self.count = 0
        self.partial = b""

    def read(self) -> int:
        try:
            with open(self.journal, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        whole, _, self.partial = (self.partial + data).rpartition(b"\n")
        records = notes.read_records(whole.decode(errors="replace"),
                                     f"replay journal {self.journal.name}", torn=True)
        self.count += sum(1 for r in records if r[KIND] == TIME and r.get(TIMING) == OUTER)
        return max(0, self.count - self.skip)


class Progress:
    """One line per run on stderr when it is not a terminal; on a terminal, a tqdm bar
    over the plan's own estimate (seconds per run, credited epoch by epoch), so its ETA
    starts from replay's estimate and corrects it by the speed seen so far. Runs of
    several slots report at once (a lock keeps the bar whole)."""

    def __init__(self, jobs: Sequence[Job], stream: IO[str]):
        self.total, self.stream, self.started, self.ended = len(jobs), stream, 0, 0
        self.tty = stream.isatty()
        self.bar = (progress_bars.bar(round(sum(job.est for job in jobs), 1) or len(jobs),
                                 "replaying", unit="s",
                                 bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                            "{n:.0f}/{total:.0f} est. s [{elapsed}<{remaining}]")
                    if self.tty else None)
        self.index: dict[str, int] = {}  # run -> its place in the order runs started
        self.credited: dict[str, float] = {}  # of each running run's estimate
        self.lock = threading.Lock()

    def start(self, job: Job) -> None:
        with self.lock:
            self.started += 1
            self.index[job.run], self.credited[job.run] = self.started, 0.0
            if self.bar is None:
                self._line(f"replaying {job.run} ({self.started}/{self.total}, {job.mode}, "
                           f"{job.epochs} epochs)")
            else:
                self.bar.set_description_str(
                    f"flor: replaying {self.started}/{self.total} {job.run}")

    def epochs(self, job: Job, done: int) -> None:
        if self.bar is not None and job.epochs:
            with self.lock:
                self._credit(job, job.est * min(done, job.epochs) / job.epochs)

    def finish(self, job: Job, error: str | None, seconds: float) -> None:
        status = f"failed: {error}" if error else f"ok in {seconds:.1f} s"
        with self.lock:
            self.ended += 1
            self._credit(job, job.est)
            self._line(f"replayed {job.run} ({self.index.get(job.run, self.ended)}/"
                       f"{self.total}): {status}")
            self.credited.pop(job.run, None)
            if self.bar is not None and self.ended == self.total:
                self.bar.close()

    def _credit(self, job: Job, estimate: float) -> None:
        credited = self.credited.get(job.run, 0.0)
        if self.bar is not None and estimate > credited:
            self.bar.update(estimate - credited)
            self.credited[job.run] = estimate

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


def _last_line(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "no output"
    return lines[-1].strip()[:300] if lines else "no output"
