"""A fork server for replay workers: ``python -m flor_cli.runtime.replay_fork PARENT
MODULE...`` imports flor and the modules once, then forks one replay worker per request.

A replayed run pays an interpreter start and its script's imports (torch: a second or
two) before its first line of training, as many times as runs are replayed. One server
per ``flor replay --jobs`` slot pays them once: each worker is a ``fork()`` of a process
that has already imported them, and runs the script exactly as
:mod:`flor_cli.runtime.replay_worker` does (``runpy``, its cwd, argv and environment).
The modules are the installed packages the script imports at its top level, chosen by
``services/replay/forks.py`` (never the user's own modules).

Forking is only safe where no thread holds a lock the worker will need and CUDA is not
initialized: after the imports the server looks for Python threads and the CUDA driver
and, if an import started either, says so and exits; the caller then starts fresh
interpreters instead. Native thread pools that imports start (numpy's OpenBLAS starts
one) are idle, and shut down and restart around a ``fork()`` (``pthread_atfork``);
forking happens in no parallel region.

Each worker lists, as it exits, the installed modules it imported that the server had
not (torch imports ``torch._dynamo`` lazily, when an optimizer is made: a second or more
per run); the server imports them before forking the next one, so a slot pays even
lazy imports once.

Protocol: one JSON line per message. The server writes ``{"ready": true, "seconds": S,
"imported": [...]}`` (or ``{"ready": false, "why": ...}``) once, then reads requests
``{"argv": [...], "cwd": ..., "env": {...}, "log": ...}`` from stdin, answering each
with ``{"pid": P}`` (``{"pid": null, "why": ...}`` once forking has become unsafe), and
writes ``{"pid": P, "exit": CODE}`` when a worker ends (CODE as
``Popen.returncode``: negative for a signal). It ends at the end of its stdin; its
workers and itself end when their parent does (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import sys
import threading
import time

from flor_cli.runtime import api, replay_worker


def main(parent: int, modules: list[str]) -> None:
    replay_worker.die_with(parent)
    started = time.perf_counter()
    # torch.cuda.is_available() in an import then asks NVML, leaving CUDA uninitialized;
    # workers get their own environment
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    import flor  # noqa: F401  what every replayed script imports

    imported = []
    for name in modules:
        try:
            importlib.import_module(name)
            imported.append(name)
        except BaseException:  # noqa: BLE001  the worker will import it (and fail) itself
            pass
    why = _unsafe()
    if why is not None:
        _send({"ready": False, "why": f"importing {', '.join(imported)} {why}"})
        return
    _send({"ready": True, "seconds": round(time.perf_counter() - started, 3),
           "imported": imported})
    _serve()


def _send(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _serve() -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select
    pending = b""
    reports: dict[int, str] = {}  # worker pid -> where it lists the modules it imported
    unsafe: str | None = None
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        learned = _reap(reports)
        if learned and unsafe is None:
            unsafe = _learn(learned)
        if 0 not in ready:
            continue
        data = os.read(0, 65536)
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            if unsafe is not None:  # workers still running keep this server alive
                _send({"pid": None, "why": unsafe})
                continue
            request = json.loads(line)
            pid = _fork(request, (wake_r, wake_w))
            reports[pid] = request["log"] + ".modules"
            _send({"pid": pid})


def _reap(reports: dict[int, str]) -> list[str]:
    """Report the workers that ended; the modules they imported that this server lacks."""
    learned: list[str] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return learned
        if pid == 0:
            return learned
        report = reports.pop(pid, None)
        if report is not None:  # read before saying it ended: then flor removes it
            try:
                with open(report) as f:
                    learned += [n for n in f.read().split() if n not in sys.modules]
                os.unlink(report)
            except OSError:
                pass
        _send({"pid": pid, "exit": os.waitstatus_to_exitcode(status)})


def _learn(names: list[str]) -> str | None:
    """Import what a worker imported lazily, after its script's top-level imports (torch
    imports ``torch._dynamo`` when an optimizer is made: a second or more), so that the
    next workers find it imported; why forking is unsafe from now on, or None."""
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001  a worker imports it itself
            pass
    why = _unsafe()
    return f"importing what a worker imported {why}" if why is not None else None


def _unsafe() -> str | None:
    """Why a worker forked now could misbehave: a Python thread (it may hold a lock the
    worker needs), or the CUDA driver initialized (CUDA fails in a forked child)."""
    threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if threads:
        return f"started thread(s) {', '.join(threads)}: not safe to fork"
    try:
        with open("/proc/self/maps") as f:
            if "libcuda.so" in f.read():
                return "initialized CUDA: not safe to fork"
    except OSError:
        pass
    return None


def _report_modules(path: str, before: set[str]) -> None:
    """At a worker's exit: list the installed modules (the standard library's and
    site-packages', never under its working directory or script's) it imported that
    the server had not, for the server to import before the next worker."""
    import sysconfig
    from pathlib import Path

    places = {Path(sysconfig.get_paths()[k]).resolve()
              for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    private = {Path.cwd().resolve(), Path(sys.path[0] or ".").resolve()}
    names = []
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if name in before or name == "__main__" or not isinstance(where, str):
            continue
        found = Path(where).resolve()
        if any(found.is_relative_to(p) for p in places) and \
                not any(found.is_relative_to(p) for p in private):
            names.append(name)
    with open(path, "w") as f:
        f.write("\n".join(names))


def _fork(request: dict, fds: tuple[int, int]) -> int:
    server = os.getpid()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return pid
    try:  # the worker: this server's state, the request's process setup
        os.setsid()  # a process group of its own: killing it ends its journal writer too
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(devnull)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _reseed()
        api.start_afresh()
        atexit.register(_report_modules, request["log"] + ".modules", set(sys.modules))
        script, *args = request["argv"]
        replay_worker.main(script, args, parent=server)
    except BaseException:  # noqa: BLE001  as python does: traceback, then atexit
        import traceback

        traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stderr.flush()
    finally:
        os._exit(1)  # main ends the process itself; this is for what went wrong before it


def _reseed() -> None:
    """Seed what a fresh interpreter seeds from the OS at import (``random``, numpy's
    global generator), so that workers do not share the server's streams; torch's default
    generator starts from a fixed seed in every process, as it does here."""
    if "random" in sys.modules:
        sys.modules["random"].seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
