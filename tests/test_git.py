"""Every git process flor starts goes through ``storage.git.run_git``: it runs in the
user's repository even inside a git hook, and a failure says what ran and how it ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_repo
from flor_cli.errors import UserError
from flor_cli.storage.git import GitError, Git, RemoteError, no_git_env, run_git


def test_a_failed_git_command_carries_command_exit_code_and_stderr(repo: Path) -> None:
    with pytest.raises(GitError) as raised:
        Git(repo).cli("rev-parse", "--verify", "no-such-ref")
    e = raised.value
    assert e.command == ["git", "rev-parse", "--verify", "no-such-ref"]
    assert e.returncode == 128 and "fatal" in e.stderr
    assert "git rev-parse --verify no-such-ref exited 128: fatal" in str(e)
    assert not isinstance(e, UserError)  # flor chose the command: not the user's to fix


def test_the_variables_git_exports_into_hooks_do_not_reach_flors_git(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a hook, git sets GIT_DIR (and GIT_INDEX_FILE, GIT_WORK_TREE, ...): before
    run_git dropped them, flor located and snapshotted another repository."""
    other = make_repo(tmp_path / "other", files={"x.txt": "other\n"})
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    git = Git.discover(repo)
    assert git.root == repo.resolve() and git.git_dir == (repo / ".git").resolve()
    tree = git.snapshot_tree()
    names = run_git(["ls-tree", "--name-only", tree], repo).stdout.split()
    assert "x.txt" not in names and names


def test_no_git_env_keeps_what_pre_commit_keeps() -> None:
    env = {"GIT_DIR": "d", "GIT_INDEX_FILE": "i", "GIT_PREFIX": "p", "PATH": "/bin",
           "GIT_SSH_COMMAND": "ssh -i k", "GIT_ASKPASS": "a", "GIT_CONFIG_COUNT": "1",
           "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "x"}
    assert no_git_env(env) == {k: v for k, v in env.items()
                               if k not in ("GIT_DIR", "GIT_INDEX_FILE", "GIT_PREFIX")}


def test_a_remote_that_cannot_be_reached_is_the_users_to_fix(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match=r"^git ls-remote: .*") as raised:
        Git(repo).remote_refs(str(tmp_path / "nowhere.git"), ["refs/notes/flor"])
    assert isinstance(raised.value, UserError) and "\n" not in str(raised.value)


def test_no_module_but_storage_git_runs_git() -> None:
    """One wrapper sees every git command: nothing else spawns git or calls Git.cli."""
    root = Path(__file__).resolve().parent.parent / "flor_cli"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "git.py" and any(s in p.read_text() for s in
                                               ('["git"', "'git',", '"git",', ".cli("))]
    assert offenders == []


def test_worktrees_of_one_name_added_and_removed_at_once_do_not_collide(repo: Path,
                                                                         tmp_path: Path) -> None:
    """serve's workers and replay's --jobs slots check out worktrees at the same moment,
    all named after the repository; git names each one's admin directory after that
    name, and two `git worktree add` racing for it failed ("failed to read commondir")."""
    from concurrent.futures import ThreadPoolExecutor

    git = Git(repo)
    commit = git.head().commit

    def checkout(i: int) -> None:
        path = tmp_path / f"job-{i}" / repo.name
        for _ in range(3):
            git.add_worktree(path, commit)
            assert (path / "train.py").exists()
            git.remove_worktree(path)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(checkout, range(8)))
    assert len(git.cli("worktree", "list").splitlines()) == 1
