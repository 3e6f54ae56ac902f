"""Replay workers forked from a server that has imported the script's packages once.

``flor replay --jobs N`` gives each of its N slots a :class:`ForkLauncher`: the first
worker it starts brings up a fork server (:mod:`flor_cli.runtime.replay_fork`) that
imports flor and the installed packages the script imports at its top level
(:func:`preimports`), and every worker after that is a ``fork()`` of it: the interpreter
start and those imports are paid once per slot, not once per run. Whatever stands in
the way (no ``fork`` on this platform, an import that started a thread, a server that
died) makes the launcher start fresh interpreters instead, as ``--no-fork`` does; the
replay header of each run says which it got (``startup``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from flor_cli.runtime.protocol import without_protocol

FORK_SERVER = "flor_cli.runtime.replay_fork"
READY_SECONDS = 120.0  # importing torch on a loaded machine takes seconds; a hang, not this


def can_fork() -> str | None:
    """Why workers cannot be forked here (None: they can)."""
    if not hasattr(os, "fork") or sys.platform != "linux":
        return "no fork server on this platform"  # macOS: fork after imports is unsafe
    return None


def preimports(source: str, script_dir: Path, private: list[Path]) -> list[str]:
    """The modules a fork server may import for ``source``: its plain top-level ``import
    x`` / ``from x import y`` of installed packages. Not a module beside the script (the
    user's own, even one shadowing a package), nor one found under ``private`` (the
    repository and its replay worktrees): importing those could run the user's code."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return []
    names: list[str] = []
    for node in body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [name for name in dict.fromkeys(names) if _installed(name, script_dir, private)]


def _installed(name: str, script_dir: Path, private: list[Path]) -> bool:
    top = name.split(".")[0]
    if top in ("__future__", "__main__", "flor") or (script_dir / f"{top}.py").exists() \
            or (script_dir / top).exists():
        return False
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = ([spec.origin] if spec.origin not in (None, "built-in", "frozen")
              else list(spec.submodule_search_locations or []))
    return not any(Path(p).resolve().is_relative_to(r) for p in places for r in private)


class ForkServer:
    """One running fork server: asks it for workers, learns when they end."""

    def __init__(self, modules: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.modules = modules
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", FORK_SERVER, str(os.getpid()), *modules],
                cwd=cwd, env=without_protocol(env), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=out, start_new_session=True)
        self.buffer = b""
        self.children: dict[int, Forked] = {}
        self.ready = self._read_until(lambda m: "ready" in m, READY_SECONDS)
        self.seconds = float(self.ready.get("seconds", 0)) if self.ready else 0.0
        if not (self.ready and self.ready.get("ready")):
            self.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def why_not(self) -> str:
        if self.ready is None:
            return "the fork server did not start"
        return str(self.ready.get("why", "the fork server ended"))

    def fork(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> "Forked":
        request = {"argv": argv, "cwd": str(cwd), "env": env, "log": str(log)}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._read_until(lambda m: "exit" not in m and "pid" in m, READY_SECONDS)
        if answer is None:
            raise OSError("the fork server did not answer")
        if answer["pid"] is None:
            raise OSError(answer.get("why", "the fork server refused"))
        child = Forked(self, int(answer["pid"]))
        self.children[child.pid] = child
        return child

    def collect(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a worker to end; take what the server said."""
        self._read_until(lambda m: "exit" in m, timeout)

    def _read_until(self, wanted: Callable[[dict], bool], timeout: float) -> dict | None:
        """Handle messages until one is ``wanted`` (returned) or ``timeout`` passes."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                if "exit" in message:
                    child = self.children.pop(int(message["pid"]), None)
                    if child is not None:
                        child.returncode = int(message["exit"])
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left < 0 or not select.select([fd], [], [], max(0.0, left))[0]:
                return None
            data = os.read(fd, 65536)
            if not data:  # the server ended: its workers ended with it (PDEATHSIG)
                self.proc.wait()
                for child in self.children.values():
                    child.returncode = -signal.SIGKILL
                self.children.clear()
                return None
            self.buffer += data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class Forked:
    """A worker the server forked, as execute waits on a process (Popen's poll, wait,
    kill, returncode)."""

    start = "fork"

    def __init__(self, server: ForkServer, pid: int):
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self.server.collect(left)
        return self.returncode

    def kill(self) -> None:
        """End the worker and what it started (its group: it called setsid)."""
        if self.returncode is None:
            for kill in (os.killpg, os.kill):  # no group yet: just forked, kill it alone
                try:
                    return kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# (job, argv, cwd, env, log path) -> a process handle: execute.Launch
Fresh = Callable[[Any, list[str], Path, dict[str, str], Path], Any]


class ForkLauncher:
    """A slot's launcher: workers forked from its server, else started by ``fresh``.

    The server is made for the first job's imports and made again when a job's differ
    (a run of another script or version); a set of imports that could not be served is
    not tried again. ``private`` holds the paths whose modules are never pre-imported.
    """

    def __init__(self, fresh: Fresh, scratch: Path, slot: int, private: list[Path]):
        self.fresh, self.scratch, self.slot, self.private = fresh, scratch, slot, private
        self.server: ForkServer | None = None
        self.refused: dict[tuple[str, ...], str] = {}
        self.why: str | None = None  # why the last worker started fresh

    def __call__(self, job: Any, argv: list[str], cwd: Path, env: dict[str, str],
                 log: Path) -> Any:
        modules = tuple(preimports(job.source, (cwd / argv[0]).parent, self.private))
        server = self._server(modules, env)
        if server is not None:
            try:
                return server.fork(argv, cwd, env, log)
            except OSError as e:  # the server lives on while its workers run
                self.refused[modules] = f"the fork server failed: {e}"
        self.why = self.refused.get(modules)
        return self.fresh(job, argv, cwd, env, log)

    def warm(self, job: Any, script_dir: Path, env: dict[str, str]) -> None:
        """Start the server for ``job``'s imports now, before the slot's first run (a
        slot that waits for a verifying run meanwhile then waits with it ready)."""
        self._server(tuple(preimports(job.source, script_dir, self.private)), env)

    @property
    def imports_seconds(self) -> float:
        """What the current server paid once for interpreter start and imports."""
        return self.server.seconds if self.server is not None else 0.0

    def _server(self, modules: tuple[str, ...], env: dict[str, str]) -> ForkServer | None:
        if modules in self.refused:
            return None
        if self.server is not None and (self.server.modules != list(modules)
                                        or not self.server.alive):
            self.server.close()
            self.server = None
        if self.server is None:
            self.scratch.mkdir(parents=True, exist_ok=True)
            server = ForkServer(list(modules), env, self.scratch,
                                self.scratch / f"fork-server-{self.slot}.log")
            if not server.alive:
                self.refused[modules] = server.why_not()
                return None
            self.server = server
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
