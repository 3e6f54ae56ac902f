"""Ray as the engine of ``flor serve --ray`` and ``flor replay --ray``.

A job (serve) or a replay segment (one worker's epoch range of one run) becomes a Ray
task. Workers need nothing of the driver's filesystem: the driver ships the code as a tar
archive of the commit's tree through Ray's object store (once per distinct tree), plus
the files it changed (a transplanted script) and, when no remote ``flor.store`` is set,
the checkpoint objects a replay restores. A task extracts all that into its own temporary
directory, runs the script there as a local worker would, and returns its journal text
(and, without a remote store, the objects it wrote); with a remote store it uploads them
itself. The driver alone writes journals, notes and refs.

Data the script reads outside the repository must be reachable on the workers by the
same path or URL (see docs/distributed.md). Ray is imported only by this module, which
only ``--ray`` (or ``git config flor.ray``) loads.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from flor_cli.errors import UserError
from flor_cli.runtime import protocol
from flor_cli.storage.git import Git
from flor_cli.storage.objects import ObjectStore

OUTPUT_TAIL = 4000  # characters of a task's output returned for error messages


def address(git: Git, given: str | bool | None) -> str | None:
    """The Ray address to use: ``--ray ADDRESS``, ``--ray`` alone ("" = a local Ray for
    this command), else ``git config flor.ray``; None means no Ray, as does ``given``
    False (``--no-ray``, whatever the config says)."""
    if given is False:
        return None
    if isinstance(given, str):
        return given
    return git.config("flor.ray")


class Cluster:
    """A connection to Ray for one command: started locally when no address is given."""

    def __init__(self, addr: str):
        try:
            import ray
        except ImportError:
            raise UserError("--ray needs Ray: pip install 'flor-cli[ray]'") from None
        self.ray = ray
        try:
            ray.init(address=addr or "local", log_to_driver=False, include_dashboard=False,
                     logging_level="ERROR", configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot connect to Ray at {addr or 'a local instance'}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.task = ray.remote(run_task)
        self._archives: dict[str, Any] = {}
        self._lock = threading.Lock()

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def archive(self, git: Git, rev: str):
        """The tree of ``rev`` as a tar archive in Ray's object store (once per tree)."""
        with self._lock:
            if rev not in self._archives:
                self._archives[rev] = self.ray.put(git.archive(rev))
            return self._archives[rev]

    def submit(self, gpus: float, **kwargs: Any):
        return self.task.options(num_cpus=1, num_gpus=gpus).remote(**kwargs)

    def wait(self, ref, stop: threading.Event | None = None) -> dict | None:
        """The task's result; None when ``stop`` was set first (the task is cancelled)."""
        while True:
            ready, _ = self.ray.wait([ref], timeout=0.2)
            if ready:
                return self.ray.get(ref)
            if stop is not None and stop.is_set():
                self.ray.cancel(ref, force=True)
                return None

    def close(self) -> None:
        self.ray.shutdown()


def run_task(archive: bytes, files: dict[str, bytes], objects: dict[str, bytes],
             argv: list[str], cwd: str, header: str | None,
             kwargs: dict[str, str], replay: "protocol.ReplayConfig | None",
             remote: str | None) -> dict:
    """On a Ray worker: unpack the code, run ``python ARGV`` in it, return the journal.

    ``header`` starts a recording journal (serve) continued with ``kwargs``; ``replay``
    is a replay worker's config (journal and store are filled in here). Ray sets the
    task's GPUs (CUDA_VISIBLE_DEVICES); the script inherits them. Objects the run wrote
    are uploaded to ``remote`` when set, else returned by digest for the driver to store.
    """
    from flor_cli.services.sandbox import write_script
    from flor_cli.services.serve import die_with_parent

    tmp = Path(tempfile.mkdtemp(prefix="flor-ray-"))
    try:
        tree = tmp / "tree"
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        for rel, data in files.items():  # a link in the tree is replaced, not followed
            write_script(tree, rel, data.decode())
        store = ObjectStore(tmp / "objects", remote)
        for digest, data in objects.items():
            ObjectStore.verify(digest, [data])
            store.put(data)
        shipped = set(objects)
        journal = tmp / "journal.jsonl"
        if replay is not None:
            # parent None: the worker watches this task's process, not the driver's pid
            run_env = protocol.replay_env(replay._replace(
                journal=str(journal), store=str(store.root), remote=remote, parent=None))
        else:
            journal.write_text(header or "")
            run_env = protocol.record_env(protocol.RecordConfig(journal, store.root, kwargs,
                                                                time.time()))
        run_env["PYTHONDONTWRITEBYTECODE"] = "1"
        log = tmp / "output.log"
        with open(log, "wb") as out:  # a cancelled task's worker is killed: so is the script
            code = subprocess.run([sys.executable, *argv], cwd=tree / cwd, env=run_env,
                                  stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, preexec_fn=die_with_parent).returncode
        written = [p.parent.name + p.name for p in store.root.glob("*/*")
                   if not p.name.startswith(".") and p.parent.name + p.name not in shipped]
        returned: dict[str, bytes] = {}
        if remote is not None:
            store.upload(written)
        else:
            returned = {d: store.path(d).read_bytes() for d in written}
        return {"code": code, "journal": journal.read_text() if journal.exists() else "",
                "objects": returned, "host": os.uname().nodename,
                "output": log.read_text(errors="replace")[-OUTPUT_TAIL:]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def keep_objects(store: ObjectStore, objects: dict[str, bytes]) -> None:
    """Objects a task returned, into the driver's store (each verified by its name)."""
    for digest, data in objects.items():
        ObjectStore.verify(digest, [data])
        store.put(data)


class RayJobs:
    """``flor serve --ray``: each queued job a Ray task (the Engine of services/serve)."""

    def __init__(self, cluster: Cluster, git: Git, store: ObjectStore, gpus_per_job: float):
        self.cluster, self.git, self.store, self.gpus = cluster, git, store, gpus_per_job

    def run(self, job, journal_path: Path, slot: int, stop: threading.Event) -> int:
        from flor_cli.services.serve import Stopped, log_path

        script = os.path.relpath(job.script, job.cwd)
        ref = self.cluster.submit(
            self.gpus, archive=self.cluster.archive(self.git, job.tree), files={}, objects={},
            argv=[script, *job.argv], cwd=job.cwd,
            header=journal_path.read_text(), kwargs=job.kwargs, replay=None,
            remote=self.store.remote)
        result = self.cluster.wait(ref, stop)
        if result is None:
            raise Stopped()
        keep_objects(self.store, result["objects"])
        journal_path.write_text(result["journal"])  # the driver's copy becomes the run's
        log = log_path(self.git, job)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(result["output"])
        return result["code"]


class RayReplay:
    """``flor replay --ray``: the worker launcher of services/replay/execute, each worker a
    Ray task. Every run's workers are submitted when the plan is given, so runs replay in
    parallel on the cluster while execute collects them one by one: first the runs that
    verify their code, each with its verifying worker (their outcome decides how the
    code's other runs replay), then the others, in the plan's order. Tasks carry the
    code (``ships_code``), so execute checks out no worktree for them.

    A worker execute asks for that was not foreseen is either a check passed on to the
    next run of a code whose verifying run failed (submitted then), or a re-execution
    after a verification failed: then the tasks still pending for that code other than
    one-worker re-executions are cancelled (their values would be discarded) and the
    worker is submitted. Runs may be collected by several threads (``--jobs``): one lock
    keeps the pending tasks whole."""

    ships_code = True

    def __init__(self, cluster: Cluster, git: Git, plan, gpus_per_job: float):
        from flor_cli.services.replay.plan import worker_ranges

        self.cluster, self.git, self.plan, self.gpus = cluster, git, plan, gpus_per_job
        self._objects: dict[str, Any] = {}
        self.pending: dict[tuple, Any] = {}
        self._code = {job.run: (job.script, job.source) for job in plan.runnable}
        self._lock = threading.Lock()
        for job in sorted(plan.runnable, key=lambda j: j.check is None):  # stable
            ranges = worker_ranges(job.epochs, job.workers) if job.mode == "nested" else [None]
            specs = [(job.mode, epochs) for epochs in ranges]
            if job.check is not None:
                specs.append(("nested", job.check))
            for mode, epochs in specs:
                config = protocol.ReplayConfig(
                    names=plan.names, mode=mode, range=epochs, args=job.args,
                    ckpts=job.ckpts, checkpointing=job.checkpointing, journal="", store="")
                self.pending[_key(job.run, config)] = self._submit(job, config)

    def _submit(self, job, config: "protocol.ReplayConfig"):
        remote = self.plan.store.remote
        if job.run not in self._objects:  # what it restores, unless workers fetch it
            objects = {} if remote is not None else {
                o["sha"]: self.plan.store.get(o["sha"])
                for c in job.ckpts for o in (c.get("objs") or {}).values()}
            self._objects[job.run] = self.cluster.ray.put(objects)
        return self.cluster.submit(
            self.gpus, archive=self.cluster.archive(self.git, job.commit),
            files={job.script: job.source.encode()}, objects=self._objects[job.run],
            argv=["-m", "flor_cli.runtime.replay_worker",
                  os.path.relpath(job.script, job.cwd), *job.argv],
            cwd=job.cwd, header=None, kwargs={}, replay=config, remote=remote)

    def __call__(self, job, argv: list[str], cwd: Path, env: dict[str, str],
                 log_path: Path) -> "TaskProcess":
        config = protocol.ReplayConfig.from_json(env[protocol.REPLAY])
        with self._lock:
            ref = self.pending.pop(_key(job.run, config), None)
            if ref is None:
                if not (config.mode == "nested" and config.range == job.check):
                    self._drop_restoring(self._code.get(job.run))
                ref = self._submit(job, config)
        return TaskProcess(self.cluster, ref, Path(config.journal), log_path)

    def _drop_restoring(self, code: tuple | None) -> None:
        """Cancel the pending tasks of ``code`` that a re-execution makes moot: its runs
        now re-execute with one worker (execute), so all but such workers (mode nested,
        no epoch range) go: those that restore (skip; nested workers after the first,
        which fast-forward by restoring) and the ranges that came with them."""
        whole = json.dumps(None)
        for key in [k for k in self.pending if self._code[k[0]] == code
                    and (k[1], k[2]) != ("nested", whole)]:
            self.cluster.ray.cancel(self.pending.pop(key), force=True)

    def cancel(self) -> None:
        """Stop what is still running (Ctrl-C, failures): the cluster may outlive us."""
        with self._lock:
            for ref in self.pending.values():
                self.cluster.ray.cancel(ref, force=True)
            self.pending.clear()


def _key(run: str, config: "protocol.ReplayConfig") -> tuple:
    return run, config.mode, json.dumps(config.range)


class TaskProcess:
    """A Ray task as execute waits on a worker process (Popen's poll, wait, kill): once it
    ends, its journal and output are where a local worker would have left them."""

    def __init__(self, cluster: Cluster, ref, journal: Path, log: Path):
        self.cluster, self.ref, self.journal, self.log = cluster, ref, journal, log
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            ready, _ = self.cluster.ray.wait([self.ref], timeout=0)
            if ready:
                self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            ready, _ = self.cluster.ray.wait([self.ref], timeout=timeout)
            if not ready:
                raise subprocess.TimeoutExpired("ray task", timeout or 0)
            self._finish()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        self.cluster.ray.cancel(self.ref, force=True)

    def _finish(self) -> None:
        try:
            result = self.cluster.ray.get(self.ref)
        except Exception as e:  # the task died or was cancelled
            self.log.write_text(f"ray task failed: {type(e).__name__}: {e}\n")
            self.returncode = -1
            return
        self.journal.write_text(result["journal"])
        self.log.write_text(result["output"])
        self.returncode = result["code"]
