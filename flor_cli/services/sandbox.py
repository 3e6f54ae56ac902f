"""Sandboxes: an old commit checked out where its relative paths still resolve.

Replay runs each old run's code in one (services/replay/execute.py), ``flor serve``
each queued job (services/serve.py), and a Ray task writes its shipped files into its
unpacked tree with :func:`write_script` (services/ray_engine.py). Kept apart from
replay so that serve and the Ray tasks import only this: the standard library and
the git layer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from flor_cli.storage.git import Git


class OutsideTree(Exception):
    """A path in the sandbox's tree leads outside it (a symbolic link of the old tree)."""


def write_script(tree: Path, script: str, source: str) -> None:
    """Put the transplanted script in place of the old one in the worktree. A symbolic
    link the old tree has at that path is replaced, never written through, and a link on
    the way there that leads out of the worktree raises :class:`OutsideTree` (that run
    fails): replay writes only inside its worktree, whatever the old tree holds."""
    path = tree / script
    if not path.parent.resolve().is_relative_to(tree.resolve()):
        raise OutsideTree(f"{script}: a symbolic link in the run's tree leads outside it")
    path.unlink(missing_ok=True)
    path.write_bytes(source.encode())


class Sandbox:
    """A shadow commit checked out so that the run's relative paths still resolve.

    The worktree is ``HOME/<repo dir name>``: untracked and ignored paths of the user's
    checkout that the commit lacks (``data/``, a virtualenv) are linked into it, and the
    siblings of the user's repository are linked into ``HOME``, so ``../data`` resolves
    as it did. Links are removed before the worktree, so removal never follows one.

    While it exists, ``HOME.lock`` is ``flock``-ed by the process that made it (a replay,
    a server): a home whose lock is free was left by one that died (kill -9) and is
    pruned by the next replay or server (:func:`prune_stale_worktrees`).
    """

    def __init__(self, git: Git, home: Path, commit: str, extra: list[str]):
        self.git, self.home, self.commit, self.extra = git, home, commit, extra
        self.tree = home / git.root.name
        self.links: list[Path] = []
        self.lock = -1

    def __enter__(self) -> Path:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        self.lock = os.open(_lock_of(self.home), os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            self.git.add_worktree(self.tree, self.commit)
            parent = self.git.root.parent
            for name in sorted(os.listdir(parent)):
                if name != self.git.root.name:
                    self._link(self.home / name, parent / name)
            for rel in self.extra:
                self._link(self.tree / rel, self.git.root / rel)
        except BaseException:
            self.__exit__()
            raise
        return self.tree

    def _link(self, link: Path, target: Path) -> None:
        if os.path.lexists(link) or not link.parent.is_dir():
            return
        link.symlink_to(target, target_is_directory=target.is_dir())
        self.links.append(link)

    def __exit__(self, *exc: object) -> None:
        for link in reversed(self.links):
            link.unlink(missing_ok=True)
        _remove_home(self.git, self.home)
        if self.lock >= 0:
            _lock_of(self.home).unlink(missing_ok=True)
            os.close(self.lock)
            self.lock = -1


def _lock_of(home: Path) -> Path:
    return home.with_name(home.name + ".lock")


def _remove_home(git: Git, home: Path) -> None:
    """Unregister and delete a sandbox; links first, so removal never follows one."""
    for entry in home.iterdir() if home.is_dir() else ():
        if entry.is_symlink():
            entry.unlink()
    git.remove_worktree(home / git.root.name)
    shutil.rmtree(home, ignore_errors=True)


# Where sandboxes are made, as (directory under .git/flor, pattern of a sandbox's name
# there): replay's runs (:func:`replay_home`), flor serve's jobs (:func:`job_home`).
SANDBOX_HOMES = (("worktrees", "*"), ("serve", "job-*"))


def replay_homes(git: Git) -> Path:
    """The directory of replay's sandboxes (forked workers may read under it)."""
    return git.flor_dir / SANDBOX_HOMES[0][0]


def replay_home(git: Git, name: str) -> Path:
    """Where replay makes the sandbox ``name`` of one run."""
    return replay_homes(git) / name


def job_home(git: Git, job_id: int, name: str) -> Path:
    """Where flor serve makes the sandbox of queued job ``job_id`` (``name``: its run's)."""
    return git.flor_dir / SANDBOX_HOMES[1][0] / f"job-{job_id}-{name}"


def prune_stale_worktrees(git: Git) -> list[Path]:
    """Remove the sandboxes (:data:`SANDBOX_HOMES`) that no live process holds the lock
    of: left by a replay or a server that died without removing them (kill -9)."""
    pruned = []
    homes = sorted(home for parent, pattern in SANDBOX_HOMES
                   for home in (git.flor_dir / parent).glob(pattern))
    for home in homes:
        if not home.is_dir() or home.is_symlink():
            continue
        try:
            fd = os.open(_lock_of(home), os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its replay is running
            _remove_home(git, home)
            _lock_of(home).unlink(missing_ok=True)
            pruned.append(home)
        finally:
            os.close(fd)
    return pruned


def untracked_paths(git: Git) -> list[str]:
    """Top-level entries and ignored paths of the user's checkout, parents first: what a
    sandbox links in where its commit lacks them (``extra``)."""
    top = [n for n in os.listdir(git.root) if n != ".git"]
    paths = {p.rstrip("/") for p in top + git.ignored_paths()}
    return sorted((p for p in paths if "__pycache__" not in Path(p).parts),
                  key=lambda p: (p.count("/"), p))
