"""``flor gc``: free the space of what no run needs any more.

A sequence of independent steps (:data:`STEPS`), each taking the same options and
returning what it did, so a step can be added without touching the others:

1. :func:`collect_objects` deletes the checkpoint objects in this clone's store
   (``.git/flor/objects``: checkpoints, logged images and files) that no live run's note
   references: those of removed runs,
   of runs whose notes are gone, and with ``keep_last`` the checkpoints of all but each
   run's last N epochs. A missing checkpoint costs replay time, never exactness.
2. :func:`finalize_removed` records in each removed run's note that its objects are
   gone: from then on ``flor rm --undo`` refuses it.
3. :func:`squash_history` collapses the notes history only this clone has (one commit per
   run, replay, tag and pull) into one commit of the same notes tree: the tree holds every
   record; the history is an audit trail. What a remote has is kept (it is the squashed
   commit's parent), so pushing stays a fast-forward. ``keep_history`` skips it.
4. :func:`pack_objects` packs git's loose objects (``git gc``, which keeps unreachable
   objects for git's grace period, so a writer running now loses nothing).

A shared store (``git config flor.store``) is never collected: other clones' notes,
which this one cannot see, may reference its objects. Objects newer than the oldest run
still running (or than the start of gc) are kept: their run may not have noted them yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flor_cli.sizes import size_text
from flor_cli.storage import cache, notes
from flor_cli.storage.git import Git
from flor_cli.storage.live import live_runs
from flor_cli.storage.rows import digests


@dataclass(frozen=True)
class Options:
    keep_last: int | None = None  # checkpoints of each run's last N epochs only
    dry_run: bool = False
    keep_history: bool = False  # leave the notes history as it is (no squash)


@dataclass
class Done:
    """What one step did (or, dry, would do), and a line saying so."""

    count: int
    bytes: int
    line: str


def referenced(git: Git, keep_last: int | None) -> set[str]:
    """Digests of the objects live runs need (running runs included): their checkpoints
    (with ``keep_last``, those of each run's last N epochs) and the images and files they
    logged (every one, replaced values included: the note keeps them)."""
    from flor_cli.storage.media import MEDIA_TYPES, parse

    with cache.connection(git, readonly=True) as db:
        by_run: dict[str, list[tuple[str, str]]] = {}
        for run, ctx, objs in db.execute("SELECT run, ctx, objs FROM checkpoints"):
            by_run.setdefault(run, []).append((ctx, objs))  # in record order (table scan)
        media = [parse(value) for (value,) in db.execute(
            f"SELECT value FROM logs WHERE type IN ({','.join('?' * len(MEDIA_TYPES))})",
            MEDIA_TYPES)]
    needed = {ref.sha for ref in media if ref is not None}
    for records in by_run.values():
        if keep_last is not None:
            contexts = list(dict.fromkeys(ctx for ctx, _ in reversed(records)))[:keep_last]
            records = [(ctx, objs) for ctx, objs in records if ctx in contexts]
        for _, objs in records:
            needed.update(digests(objs))
    return needed


def collect_objects(git: Git, options: Options) -> Done:
    root = git.flor_dir / "objects"
    needed = referenced(git, options.keep_last)
    started = [one.header.get("start") for one in live_runs(git)]
    cutoff = min([time.time(), *(s for s in started if isinstance(s, (int, float)))])
    count = size = 0
    for path in sorted(root.glob("??/*")) if root.is_dir() else ():
        if path.name.startswith(".") or path.parent.name + path.name in needed:
            continue
        stat = path.stat()
        if stat.st_mtime >= cutoff:
            continue
        count, size = count + 1, size + stat.st_size
        if not options.dry_run:
            path.unlink(missing_ok=True)
    if not options.dry_run:
        for directory in root.glob("??") if root.is_dir() else ():
            _remove_if_empty(directory)
        with cache.connection(git) as db:  # the checkpoints column says what is left
            cache.refresh_availability(git, db)
    verb = "would free" if options.dry_run else "freed"
    return Done(count, size, f"{verb} {count} checkpoint object(s), {size_text(size)}")


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def finalize_removed(git: Git, options: Options) -> Done:
    with cache.connection(git, readonly=True) as db:
        pending = db.execute("SELECT run, commit_id FROM removed WHERE NOT purged").fetchall()
    if pending and not options.dry_run:
        git.append_notes({commit: notes.event(notes.PURGE) for _, commit in pending},
                         f"flor gc: {len(pending)} removed run(s) collected")
    verb = "would make" if options.dry_run else "made"
    runs = "".join(f" {run}" for run, _ in pending)
    return Done(len(pending), 0, f"{verb} {len(pending)} removal(s) final (no undo):{runs}"
                if pending else "no removed runs to make final")


def squash_history(git: Git, options: Options) -> Done | None:
    if options.keep_history:
        return None
    local = git.local_notes_commits()
    if local <= 1:
        return Done(0, 0, "notes history: nothing to squash")
    if options.dry_run:
        return Done(local, 0, f"would squash {local} notes commit(s) into 1")
    before, after = git.squash_notes("flor gc: notes history squashed")
    return Done(before - after, 0, f"squashed {local} notes commit(s) into 1 "
                f"({after} notes commit(s) left, the remotes' included)")


def pack_objects(git: Git, options: Options) -> Done:
    count, size = git.loose_objects()
    if options.dry_run:
        return Done(count, size, f"would pack {count} loose git object(s), {size_text(size)}")
    before, after = git.pack()
    return Done(before - after, size, f"packed {before - after} loose git object(s) "
                f"({size_text(size)} loose before)")


STEPS: tuple[Callable[[Git, Options], Done | None], ...] = (
    collect_objects, finalize_removed, squash_history, pack_objects)


def gc(git: Git, options: Options) -> list[Done]:
    """Run every step in order; a step that does not apply (an option turned it off)
    says nothing."""
    return [done for step in STEPS if (done := step(git, options)) is not None]
