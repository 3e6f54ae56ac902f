"""Set-up and discoverability: man pages in the wheel, shell completion from the cache,
`import flor` without fcntl, progress bars only on a terminal."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, flor, make_repo
from flor_cli import progress


def test_man_pages_are_installed_under_share_man(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("flor", "flor_cli", "hooks", "man"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    shipped = {n.split("/data/", 1)[1] for n in zipfile.ZipFile(wheel).namelist()
               if ".data/data/" in n}
    pages = {f"share/man/man1/{p.name}" for p in (ROOT / "man").glob("*.1")}
    assert {"share/man/man1/flor.1", "share/man/man1/flor-replay.1"} <= pages == shipped


def _complete(repo: Path, line: str) -> list[str]:
    """What bash completion offers for ``line`` (the word being completed is its last)."""
    words = line.split(" ")
    env = {**os.environ, "_FLOR_COMPLETE": "bash_complete", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words) - 1)}
    proc = subprocess.run([sys.executable, "-m", "flor_cli.main"], cwd=repo, env=env,
                          capture_output=True, text=True)
    return [item.split(",", 1)[1] for item in proc.stdout.splitlines()]


def test_completion_offers_commands_runs_tags_and_names(tmp_path: Path) -> None:
    script = flor(tmp_path, "completion", "bash").stdout
    assert "_FLOR_COMPLETE=bash_complete" in script and "complete " in script
    repo = make_repo(tmp_path / "r", files={"t.py": "import flor\nflor.log('loss', 1)\n"
                                                   "flor.log('lr_used', 2)\n"})
    flor(repo, "run", "t.py")
    (run,) = flor(repo, "log", "--csv").stdout.splitlines()[1:]
    run_id = run.split(",")[0]
    assert _complete(repo, "flor lo") == ["log"]
    assert _complete(repo, f"flor show {run_id[:6]}") == [run_id]
    assert _complete(repo, "flor replay lo") == ["loss"]
    assert _complete(repo, "flor replay loss,lr") == ["loss,lr_used"]


def test_import_flor_without_fcntl_or_fork_hooks(tmp_path: Path) -> None:
    probe = ("import os, random, sys  # random registers its own fork hook\n"
             "sys.modules['fcntl'] = None\ndel os.register_at_fork\n"
             "import flor\nprint(flor.arg('lr', 0.5))\n")
    proc = subprocess.run([sys.executable, "-c", probe, "--kwargs", "lr=0.25"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.25"


def test_progress_bars_only_on_a_terminal(monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert type(progress.bar(10, "x")).__name__ == "_Silent"
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with progress.bar(10, "rebuilding cache", unit="run", delay=0) as bar:
        bar.update(10)
    assert "flor: rebuilding cache" in tty.getvalue() and "run/s" in tty.getvalue()
    monkeypatch.setenv("FLOR_PROGRESS", "0")
    assert type(progress.bar(10, "x")).__name__ == "_Silent"


def test_replay_progress_counts_down_its_own_estimate(monkeypatch) -> None:
    from types import SimpleNamespace

    from flor_cli.services.replay.execute import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(progress, "DELAY_SECONDS", 0)
    jobs = [SimpleNamespace(run="r1", mode="skip", epochs=4, est=8.0),
            SimpleNamespace(run="r2", mode="skip", epochs=2, est=2.0)]
    shown = Progress(jobs, tty)
    shown.start(jobs[0])
    shown.epochs(jobs[0], 2)
    assert shown.bar.n == 4.0 and shown.bar.total == 10.0
    shown.finish(jobs[0], None, 1.0)
    assert shown.bar.n == 8.0
    shown.start(jobs[1])
    shown.finish(jobs[1], "boom", 0.5)
    out = tty.getvalue()
    assert "flor: replaying 1/2 r1" in out and "/10 est. s" in out
    assert "replayed r1 (1/2): ok in 1.0 s" in out and "replayed r2 (2/2): failed: boom" in out
