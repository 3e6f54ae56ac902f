"""What every benchmark shares: temporary repositories, wall-clock timing of subprocesses,
medians, and one line per figure ending in PASS or FAIL.

CLI figures are wall time of a subprocess, because that is what a user waits for. Each
benchmark names the baseline it compares against and prints the ratio, so a figure is
never read without its context.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
_console_script = Path(PYTHON).with_name("flor")
# The console script a user types; `python -m` only where flor is not installed as one.
FLOR = [str(_console_script)] if _console_script.exists() else [PYTHON, "-m", "flor_cli.main"]
# One thread for torch/BLAS: the machine has 2 shared cores and a benchmark should not
# measure how the OS schedules a thread pool against itself.
QUIET_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "OPENBLAS_NUM_THREADS": "1", "GIT_AUTHOR_NAME": "bench",
             "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
             "GIT_COMMITTER_EMAIL": "bench@localhost"}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          env=QUIET_ENV)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """A git repository with ``files`` committed on ``main``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


def fixture(name: str) -> str:
    return (ROOT / "fixtures" / "scripts" / name).read_text()


def timed(cmd: Sequence[str], cwd: Path, env: dict | None = None,
          stdout=subprocess.DEVNULL) -> float:
    """Wall seconds of one subprocess; a failing command fails the benchmark."""
    return measure(cmd, cwd, env, stdout)[0]


def measure(cmd: Sequence[str], cwd: Path, env: dict | None = None,
            stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """(wall, CPU) seconds of one subprocess and its children.

    CPU time (user + system) barely moves when other processes compete for the cores,
    so it is the steadier second opinion on a shared machine.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env or QUIET_ENV, stdout=stdout,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class Report:
    """Collects figures; ``exit()`` fails the process when any target was missed."""

    def __init__(self, title: str):
        self.failed: list[str] = []
        print(f"== {title}  ({machine()}, {time.strftime('%Y-%m-%d')})", flush=True)

    def figure(self, name: str, text: str, ok: bool | None, target: str = "",
               baseline: str = "") -> None:
        """One line: figure, target, baseline ratio, verdict (None: reported, no target)."""
        verdict = "INFO" if ok is None else "PASS" if ok else "FAIL"
        parts = [f"{name}: {text}"]
        if target:
            parts.append(f"target {target}")
        if baseline:
            parts.append(baseline)
        print(f"{verdict}  " + "  |  ".join(parts), flush=True)
        if ok is False:
            self.failed.append(name)

    def exit(self) -> None:
        if self.failed:
            print(f"FAIL: missed {', '.join(self.failed)}", flush=True)
            sys.exit(1)
        print("PASS", flush=True)
