"""Shared test fixtures: real git repositories in temporary directories, real flor runs.

Tests run the `flor` executable and training scripts as subprocesses, exactly as a user
would, so that exit statuses, stderr and crash behaviour are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A shell starts a background command (`make test &`, a CI runner's job) with SIGINT
# ignored, and exec keeps an ignored signal ignored: every flor process a test presses
# Ctrl-C on would ignore it. Handled here, it is back to the default in those processes.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
FLOR = [sys.executable, "-m", "flor_cli.main"]


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def flor(repo: Path, *args: str, check: bool = True, env: dict | None = None,
         input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*FLOR, *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"flor {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def cli(repo: Path, *args: str, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess:
    """``flor ARGS`` in this process (click's CliRunner isolation captures the streams),
    through the same ``main`` and error handler: for commands that need no process of
    their own (reads, bad input, output formats), a tenth of a subprocess's cost. Not
    for ``flor run``/``replay``, whose scripts write to the real file descriptors."""
    from click.testing import CliRunner

    from flor_cli import main

    runner = CliRunner()
    code: int | str | None = 0
    cwd = os.getcwd()
    with runner.isolation(input=input) as (out, err, _):
        os.chdir(repo)
        try:
            main.main(list(args))
        except SystemExit as e:
            code = e.code
        finally:
            os.chdir(cwd)
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    code = code if isinstance(code, int) else (0 if code is None else 1)
    proc = subprocess.CompletedProcess(["flor", *args], code, stdout, stderr)
    if check and code != 0:
        raise AssertionError(f"flor {' '.join(args)} exited {code}:\n{stdout}\n{stderr}")
    return proc


def flor_json(repo: Path, *args: str) -> list[dict]:
    """What ``flor ARGS --format json`` prints (in this process: reads need none of their
    own)."""
    return json.loads(cli(repo, *args, "--format", "json").stdout)


def make_repo(path: Path, commit: bool = True, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "tester@example.com")
    git(path, "config", "user.name", "Tester")
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if commit and files:
        git(path, "add", "-A")
        git(path, "commit", "-qm", "initial")
    return path


def fixture_script(name: str) -> str:
    return (FIXTURES / "scripts" / name).read_text()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the deterministic torch training fixture, committed."""
    return make_repo(tmp_path / "repo", files={"train.py": fixture_script("train.py"),
                                               ".gitignore": "data/\n*.log\n"})


def append_replayed(repo: Path, run_offset: int, name: str, values: list) -> None:
    """Append a replay of ``name`` (one value per epoch) to a run's note, as `flor replay`
    writes it; ``run_offset`` counts runs from the latest back (a real replay costs
    seconds; test_replay.py runs those)."""
    from flor_cli.services import query
    from flor_cli.storage.git import Git

    g = Git(repo)
    _, commit = query.sql(g, "SELECT run, commit_id FROM runs ORDER BY start DESC")[1][run_offset]
    from flor_cli.storage.notes import CTX, KIND, LOG, NAME, REPLAY, REPLAY_ID, SEQ, VALUE

    records = [{KIND: REPLAY, REPLAY_ID: "rp1", "names": [name], "start": 1.0}]
    records += [{KIND: LOG, REPLAY_ID: "rp1", SEQ: i, NAME: name, VALUE: v, CTX: {"epoch": i}}
                for i, v in enumerate(values)]
    g.append_notes({commit: "".join(json.dumps(r) + "\n" for r in records)}, "test: replay")
