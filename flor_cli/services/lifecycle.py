"""A run's life after it ran: tags and annotations, removal and its undoing.

Each change is one lifecycle record appended to the run's note (see
:mod:`flor_cli.storage.notes`), so it travels with ``flor push``/``pull`` and merges by
union like any record: a removal survives a pull from a clone that still has the run.
"""

from __future__ import annotations

from typing import Iterable

from flor_cli.errors import UserError
from flor_cli.services import query
from flor_cli.storage import cache, notes
from flor_cli.storage.git import Git


def _commit_of(git: Git, run: str, removed: bool = False) -> str:
    with cache.connection(git, readonly=True) as db:
        row = db.execute(f"SELECT commit_id FROM {'removed' if removed else 'runs'} "
                         "WHERE run=?", (run,)).fetchone()
    if not row or not row[0]:
        raise UserError(f"run {run} is still running: change it once it has ended")
    return row[0]


def _append(git: Git, lines: dict[str, list[str]], message: str) -> None:
    """Append each commit's lines to its note, in one notes commit."""
    git.append_notes({commit: "\n".join(texts) for commit, texts in lines.items()}, message)


def tag(git: Git, ref: str, add: Iterable[str] = (), remove: Iterable[str] = (),
        annotation: str | None = None) -> str:
    """Tag (or untag, or annotate) one run; returns its id."""
    run = query.resolve_run(git, ref)
    add, remove = list(add), list(remove)
    for name in [*add, *remove]:
        if not name or name != name.strip() or " " in name or name == "latest":
            raise UserError(f"not a tag: {name!r} (no spaces; not 'latest')")
    lines = [notes.event(notes.TAG, n=n) for n in add]
    lines += [notes.event(notes.UNTAG, n=n) for n in remove]
    if annotation is not None:
        lines.append(notes.event(notes.ANNOTATE, m=annotation))
    if not lines:
        raise UserError("tag: give a NAME, --delete NAME or -m MESSAGE")
    _append(git, {_commit_of(git, run): lines}, f"flor: tag run {run}")
    return run


def tags(git: Git) -> list[tuple[str, str]]:
    """(tag, run) of every tag, tags in order."""
    with cache.connection(git, readonly=True) as db:
        return db.execute("SELECT tag, run FROM tags ORDER BY tag, run").fetchall()


def remove(git: Git, refs: Iterable[str]) -> list[str]:
    """Remove runs (a tombstone in each note); undone by :func:`restore` until ``flor gc``."""
    runs = list(dict.fromkeys(query.resolve_run(git, ref) for ref in refs))
    _append(git, {_commit_of(git, run): [notes.event(notes.REMOVE)] for run in runs},
            f"flor: remove {len(runs)} run(s)")
    return runs


def restore(git: Git, refs: Iterable[str]) -> list[str]:
    """Undo :func:`remove`; refused for runs whose objects ``flor gc`` collected."""
    runs = list(dict.fromkeys(query.resolve_run(git, ref, removed=True) for ref in refs))
    with cache.connection(git, readonly=True) as db:
        purged = [r for (r,) in db.execute("SELECT run FROM removed WHERE purged")
                  if r in runs]
    if purged:
        raise UserError(f"run {purged[0]} was removed and collected by flor gc: "
                        "it cannot be restored")
    _append(git, {_commit_of(git, run, removed=True): [notes.event(notes.RESTORE)]
                  for run in runs}, f"flor: restore {len(runs)} run(s)")
    return runs


def removed(git: Git) -> list[tuple]:
    """(run, removed at, purged) of the removed runs, newest removal first."""
    with cache.connection(git, readonly=True) as db:
        return db.execute("SELECT run, datetime(at, 'unixepoch', 'localtime'), purged "
                          "FROM removed ORDER BY at DESC").fetchall()
