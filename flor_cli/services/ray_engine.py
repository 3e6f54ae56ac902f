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


def address(git: Git, given: str | None) -> str | None:
    """The Ray address to use: ``--ray ADDRESS``, ``--ray`` alone ("" = a local Ray for
    this command), else ``git config flor.ray``; None means no Ray."""
    if given is not None:
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
    tmp = Path(tempfile.mkdtemp(prefix="flor-ray-"))
    try:
        tree = tmp / "tree"
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        for rel, data in files.items():
            (tree / rel).write_bytes(data)
        store = ObjectStore(tmp / "objects", remote)
        for digest, data in objects.items():
            store.put(ObjectStore.verify(digest, data))
        shipped = set(objects)
        journal = tmp / "journal.jsonl"
        if replay is not None:
            run_env = protocol.replay_env(replay._replace(
                journal=str(journal), store=str(store.root), remote=remote))
        else:
            journal.write_text(header or "")
            run_env = protocol.record_env(protocol.RecordConfig(journal, store.root, kwargs,
                                                                time.time()))
        run_env["PYTHONDONTWRITEBYTECODE"] = "1"
        log = tmp / "output.log"
        with open(log, "wb") as out:
            code = subprocess.run([sys.executable, *argv], cwd=tree / cwd, env=run_env,
                                  stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT).returncode
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
        store.put(ObjectStore.verify(digest, data))


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
    """``flor replay --ray``: every worker of every run a Ray task, all launched at once
    (the runner seam of services/replay/execute); journals come back to the driver."""

    def __init__(self, cluster: Cluster, git: Git, gpus_per_job: float):
        self.cluster, self.git, self.gpus = cluster, git, gpus_per_job
        self.refs: dict[str, list] = {}

    def start(self, plan, scratch: Path) -> None:
        from flor_cli.services.replay.execute import worker_config
        from flor_cli.services.replay.plan import worker_ranges

        ray = self.cluster.ray
        for job in plan.runnable:
            objects = {} if plan.store.remote is not None else {
                o["sha"]: plan.store.get(o["sha"])
                for c in job.ckpts for o in (c.get("objs") or {}).values()}
            shipped = ray.put(objects)
            script = os.path.relpath(job.script, job.cwd)
            ranges = worker_ranges(job.epochs, plan.workers) if job.mode == "nested" else [None]
            self.refs[job.run] = [self.cluster.submit(
                self.gpus, archive=self.cluster.archive(self.git, job.commit),
                files={job.script: job.source.encode()}, objects=shipped,
                argv=["-m", "flor_cli.runtime.replay_worker", script, *job.argv], cwd=job.cwd,
                header=None, kwargs={}, remote=plan.store.remote,
                replay=worker_config(job, plan, epochs, Path("."))) for epochs in ranges]

    def run(self, job, plan, gpus, scratch: Path, progress) -> list[Path]:
        from flor_cli.services.replay.execute import Failed, _last_line

        scratch.mkdir(parents=True, exist_ok=True)
        journals = []
        refs = self.refs.pop(job.run)
        for k, ref in enumerate(refs):
            result = self.cluster.wait(ref)
            journal = scratch / f"{job.run}-{k}.jsonl"
            journal.write_text(result["journal"])
            journal.with_suffix(".log").write_text(result["output"])
            journals.append(journal)
            if result["code"] != 0:
                log = journal.with_suffix(".log")
                prefix = f"worker {k} " if len(refs) > 1 else ""
                raise Failed(f"{prefix}exited {result['code']} on {result['host']}: "
                             f"{_last_line(log)} (output: {log})")
        return journals

    def cancel(self) -> None:
        """Stop what is still running (Ctrl-C): the cluster may outlive this command."""
        for refs in self.refs.values():
            for ref in refs:
                self.cluster.ray.cancel(ref, force=True)
        self.refs.clear()
