"""``flor hooks``: the git hooks that carry runs along with the user's own pushes and pulls.

The scripts live in the top-level ``hooks/`` directory (shipped as ``flor_cli.hooks``);
installing copies them into the directory git runs hooks from (``core.hooksPath``
honoured) with the absolute path of this Python written in, so a hook finds flor even
when the user's shell has another Python on PATH.

A hook that is already there is the user's: it is renamed ``<hook>.flor-chained`` and
flor's hook runs it first with the same arguments and stdin, so it keeps working and
keeps its power to stop a push; uninstalling renames it back, byte for byte.

The scripts call ``flor hooks run NAME ARGS...`` (:func:`run`), which never fails the
user's git command: whatever goes wrong is one ``flor: ...`` line.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from flor_cli.errors import UserError
from flor_cli.services import sync
from flor_cli.storage import mirrors
from flor_cli.storage.atomic import write_whole
from flor_cli.storage.git import SHADOW_REF, Git

# hook name -> its script in hooks/: post-merge and post-checkout do the same thing
TEMPLATES = {"pre-push": "pre-push", "post-merge": "merge-runs", "post-checkout": "merge-runs"}
HOOKS = tuple(TEMPLATES)
MARKER = "# flor-hook:"
CHAINED = ".flor-chained"


@dataclass
class HookState:
    name: str
    installed: bool  # flor's script is the hook git runs
    chained: bool    # a hook that was there before runs first


def script(name: str) -> str:
    """The hook script as installed: the shipped one, bound to this interpreter."""
    text = importlib.resources.files("flor_cli.hooks").joinpath(TEMPLATES[name]).read_text()
    python = "FLOR_PYTHON=" + shlex.quote(sys.executable)
    return re.sub(r"(?m)^FLOR_PYTHON=.*$", lambda _: python, text, count=1)


def install(git: Git) -> list[HookState]:
    """Install (or refresh) flor's hooks, chaining the ones already there, and add the
    fetch refspecs that bring teammates' runs with every ``git fetch``. Idempotent."""
    directory = git.hooks_dir()
    _refuse_tracked(git, directory)
    for name in HOOKS:  # refuse before changing anything
        path, chained = directory / name, directory / (name + CHAINED)
        if _exists(path) and not _is_flor(path) and _exists(chained):
            raise UserError(f"{path} and {chained.name} both exist; "
                            f"merge them by hand, then run flor hooks install")
    directory.mkdir(parents=True, exist_ok=True)
    for name in HOOKS:
        path = directory / name
        if _exists(path) and not _is_flor(path):
            os.rename(path, directory / (name + CHAINED))
        write_whole(path, script(name).encode(), mode=0o755)
    for remote in git.remotes():
        configured = git.fetch_refspecs(remote)
        for spec in mirrors.fetch_refspecs(remote):
            if spec not in configured:
                git.add_fetch_refspec(remote, spec)
    return status(git)


def _refuse_tracked(git: Git, directory: Path) -> None:
    """A ``core.hooksPath`` the repository tracks (``.husky``, ``.githooks``) is shared
    with everyone who clones it: flor neither edits tracked files nor writes this
    machine's Python into them. The user adds one line to their hook instead."""
    try:
        inside = directory.relative_to(git.root)
    except ValueError:
        return
    if git.tracks_any(str(inside)):
        raise UserError(f"core.hooksPath {inside} is tracked in this repository: flor will "
                        f"not edit it; add `flor hooks run pre-push \"$@\"` to its pre-push "
                        f"(and `flor hooks run post-merge \"$@\"` to its post-merge) yourself")


def uninstall(git: Git) -> list[HookState]:
    """Remove flor's hooks and fetch refspecs, and put back the hooks they chained,
    exactly as they were."""
    directory = git.hooks_dir()
    for remote in git.remotes():
        for spec in mirrors.fetch_refspecs(remote):
            git.remove_fetch_refspec(remote, spec)
    for name in HOOKS:
        path, chained = directory / name, directory / (name + CHAINED)
        if _is_flor(path):
            path.unlink()
            if _exists(chained):
                os.rename(chained, path)
    return status(git)


def status(git: Git) -> list[HookState]:
    directory = git.hooks_dir()
    return [HookState(name, _is_flor(directory / name), _exists(directory / (name + CHAINED)))
            for name in HOOKS]


def run(name: str, args: list[str]) -> str | None:
    """What hook ``name`` does for flor; returns the line to show, if any. Never raises:
    a hook must not fail the user's push, merge or checkout because flor failed."""
    try:
        git = Git.discover(".")
        if name == "pre-push":
            remote = args[0] if args else ""
            if git.ref(SHADOW_REF) is None:
                return None  # no runs recorded here yet
            if remote not in git.remotes():
                return f"flor: runs not shipped: {remote} is not a named remote"
            sync.push(git, remote)
            return f"flor: runs shipped to {remote}"
        if name in ("post-merge", "post-checkout"):
            if name == "post-checkout" and not _switched_branch(args):
                return None
            remote = git.upstream_remote() or "origin"
            if remote not in git.remotes():
                return None
            try:
                result = sync.pull(git, remote)
            except sync.NothingToPull:
                return None
            return f"flor: runs merged from {remote}: {result.changed}" if result.changed else None
        return f"flor: no such hook: {name}"
    except Exception as e:  # noqa: BLE001 - the one place where any failure is one line
        text = str(e).strip().splitlines()
        return f"flor: {name}: {text[0] if text else type(e).__name__}"


def _switched_branch(args: list[str]) -> bool:
    """A branch checkout, not a file checkout, nor the first checkout of a clone or of
    ``git worktree add`` (flor's own replays make those; the old HEAD is all zeros)."""
    return len(args) >= 3 and args[2] == "1" and set(args[0]) != {"0"}


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _is_flor(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(line.startswith(MARKER) for line in f.read(4096).splitlines())
    except OSError:
        return False


