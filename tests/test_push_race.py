"""Many collaborators pushing at once to one remote: every run arrives, real errors stop."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import flor, git, make_repo
from synthetic import record_run

from flor_cli.storage.git import Git, lost_ref_race

CLONES, RUNS_EACH = 8, 2

# Each pusher says when it is ready and waits for the word, so the pushes really race.
PUSH_ON_GO = ("import sys\n"
              "from flor_cli.services import sync\n"
              "from flor_cli.storage.git import Git\n"
              "print('ready', flush=True)\n"
              "sys.stdin.readline()\n"
              "sync.push(Git('.'), 'origin')\n")


def _clones(tmp_path: Path, count: int) -> tuple[Path, list[Path]]:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    origin = make_repo(tmp_path / "origin", files={"train.py": "print(1)\n"})
    git(origin, "remote", "add", "origin", str(remote))
    git(origin, "push", "-q", "origin", "main")
    clones = []
    for i in range(count):
        clone = tmp_path / f"c{i}"
        git(tmp_path, "clone", "-q", str(remote), str(clone))
        git(clone, "config", "user.email", f"c{i}@example.com")
        git(clone, "config", "user.name", f"C{i}")
        clones.append(clone)
    return remote, clones


def _remote_runs(remote: Path) -> set[str]:
    """The run ids in the remote's notes, read by git itself."""
    runs = set()
    for line in git(remote, "notes", "--ref=flor", "list").splitlines():
        blob = line.split()[0]
        header = json.loads(git(remote, "cat-file", "-p", blob).splitlines()[0])
        runs.add(header["run"])
    return runs


def test_concurrent_pushes_lose_nothing(tmp_path: Path) -> None:
    remote, clones = _clones(tmp_path, CLONES)
    made = {clone: [record_run(clone, lr=i / 10) for _ in range(RUNS_EACH)]
            for i, clone in enumerate(clones)}
    procs = [subprocess.Popen([sys.executable, "-c", PUSH_ON_GO], cwd=clone, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for clone in clones]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    everything = {run for runs in made.values() for run in runs}
    assert _remote_runs(remote) == everything
    tip = git(remote, "rev-parse", "flor.shadow").strip()
    for clone in clones:  # every run's code is on the remote's shadow branch
        local = Git(clone).ref("refs/heads/flor.shadow")
        assert subprocess.run(["git", "merge-base", "--is-ancestor", local, tip],
                              cwd=remote).returncode == 0


def test_a_remote_refusing_the_push_is_a_real_error(tmp_path: Path) -> None:
    remote, (clone,) = _clones(tmp_path, 1)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'no pushes today' >&2\nexit 1\n")
    hook.chmod(0o755)
    record_run(clone)
    started = time.monotonic()
    proc = flor(clone, "push", check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "declined" in proc.stderr
    assert time.monotonic() - started < 10  # not retried as if it were a race
    assert git(remote, "for-each-ref").strip() == git(remote, "for-each-ref",
                                                        "refs/heads/main").strip()


@pytest.mark.parametrize("status, race", [
    ("[rejected] (fetch first)", True),
    ("[rejected] (non-fast-forward)", True),
    ("[remote rejected] (failed to update ref)", True),
    ("[remote rejected] (cannot lock ref 'refs/notes/flor': is at 1a but expected 2b)", True),
    ("[remote rejected] (incorrect old value provided)", True),
    ("[remote rejected] (pre-receive hook declined)", False),
    ("[remote rejected] (permission denied)", False),
    ("[remote rejected] (missing necessary objects)", False),
])
def test_which_push_failures_are_races(status: str, race: bool) -> None:
    assert lost_ref_race(status) is race
