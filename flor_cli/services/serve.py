"""``flor serve``: run queued jobs as recorded runs, N at a time, until the queue is empty.

Each job runs the code as it was when queued: its commit on ``refs/flor/queue`` is
checked out into a worktree under ``.git/flor/serve/`` (with the user's untracked data
linked in, as for replay), and the script runs there with the runtime recording into a
journal whose header names the queued tree, so the run's shadow commit is exactly that
code. Each worker thread drives one script process at a time; with ``--gpus`` each worker
owns one GPU, given to its processes as ``CUDA_VISIBLE_DEVICES``.

Stopping: Ctrl-C or SIGTERM stops the scripts, folds their runs (status
``interrupted``), gives their jobs back to the queue and exits 130. A SIGKILL'd server
cannot: its scripts die with it (``PR_SET_PDEATHSIG``), their journals are folded by the
next flor command as killed runs, and the next server hands the jobs back first
(:func:`flor_cli.services.queue.recover`) and removes their worktrees. A ``done`` job is never run again.

The execution engine is pluggable (:class:`LocalEngine` here; ``flor serve --ray`` uses
:mod:`flor_cli.services.ray_engine`): an engine runs one job given its journal header
and returns the exit status; only this process writes journals, notes and refs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from flor_cli.runtime import protocol
from flor_cli.services import queue
from flor_cli.services.record import exit_status
from flor_cli.storage import journal
from flor_cli.storage.git import Git
from flor_cli.storage.objects import ObjectStore, configured_store

WAIT_POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0


class Stopped(Exception):
    """The server was asked to stop while a job ran: the job goes back to the queue."""


class Engine(Protocol):
    def run(self, job: queue.QueuedJob, journal_path: Path, slot: int,
            stop: threading.Event) -> int:
        """Run ``job`` to its end, its records in ``journal_path``; the exit status (a
        negative signal number when killed). Raise Stopped when ``stop`` interrupted it."""


@dataclass
class ServeResult:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def serve(git: Git, workers: int | None = None, gpus: Sequence[str] = (), wait: bool = False,
          ray: str | bool | None = None, gpus_per_job: float = 0.0,
          say: Callable[[str], None] = print) -> ServeResult:
    """Run queued jobs until the queue is empty (or, with ``wait``, until interrupted):
    ``workers`` at once (default 1; one per GPU with ``gpus``; on Ray, the cluster's CPUs).

    ``ray`` is a Ray address ("" starts a local Ray for this call) or False (local
    processes); without it, ``git config flor.ray`` decides, and unset means local
    processes.
    """
    from flor_cli.services import ray_engine

    store = configured_store(git)
    address = ray_engine.address(git, ray)
    if address is None:
        if gpus:
            workers = len(gpus)
        return _serve(git, LocalEngine(git, store, gpus), workers or 1, wait, say)
    cluster = ray_engine.Cluster(address)
    try:
        engine = ray_engine.RayJobs(cluster, git, store, gpus_per_job)
        return _serve(git, engine, workers or cluster.cpus(), wait, say)
    finally:
        cluster.close()


def _serve(git: Git, engine: Engine, workers: int, wait: bool,
           say: Callable[[str], None]) -> ServeResult:
    from flor_cli.services.sandbox import prune_stale_worktrees

    prune_stale_worktrees(git)  # of a server (or a replay) that was killed
    db = queue.connect(git)
    recovered = queue.recover(db)
    db.close()
    if recovered:
        say(f"flor serve: {recovered} job(s) of a server that is gone are pending again")
    stop = threading.Event()
    result = ServeResult()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        db = queue.connect(git)
        try:
            while not stop.is_set():
                job = queue.claim(db, os.getpid())
                if job is None:
                    if not wait:
                        return
                    stop.wait(WAIT_POLL_SECONDS)
                    continue
                ok = _attempt(git, db, engine, job, slot, stop, say)
                if ok is not None:
                    with lock:
                        (result.done if ok else result.failed).append(job.id)
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            stop.set()
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(workers)]
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for t in threads:
            t.start()
        _wait_all(threads)
    except KeyboardInterrupt:
        stop.set()
        _wait_all(threads)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if errors:
        raise errors[0]
    return result


def _wait_all(threads: list[threading.Thread]) -> None:
    """Wait by polling: a Ctrl-C that lands inside ``Thread.join`` can leave the thread
    looking finished on Python 3.11, and the workers must be seen through to the end."""
    while any(t.is_alive() for t in threads):
        time.sleep(0.1)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _attempt(git: Git, db, engine: Engine, job: queue.QueuedJob, slot: int,
             stop: threading.Event, say: Callable[[str], None]) -> bool | None:
    """One attempt at ``job``: True done, False failed, None given back (stopped)."""
    path = journal.begin(git, job.script, job.argv, job.kwargs, supervisor=os.getpid(),
                         tree=job.tree, cwd=job.cwd, big=job.big)
    run = path.stem
    queue.started(db, job, run)
    say(f"job {job.id} ({_describe(job)}): running as run {run}")
    try:
        code = engine.run(job, path, slot, stop)
    except Stopped:
        journal.fold(git, path, status={"status": "interrupted", "exit": 130})
        queue.give_back(db, job)
        say(f"job {job.id}: stopped, pending again")
        return None
    except BaseException:
        journal.fold(git, path, status={"status": "failed", "exit": -1})
        queue.give_back(db, job)
        raise
    status = exit_status(code)
    journal.fold(git, path, status=status)
    if code == 0:
        queue.finish(db, job, ok=True)
        say(f"job {job.id}: done (run {run})")
        return True
    error = f"exited {code}; output: {log_path(git, job)}"
    queue.finish(db, job, ok=False, error=error)
    say(f"job {job.id}: failed, {error}")
    return False


def _describe(job: queue.QueuedJob) -> str:
    return " ".join([job.script, *(f"{k}={v}" for k, v in job.kwargs.items())])


def log_path(git: Git, job: queue.QueuedJob) -> Path:
    return git.flor_dir / "serve" / "logs" / f"job-{job.id}.log"


def script_env(journal_path: Path, store: ObjectStore, kwargs: dict[str, str],
               gpu: str | None) -> dict[str, str]:
    """The environment of a job's script: the runtime continues the given journal."""
    env = protocol.record_env(protocol.RecordConfig(journal_path, store.root, kwargs,
                                                    time.time()))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the user's __pycache__ may be linked in
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def supervise(argv: list[str], cwd: Path, env: dict[str, str], log: Path,
              stop: threading.Event) -> int:
    """Run a job's script to its end; its exit status. It runs in its own session (a
    terminal's Ctrl-C reaches the server, which stops it) and dies with the server."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent)
    try:
        while True:
            try:
                return proc.wait(0.2)
            except subprocess.TimeoutExpired:
                if stop.is_set():
                    break
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        raise Stopped()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def die_with_parent() -> None:
    """Linux: the script gets SIGKILL when its server dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalEngine:
    """Jobs as local processes, each in a worktree of its queued commit."""

    def __init__(self, git: Git, store: ObjectStore, gpus: Sequence[str] = ()):
        from flor_cli.services.sandbox import untracked_paths

        self.git, self.store, self.gpus = git, store, list(gpus)
        self.extra = untracked_paths(git)

    def run(self, job: queue.QueuedJob, journal_path: Path, slot: int,
            stop: threading.Event) -> int:
        from flor_cli.services.sandbox import Sandbox, job_home

        home = job_home(self.git, job.id, journal_path.stem)
        big = [e["path"] for e in job.big]  # left out of its tree, linked in as flor run saw them
        with Sandbox(self.git, home, job.commit, self.extra + big) as tree:
            cwd = tree / job.cwd
            script = os.path.relpath(tree / job.script, cwd)
            gpu = self.gpus[slot] if self.gpus else None
            env = script_env(journal_path, self.store, job.kwargs, gpu)
            return supervise([sys.executable, script, *job.argv], cwd, env,
                             log_path(self.git, job), stop)
