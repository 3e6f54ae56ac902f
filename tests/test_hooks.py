"""flor hooks: installed beside the user's hooks, runs travel with git push / pull / checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import cli, flor, flor_json, git, make_repo
from test_sync import clone_pair, record, ref

from flor_cli.storage.git import Git

HOOKS = ("pre-push", "post-merge", "post-checkout")


def flor_refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "refs/heads/flor.shadow", "refs/notes/flor")


def new_commit(repo: Path, name: str) -> None:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-qm", name)


def status(repo: Path) -> dict[str, tuple[bool, bool]]:
    return {r["hook"]: (r["installed"], r["chained"])
            for r in flor_json(repo, "hooks", "status")}


def test_existing_pre_push_hook_is_chained_and_restored(repo: Path, tmp_path: Path) -> None:
    a, _, remote = clone_pair(repo, tmp_path)
    hooks = a / ".git" / "hooks"
    log, block = tmp_path / "user-hook.log", tmp_path / "block"
    user_hook = hooks / "pre-push"
    user_hook.write_text(f'#!/bin/sh\necho "args: $*" >>"{log}"\ncat >>"{log}"\n'
                         f'[ ! -e "{block}" ]\n')
    user_hook.chmod(0o750)
    original, mode = user_hook.read_bytes(), user_hook.stat().st_mode

    cli(a, "hooks", "install")
    installed = {p.name: p.read_bytes() for p in hooks.iterdir() if not p.name.endswith(".sample")}
    cli(a, "hooks", "install")  # twice is once: flor never chains itself
    assert {p.name: p.read_bytes() for p in hooks.iterdir()
            if not p.name.endswith(".sample")} == installed
    assert set(installed) == {*HOOKS, "pre-push.flor-chained"}
    assert installed["pre-push.flor-chained"] == original
    (python,) = re.findall(r"(?m)^FLOR_PYTHON=(.*)$", installed["pre-push"].decode())
    assert os.path.samefile(python, sys.executable)  # flor found whatever PATH says
    assert status(a) == {"pre-push": (True, True), "post-merge": (True, False),
                         "post-checkout": (True, False)}

    record(a)
    new_commit(a, "one.txt")
    block.touch()  # the user's hook still decides: nothing is pushed, flor's refs neither
    proc = attempt(a, "push", "origin", "main")
    assert proc.returncode != 0
    assert git(remote, "rev-parse", "main").strip() != ref(a, "main")
    assert flor_refs(remote) == ""
    block.unlink()

    proc = attempt(a, "push", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert "flor: runs shipped to origin" in proc.stderr
    assert flor_refs(remote) == flor_refs(a) != ""
    seen = log.read_text()
    assert seen.count(f"args: origin {remote}") == 2
    assert seen.count(f"refs/heads/main {ref(a, 'main')} refs/heads/main") == 2  # stdin kept

    cli(a, "hooks", "uninstall")
    assert user_hook.read_bytes() == original and user_hook.stat().st_mode == mode
    assert {p.name for p in hooks.iterdir() if not p.name.endswith(".sample")} == {"pre-push"}


def test_pull_and_branch_checkout_bring_runs(repo: Path, tmp_path: Path) -> None:
    a, b, _ = clone_pair(repo, tmp_path)
    run = record(a)
    cli(a, "push")
    new_commit(a, "one.txt")
    git(a, "push", "-q", "origin", "main")
    cli(b, "hooks", "install")

    git(b, "pull", "-q")  # post-merge
    assert [r["run"] for r in flor_json(b, "log")] == [run]

    commit = ref(a, "flor.shadow")
    lines = ['{"t":"log","rp":"r1","s":0,"n":"x","v":1,"c":{}}',
             '{"t":"log","rp":"r2","s":0,"n":"x","v":2,"c":{}}']
    Git(a).append_notes({commit: lines[0]}, "test: append")
    cli(a, "push")
    git(b, "checkout", "-q", "--", "train.py")  # a file checkout: no pull
    assert lines[0] not in git(b, "notes", "--ref=flor", "show", commit)
    git(b, "checkout", "-q", "-b", "feature")  # a branch checkout: pulls
    assert lines[0] in git(b, "notes", "--ref=flor", "show", commit)
    # ... and refreshes the cache that flor log reads.
    shown = json.loads(cli(b, "show", run, "--format", "json").stdout)
    assert any(r.get("rp") == "r1" for r in shown["records"])


def test_hooks_path_is_honoured(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", "githooks")
    cli(repo, "hooks", "install")
    assert {p.name for p in (repo / "githooks").iterdir()} == set(HOOKS)
    assert not any((repo / ".git" / "hooks" / name).exists() for name in HOOKS)
    assert all(installed for installed, _ in status(repo).values())
    proc = attempt(repo, "checkout", "-b", "other")  # no remote at all: quiet
    assert proc.returncode == 0 and "flor" not in proc.stderr
    cli(repo, "hooks", "uninstall")
    assert list((repo / "githooks").iterdir()) == []


def test_flor_failure_never_blocks_the_push(repo: Path, tmp_path: Path) -> None:
    a, _, remote = clone_pair(repo, tmp_path)
    Git(a).append_to_branch("refs/heads/flor.shadow", Git(a).snapshot_tree(), "a run")
    # The remote refuses flor's refs (a server policy flor cannot push past).
    refuse = remote / "hooks" / "pre-receive"
    refuse.write_text("#!/bin/sh\n! grep -q flor\n")
    refuse.chmod(0o755)
    cli(a, "hooks", "install")
    new_commit(a, "one.txt")
    proc = attempt(a, "push", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert git(remote, "rev-parse", "main").strip() == ref(a, "main")
    flor_lines = [line for line in proc.stderr.splitlines() if line.startswith("flor:")]
    assert len(flor_lines) == 1 and "pre-push" in flor_lines[0]

    # Pushing to a URL rather than a named remote: the push goes on, flor says why not.
    new_commit(a, "two.txt")
    proc = attempt(a, "push", str(remote), "main")
    assert proc.returncode == 0
    assert "flor: runs not shipped" in proc.stderr


def test_bad_input(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    proc = cli(outside, "hooks", "install", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1

    hooks = repo / ".git" / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-push.flor-chained").write_text("#!/bin/sh\nexit 1\n")
    before = {p.name: p.read_bytes() for p in hooks.iterdir()}
    proc = cli(repo, "hooks", "install", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in hooks.iterdir()} == before


def attempt(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run git where failing is a possible outcome under test."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)


def test_installed_hooks_fetch_runs_even_when_the_branch_is_up_to_date(tmp_path: Path) -> None:
    a = make_repo(tmp_path / "a", files={"t.py": "import flor\nflor.log('x', 1)\n"})
    a, b, _ = clone_pair(a, tmp_path)
    specs_before = git(b, "config", "--get-all", "remote.origin.fetch")
    flor(b, "hooks", "install")
    assert git(b, "config", "--get-all", "remote.origin.fetch").split() == [
        *specs_before.split(), "+refs/heads/flor.shadow*:refs/remotes/origin/flor.shadow*",
        "+refs/notes/flor*:refs/notes/remotes/origin/flor*"]
    git(b, "fetch", "-q")  # the remote has no runs yet: fetching still works
    flor(b, "run", "t.py")  # a local run that the merge must keep
    flor(a, "run", "t.py")
    flor(a, "push")
    proc = attempt(b, "pull")  # main is up to date: git runs no post-merge hook
    assert proc.returncode == 0 and "Already up to date" in proc.stdout
    assert len(flor_json(b, "log")) == 2  # the next flor command merged what was fetched
    assert git(b, "rev-parse", "refs/notes/remotes/origin/flor") != git(b, "rev-parse",
                                                                        "refs/notes/flor")
    flor(b, "hooks", "uninstall")
    assert git(b, "config", "--get-all", "remote.origin.fetch") == specs_before


def test_one_script_for_post_merge_and_post_checkout(repo: Path) -> None:
    flor(repo, "hooks", "install")
    hooks = repo / ".git" / "hooks"
    assert (hooks / "post-merge").read_bytes() == (hooks / "post-checkout").read_bytes()


def test_tracked_hooks_path_is_left_alone(repo: Path) -> None:
    husky = repo / ".husky"
    husky.mkdir()
    (husky / "pre-push").write_text("#!/bin/sh\nnpm test\n")
    git(repo, "add", ".husky")
    git(repo, "commit", "-qm", "husky")
    git(repo, "config", "core.hooksPath", ".husky")
    proc = flor(repo, "hooks", "install", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "core.hooksPath .husky is tracked" in proc.stderr
    assert git(repo, "status", "--porcelain") == ""
    assert [p.name for p in husky.iterdir()] == ["pre-push"]
